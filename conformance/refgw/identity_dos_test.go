package refgw_test

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// sub-identity-confusion: a session belongs to (iss, sub) with its client
// and actor. A client whose sub equals alice's user id, or another subject
// with alice's email, is not alice; each identity flaw lets exactly one of
// them in.
func TestSessionIdentity(t *testing.T) {
	const email = "alice@example.test"
	for _, tc := range []struct {
		flaw                 string
		clientIn, mallorysIn bool
	}{
		{"", false, false},
		{refgw.FlawIdentityBySubOnly, true, false},
		{refgw.FlawIdentityByEmail, false, true},
	} {
		t.Run("flaw="+tc.flaw, func(t *testing.T) {
			f := newFixture(t)
			var flaws []string
			if tc.flaw != "" {
				flaws = []string{tc.flaw}
			}
			gw := f.newGateway(flaws)
			ac := f.claims(gw)
			ac["email"] = email
			alice := &mcpClient{t: t, gw: gw, token: f.mint(ac)}
			if a := alice.initialize("2025-06-18"); a.status != http.StatusOK {
				t.Fatalf("initialize: %d", a.status)
			}
			// RFC 9068 section 2.2: a client_credentials token's sub is the
			// client's id; here a client registered as "user-alice".
			cc := f.claims(gw)
			cc["client_id"] = userAlice
			mc := f.claims(gw)
			mc["sub"], mc["email"] = "user-mallory", email
			for _, who := range []struct {
				name string
				tok  string
				in   bool
			}{{"client with alice's id as sub", f.mint(cc), tc.clientIn}, {"mallory with alice's email", f.mint(mc), tc.mallorysIn}} {
				other := *alice
				other.token = who.tok
				a := other.send("tools/call", 2, map[string]any{"name": toolGet})
				if want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[who.in]; a.status != want {
					t.Errorf("%s in alice's session: status %d, want %d", who.name, a.status, want)
				}
			}
			if a := alice.send("tools/call", 3, map[string]any{"name": toolGet}); a.status != http.StatusOK {
				t.Errorf("alice in her own session: status %d", a.status)
			}
		})
	}
}

// p2cJWE is a compact JWE whose PBES2 key derivation asks for 2^31-1
// iterations.
func p2cJWE() string {
	h := b64(map[string]any{"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2c": 1<<31 - 1, "p2s": "c2FsdHNhbHRzYWx0c2FsdA", "cty": "JWT"})
	return h + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
}

// zipBomb is a JWS-shaped token with zip: DEF over 10 MiB of deflated
// zeros.
func zipBomb(f *fixture, gw *gateway) string {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	_, _ = w.Write(make([]byte, 10<<20))
	_ = w.Close()
	parts := strings.Split(f.mint(f.claims(gw)), ".")
	return b64(map[string]any{"alg": "ES256", "typ": "at+jwt", "zip": "DEF"}) + "." + base64.RawURLEncoding.EncodeToString(z.Bytes()) + "." + parts[2]
}

// jwt-oversize-dos: pathological tokens are refused at once; with
// no-size-limit the PBES2 one keeps the gateway busy until the caller
// gives up, and the gateway still serves afterwards.
func TestOversizeTokens(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil)
	valid := f.mint(f.claims(gw))
	for name, tok := range map[string]string{
		"1 MiB":      valid[:strings.LastIndexByte(valid, '.')] + strings.Repeat("A", 1<<20) + valid[strings.LastIndexByte(valid, '.'):],
		"100k dots":  valid + strings.Repeat(".", 100_000),
		"p2c":        p2cJWE(),
		"zip bomb":   zipBomb(f, gw),
		"deep array": base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","x":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`}`)) + ".e30.AA",
	} {
		t0 := time.Now()
		resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok))
		if took := time.Since(t0); resp.status != http.StatusUnauthorized || took > 500*time.Millisecond {
			t.Errorf("%s: %d in %v, want 401 at once", name, resp.status, took)
		}
	}

	flawed := f.newGateway([]string{refgw.FlawNoSizeLimit})
	client := &http.Client{Timeout: 300 * time.Millisecond}
	_, err := client.Do(flawed.get(t, "/api/tickets", p2cJWE()))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("with %s, a PBES2 p2c of 2^31-1: %v, want a timeout", refgw.FlawNoSizeLimit, err)
	}
	t0 := time.Now()
	if resp := flawed.do(t, nil, flawed.get(t, "/api/tickets", f.mint(f.claims(flawed)))); resp.status != http.StatusOK || time.Since(t0) > 2*time.Second {
		t.Errorf("after the abandoned request: %d in %v", resp.status, time.Since(t0))
	}
	big := valid[:strings.LastIndexByte(valid, '.')] + strings.Repeat("A", 20<<10) + valid[strings.LastIndexByte(valid, '.'):]
	if resp := flawed.do(t, nil, flawed.get(t, "/api/tickets", big)); !strings.Contains(resp.body, "signature") {
		t.Errorf("with %s, a 20 KiB token is not read to its signature: %d %s", refgw.FlawNoSizeLimit, resp.status, resp.body)
	}
}

// Config.AuditWebhook: each decision is posted as one JSON record before
// the gateway acts; an allow whose record is refused is refused too.
func TestAuditWebhook(t *testing.T) {
	var mu sync.Mutex
	var recs []refgw.AuditRecord
	fail := false
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rec refgw.AuditRecord
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &rec) != nil || fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		recs = append(recs, rec)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	f := newFixture(t)
	gw := f.newGateway(nil, func(c *refgw.Config) { c.AuditWebhook = hook.URL + "/audit" })
	tok := f.mint(f.claims(gw))
	if resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok)); resp.status != http.StatusOK {
		t.Fatalf("valid call: %d", resp.status)
	}
	gw.do(t, nil, gw.get(t, "/api/tickets", flipSignatureBit(tok)))
	mu.Lock()
	got := recs
	mu.Unlock()
	if len(got) != 2 || got[0].Decision != refgw.DecisionAllow || got[0].Sub != userAlice || got[1].Decision != refgw.DecisionDeny || got[1].Reason == "" {
		t.Fatalf("records %+v", got)
	}
	fileRecs, _ := readAudit(t, gw.auditPath)
	if len(fileRecs) != 2 {
		t.Errorf("the file sink has %d records beside the webhook, want 2", len(fileRecs))
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	f.resetUpstream()
	if resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok)); resp.status != http.StatusServiceUnavailable || len(f.upstreamRequests()) != 0 {
		t.Errorf("with the webhook refusing records: %d, upstream %d, want 503 and nothing forwarded", resp.status, len(f.upstreamRequests()))
	}
	_, err := refgw.New(refgw.Config{Issuer: "https://idp.test", JWKSURL: "https://idp.test/jwks", Audience: "x", Upstream: "http://127.0.0.1:1", AuditWebhook: "ftp://127.0.0.1/audit"})
	var ce *refgw.ConfigError
	if !errors.As(err, &ce) || ce.Field != "AuditWebhook" {
		t.Errorf("an ftp webhook: %v, want a ConfigError on AuditWebhook", err)
	}
}
