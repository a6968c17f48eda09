package refagent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// flawCase is one switch and the behaviour it breaks: holds must report
// true on the conforming agent and false with the flaw on, in the same
// world. These are this package's own negative controls, on the traffic;
// the catalogue's are in catalogue_test.go.
type flawCase struct {
	flaw  string
	opts  func() worldOpts
	holds func(t *testing.T, w *world, err error) (bool, string)
}

// authorizes counts the authorization requests and code redemptions.
func authorizes(w *world) (auth, redeem int) {
	auth = len(w.rec.all("idp", "/authorize"))
	for _, h := range w.rec.all("idp", "/token") {
		if h.Form.Get("grant_type") == "authorization_code" {
			redeem++
		}
	}
	return
}

// rsTokenCalls counts the requests to srv that carried a token.
func rsTokenCalls(w *world, srv string) int {
	n := 0
	for _, h := range w.rec.all(srv, "/mcp") {
		if h.Auth != "" {
			n++
		}
	}
	return n
}

func noAuthorization(t *testing.T, w *world, err error) (bool, string) {
	a, r := authorizes(w)
	return a == 0 && r == 0 && err != nil, fmt.Sprintf("%d authorization requests, %d redemptions, err %v", a, r, err)
}

func noRedemption(t *testing.T, w *world, err error) (bool, string) {
	_, r := authorizes(w)
	return r == 0, fmt.Sprintf("%d code redemptions", r)
}

func rogueIDToken(t *testing.T) func(string, []byte) []byte {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return func(path string, body []byte) []byte {
		if !strings.HasSuffix(path, "/token") {
			return body
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil || m["id_token"] == nil {
			return body
		}
		claims := claimsOf(t, m["id_token"].(string))
		payload, _ := json.Marshal(claims)
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, (&jose.SignerOptions{}).WithHeader("kid", "rogue"))
		jws, _ := s.Sign(payload)
		m["id_token"], _ = jws.CompactSerialize()
		out, _ := json.Marshal(m)
		return out
	}
}

