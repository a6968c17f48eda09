package refgw_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzGatewayAuthorization sends arbitrary Authorization and DPoP header
// values (and a choice of endpoint): the gateway never panics, never
// answers 5xx, and never echoes the Authorization value.
func FuzzGatewayAuthorization(f *testing.F) {
	fx := newFixture(f)
	gw := fx.newGateway(nil, withDPoP, withIntrospection(fx))
	valid := fx.mint(fx.claims(gw))
	key := newDPoPKey(f)
	bound := fx.claims(gw)
	bound["cnf"] = map[string]any{"jkt": key.jkt}
	boundTok := fx.mint(bound)
	// ServeHTTP is called directly, so the htu is the request's own URL.
	proof := key.proof(f, proofSpec{method: http.MethodGet, htu: "http://gateway.test/api/tickets", token: boundTok, iat: fx.clock.Now()})
	for _, seed := range []struct {
		authz, dpop string
		path        uint8
	}{
		{"", "", 0},
		{"Bearer", "", 0},
		{"Bearer ", "", 1},
		{"Bearer " + valid, "", 0},
		{"Bearer " + valid, "", 1},
		{"DPoP " + boundTok, proof, 0},
		{"DPoP " + boundTok, "e30.e30.", 0},
		{"Bearer " + boundTok, "", 0},
		{"Bearer a.b.c", "x.y.z", 1},
		{"Bearer " + strings.Repeat(".", 20000), "", 0},
		{"Bearer eyJhbGciOiJub25lIn0.e30.", "", 0},
		{"bearer    " + valid + "  ", "", 0},
		{"Basic dXNlcjpwYXNz", "", 2},
		{"Bearer e30.bnVsbA.AA", "", 0},
		{"Bearer eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiYjY0Il0sImI2NCI6ZmFsc2V9.e30.AA", "", 0},
		{"DPoP \x00\xff", "\r\n", 1},
	} {
		f.Add(seed.authz, seed.dpop, seed.path)
	}
	paths := []string{"/api/tickets", "/mcp", "/.well-known/oauth-protected-resource"}
	f.Fuzz(func(t *testing.T, authz, dpop string, path uint8) {
		p := paths[int(path)%len(paths)]
		var req *http.Request
		if p == "/mcp" {
			req = httptest.NewRequest(http.MethodPost, "http://gateway.test"+p, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			req.Header.Set("Content-Type", "application/json")
		} else {
			req = httptest.NewRequest(http.MethodGet, "http://gateway.test"+p, nil)
		}
		// Set the raw values, bypassing the client-side header checks.
		req.Header["Authorization"] = []string{authz}
		if dpop != "" {
			req.Header["Dpop"] = []string{dpop}
		}
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, req)
		if authz == "Bearer "+valid && p == "/api/tickets" && rec.Code != http.StatusOK {
			t.Fatalf("the valid seed is refused (%d): the fuzz target does not reach the upstream", rec.Code)
		}
		if rec.Code >= 500 {
			t.Fatalf("status %d for Authorization %q DPoP %q: %s", rec.Code, authz, dpop, rec.Body.String())
		}
		if _, tok, _ := strings.Cut(authz, " "); len(tok) > 16 && rec.Code != http.StatusOK && strings.Contains(rec.Body.String(), tok) {
			t.Fatalf("the answer echoes the token")
		}
		for _, v := range rec.Header().Values("WWW-Authenticate") {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("WWW-Authenticate with control characters: %q", v)
			}
		}
	})
}