func rewriteMetadata(f func(m map[string]any)) func(string, []byte) []byte {
	return func(path string, body []byte) []byte {
		if !strings.Contains(path, "/.well-known/") {
			return body
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			return body
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
}

func rewriteRedirect(k, v string) func(string) string {
	return func(loc string) string {
		u, err := url.Parse(loc)
		if err != nil {
			return loc
		}
		q := u.Query()
		q.Set(k, v)
		u.RawQuery = q.Encode()
		return u.String()
	}
}

func flawCases(t *testing.T) []flawCase {
	only := func(names ...string) map[string]*rsOpts {
		all := defaultRS()
		out := map[string]*rsOpts{}
		for _, n := range names {
			out[n] = all[n]
		}
		return out
	}
	readOnly := []modelStep{{tool: "notes_read"}}
	return []flawCase{
		{FlawPKCEPlain, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				for _, h := range w.rec.all("idp", "/authorize") {
					if h.Query.Get("code_challenge_method") != "S256" {
						return false, "method " + h.Query.Get("code_challenge_method")
					}
				}
				return err == nil, fmt.Sprint(err)
			}},
		{FlawPKCEUnadvertisedOK, func() worldOpts {
			return worldOpts{rs: only("rs1"), steps: readOnly, idpMutate: rewriteMetadata(func(m map[string]any) { delete(m, "code_challenge_methods_supported") })}
		}, noAuthorization},
		{FlawNoResource, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				for _, h := range w.rec.all("idp", "/authorize") {
					if h.Query.Get("resource") != w.rs["rs1"].url {
						return false, "authorize resource " + h.Query.Get("resource")
					}
				}
				for _, h := range w.rec.all("idp", "/token") {
					if h.Form.Get("resource") != w.rs["rs1"].url {
						return false, "token resource " + h.Form.Get("resource")
					}
				}
				return true, ""
			}},
		{FlawGreedyScopes, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				for _, h := range w.rec.all("idp", "/authorize") {
					if sc := strings.Fields(h.Query.Get("scope")); slices.Contains(sc, "lookup") || slices.Contains(sc, "email") {
						return false, "asked " + h.Query.Get("scope")
					}
				}
				return true, ""
			}},
		{FlawOpenAnyScheme, func() worldOpts {
			return worldOpts{rs: only("rs1"), steps: readOnly, idpMutate: rewriteMetadata(func(m map[string]any) { m["authorization_endpoint"] = "javascript:alert(1)" })}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			n := len(w.rec.all("shim", ""))
			return n == 0 && err != nil, fmt.Sprintf("%d browser requests", n)
		}},
		{FlawNoStateCheck, func() worldOpts {
			return worldOpts{rs: only("rs1"), steps: readOnly, redirectMut: rewriteRedirect("state", "forged-state-value")}
		}, noRedemption},
		{FlawIgnoreIss, func() worldOpts {
			return worldOpts{rs: only("rs1"), steps: readOnly, redirectMut: rewriteRedirect("iss", "http://127.0.0.1:1/t/evil")}
		}, noRedemption},
		{FlawIgnoreIssuerMismatch, func() worldOpts {
			return worldOpts{rs: only("rs1"), steps: readOnly, idpMutate: rewriteMetadata(func(m map[string]any) { m["issuer"] = "http://127.0.0.1:1/t/evil" })}
		}, noAuthorization},
		{FlawIgnorePRMResource, func() worldOpts {
			rs := only("rs1")
			rs["rs1"].prmResource = "http://127.0.0.1:1/elsewhere"
			return worldOpts{rs: rs, steps: readOnly}
		}, noAuthorization},
		{FlawSkipIDTokenCheck, func() worldOpts {
			rs := only("rs1")
			rs["rs1"].prmScopes = []string{"openid", "notes:read"}
			return worldOpts{rs: rs, steps: readOnly, idpMutate: rogueIDToken(t)}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			n := rsTokenCalls(w, "rs1")
			return n == 0 && err != nil, fmt.Sprintf("%d requests with a token after a forged ID token", n)
		}},
		{FlawOneTokenForAll, func() worldOpts {
			return worldOpts{steps: []modelStep{{tool: "notes_read"}, {tool: "lookup"}}}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			n := rsTokenCalls(w, "decoy")
			return n == 0, fmt.Sprintf("the decoy got %d tokens", n)
		}},
		{FlawTokenInQuery, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				for _, h := range w.rec.all("rs1", "") {
					if h.Query.Has("access_token") {
						return false, "access_token in the query"
					}
				}
				return true, ""
			}},
		{FlawTokenInLog, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				for _, tok := range w.issued() {
					if strings.Contains(w.stderr.String(), tok) {
						return false, "a token on stderr"
					}
				}
				return true, ""
			}},
		{FlawLeakTokenToModel, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				for _, h := range w.rec.all("model", "") {
					for _, tok := range w.issued() {
						if strings.Contains(h.Body, tok) {
							return false, "a token reached the model"
						}
					}
				}
				return err == nil, fmt.Sprint(err)
			}},
		{FlawUseAfterRevoke, func() worldOpts { return worldOpts{rs: only("rs1"), steps: readOnly} },
			func(t *testing.T, w *world, err error) (bool, string) {
				revs := w.rec.all("idp", "/revoke")
				if len(revs) == 0 {
					return false, "no revocation"
				}
				for _, h := range w.rec.all("rs1", "") {
					if h.At.After(revs[0].At) {
						return false, "rs1 called after the revocation"
					}
				}
				return true, ""
			}},
		{FlawRetry401Forever, func() worldOpts {
			rs := only("rs1")
			rs["rs1"].rejectFrom = 1
			return worldOpts{rs: rs, steps: readOnly}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			n := 0
			for _, h := range w.rec.all("rs1", "/mcp") {
				if h.Auth != "" && strings.Contains(h.Body, `"tools/call"`) {
					n++
				}
			}
			// One call: its first try and at most two renewals.
			return n <= 3, fmt.Sprintf("%d tools/call requests with a token", n)
		}},
		{FlawReuseFirstRT, func() worldOpts {
			rs := only("rs1")
			rs["rs1"].rejectCalls = []int{2, 3}
			return worldOpts{rs: rs, steps: []modelStep{{tool: "notes_read"}, {tool: "notes_read"}, {tool: "notes_read"}}}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			seen := map[string]bool{}
			n := 0
			for _, h := range w.rec.all("idp", "/token") {
				if rt := h.Form.Get("refresh_token"); rt != "" {
					n++
					if seen[rt] {
						return false, "a refresh token presented twice"
					}
					seen[rt] = true
				}
			}
			return n == 2 && err == nil, fmt.Sprintf("%d refreshes, err %v", n, err)
		}},
		{FlawNoProactiveRefresh, func() worldOpts {
			return worldOpts{rs: only("rs1"), atLifetime: 6 * time.Second,
				steps: []modelStep{{tool: "notes_read"}, {tool: "notes_read", delay: 6500 * time.Millisecond}}}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			for _, h := range w.rec.all("rs1", "/mcp") {
				if h.Status == 401 && h.Auth != "" {
					return false, "an expired token was presented"
				}
			}
			return err == nil, fmt.Sprint(err)
		}},
		{FlawReuseClientAcrossAS, func() worldOpts {
			rs := only("rs1", "rs2")
			rs["rs2"].tenant = "other"
			return worldOpts{rs: rs}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			for _, h := range w.rec.all("idp", "") {
				if strings.Contains(h.Path, "/t/other/") && (h.Query.Get("client_id") == "copilot" || h.Form.Get("client_id") == "copilot") {
					return false, "the first AS's client id at the second"
				}
			}
			if len(w.rec.all("idp", "/t/other/register")) != 1 {
				return false, "no registration at the second AS"
			}
			return err == nil, fmt.Sprint(err)
		}},
		{FlawDPoPReuseJTI, func() worldOpts {
			rs := only("rs1")
			rs["rs1"].dpopRequired = true
			return worldOpts{rs: rs, steps: []modelStep{{tool: "notes_read"}, {tool: "notes_read"}}}
		}, dpopHolds},
		{FlawIgnoreDPoPRequirement, func() worldOpts {
			rs := only("rs1")
			rs["rs1"].dpopRequired = true
			return worldOpts{rs: rs, steps: readOnly}
		}, dpopHolds},
		{FlawPassUserToken, func() worldOpts {
			return worldOpts{grant: GrantClientCredentials, rs: only("rs1"), steps: readOnly, userToken: true}
		}, func(t *testing.T, w *world, err error) (bool, string) {
			ut := w.env["AGENTSSO_USER_TOKEN"]
			for _, h := range w.rec.all("rs1", "") {
				if tokenOf(h.Auth) == ut {
					return false, "rs1 got the user's token"
				}
			}
			ex := 0
			for _, h := range w.rec.all("idp", "/token") {
				if strings.HasSuffix(h.Form.Get("grant_type"), "token-exchange") && h.Form.Get("subject_token") == ut && h.Form.Get("actor_token") != "" && h.Status == 200 {
					ex++
				}
			}
			return ex == 1 && err == nil, fmt.Sprintf("%d exchanges, err %v", ex, err)
		}},
		{FlawAssertionLongLived, func() worldOpts {
			return worldOpts{grant: GrantClientCredentials, clientAuth: AuthPrivateKeyJWT, rs: only("rs1"), steps: readOnly}
		}, assertionHolds},
		{FlawAssertionFixedJTI, func() worldOpts {
			return worldOpts{grant: GrantClientCredentials, clientAuth: AuthPrivateKeyJWT, steps: []modelStep{{tool: "notes_read"}, {tool: "search"}}}
		}, assertionHolds},
	}
}

func dpopHolds(t *testing.T, w *world, err error) (bool, string) {
	jtis := map[string]bool{}
	proofs := 0
	for _, h := range w.rec.all("", "") {
		if h.Srv == "rs1" && h.Auth != "" && !strings.HasPrefix(h.Auth, "DPoP ") {
			return false, "rs1 got scheme " + strings.Fields(h.Auth)[0]
		}
		if h.DPoP == "" {
			continue
		}
		proofs++
		jti, _ := claimsOf(t, h.DPoP)["jti"].(string)
		if jtis[jti] {
			return false, "jti reused"
		}
		jtis[jti] = true
	}
	return proofs >= 3 && err == nil, fmt.Sprintf("%d proofs, err %v", proofs, err)
}

func assertionHolds(t *testing.T, w *world, err error) (bool, string) {
	jtis := map[string]bool{}
	for _, h := range w.rec.all("idp", "/token") {
		a := h.Form.Get("client_assertion")
		if a == "" {
			continue
		}
		c := claimsOf(t, a)
		if c["exp"].(float64)-c["iat"].(float64) > 60 {
			return false, "a long-lived assertion"
		}
		if jti := c["jti"].(string); jtis[jti] {
			return false, "a jti reused"
		} else {
			jtis[jti] = true
		}
	}
	return len(jtis) > 0, fmt.Sprintf("%d assertions", len(jtis))
}

// TestFlawsChangeTraffic: for each flaw, the behaviour it breaks holds on
// the conforming agent and not with the flaw, in the same world.
func TestFlawsChangeTraffic(t *testing.T) {
	t.Parallel()
	covered := map[string]bool{}
	for _, fc := range flawCases(t) {
		covered[fc.flaw] = true
		t.Run(fc.flaw, func(t *testing.T) {
			t.Parallel()
			for _, flawed := range []bool{false, true} {
				o := fc.opts()
				if flawed {
					o.flaws = fc.flaw
				}
				w := newWorld(t, o)
				err := w.run()
				ok, why := fc.holds(t, w, err)
				if !flawed && !ok {
					t.Errorf("conforming agent: the behaviour does not hold: %s", why)
				}
				if flawed && ok {
					t.Errorf("with %s: the behaviour still holds (%s): the switch changes nothing", fc.flaw, why)
				}
			}
		})
	}
	for _, f := range Flaws() {
		if !covered[f.Name] {
			t.Errorf("flaw %s has no traffic test", f.Name)
		}
	}
}
