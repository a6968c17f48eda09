package refgw_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// dpopKey is a client instance's DPoP key (RFC 9449).
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jkt  string // RFC 7638 thumbprint, base64url
}

func newDPoPKey(t testing.TB) dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{priv: priv, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

// proofSpec describes a DPoP proof; the zero value of each field means
// "as a correct client would make it".
type proofSpec struct {
	method, htu, token string
	iat                time.Time
	typ                string // "" means dpop+jwt
	jti                string // "" means random
	ath                string // "" means the token's hash; "-" means none
	hs256              bool   // MAC the proof with a shared key instead
	privateJWK         bool   // put the private key in the jwk header
	corrupt            bool   // flip a bit of the signature
}

func ath(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proof builds a DPoP proof JWT with go-jose.
func (k dpopKey) proof(t testing.TB, s proofSpec) string {
	t.Helper()
	claims := map[string]any{"htm": s.method, "htu": s.htu, "iat": s.iat.Unix(), "jti": s.jti}
	if s.jti == "" {
		claims["jti"] = randomID()
	}
	switch s.ath {
	case "":
		claims["ath"] = ath(s.token)
	case "-":
	default:
		claims["ath"] = s.ath
	}
	typ := s.typ
	if typ == "" {
		typ = "dpop+jwt"
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	sk := jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}
	pub := jose.JSONWebKey{Key: k.priv.Public()}
	switch {
	case s.hs256:
		sk = jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}
		opts.WithHeader("jwk", pub)
	case s.privateJWK:
		opts.WithHeader("jwk", jose.JSONWebKey{Key: k.priv})
	default:
		opts.EmbedJWK = true
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if s.corrupt {
		out = flipSignatureBit(out)
	}
	return out
}

// dpopRequest is GET {gw}/api/tickets with a DPoP-bound token and proofs.
func dpopRequest(t testing.TB, gw *gateway, scheme, tok string, proofs ...string) *http.Request {
	req := gw.get(t, "/api/tickets", "")
	req.Header.Set("Authorization", scheme+" "+tok)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return req
}

// dpopCase is one proof variant.
type dpopCase struct {
	name   string
	flaw   string
	status int
	scheme string // of the challenge
	code   string
	reason string // in the audit record
	// build returns the request; key is the key the token is bound to.
	build func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request
}

// proofWith makes a DPoP request whose single proof is spec edited by edit.
func proofWith(edit func(f *fixture, gw *gateway, s *proofSpec)) func(*testing.T, *fixture, *gateway, dpopKey, string) *http.Request {
	return func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
		s := proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()}
		if edit != nil {
			edit(f, gw, &s)
		}
		return dpopRequest(t, gw, "DPoP", tok, key.proof(t, s))
	}
}

func dpopCases() []dpopCase {
	const bad = "invalid_dpop_proof"
	return []dpopCase{
		{name: "valid proof", status: 200, build: proofWith(nil)},
		{name: "valid proof, scheme in lower case", status: 200, build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
			req := proofWith(nil)(t, f, gw, key, tok)
			req.Header.Set("Authorization", "dpop "+tok)
			return req
		}},
		{name: "valid proof, htu with query and fragment", status: 200, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) {
			s.htu += "?page=2#top"
		})},
		{name: "valid proof, iat 50 s old", status: 200, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) {
			s.iat = s.iat.Add(-50 * time.Second)
		})},
		// dpop-bound-as-bearer
		{name: "bound token as Bearer without proof", reason: "without DPoP", flaw: refgw.FlawDPoPAsBearer, status: s401, scheme: "DPoP", code: iT,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
				return dpopRequest(t, gw, "Bearer", tok)
			}},
		{name: "bound token as Bearer with a valid proof", reason: "without DPoP", flaw: refgw.FlawDPoPAsBearer, status: s401, scheme: "DPoP", code: iT,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
				req := proofWith(nil)(t, f, gw, key, tok)
				req.Header.Set("Authorization", "Bearer "+tok)
				return req
			}},
		// dpop-proof-checks, RFC 9449 section 4.3
		{name: "(1) two DPoP headers", reason: "more than one DPoP header", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
				s := proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()}
				return dpopRequest(t, gw, "DPoP", tok, key.proof(t, s), key.proof(t, s))
			}},
		{name: "(1) no proof", reason: "no DPoP proof", status: s401, scheme: "DPoP", code: bad,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
				return dpopRequest(t, gw, "DPoP", tok)
			}},
		{name: "(2) not a JWT", reason: "compact serialization", status: s401, scheme: "DPoP", code: bad,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
				return dpopRequest(t, gw, "DPoP", tok, "not-a-jwt")
			}},
		{name: "(3) ath missing", reason: "ath is required", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.ath = "-" })},
		{name: "(4) typ JWT", reason: "typ must be dpop+jwt", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.typ = "JWT" })},
		{name: "(5) HS256 proof", reason: "alg must be one of", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.hs256 = true })},
		{name: "(6) bad signature", reason: "signature does not verify", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.corrupt = true })},
		{name: "(7) private key in jwk", reason: "jwk must be a public key", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.privateJWK = true })},
		{name: "(8) htm PUT", reason: "htm does not match", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.method = http.MethodPut })},
		{name: "(9) htu of another path", reason: "htu does not match", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.htu = gw.url + "/api/admin" })},
		{name: "(9) htu with another port", reason: "htu does not match", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) {
			s.htu = "http://127.0.0.1:1/api/tickets"
		})},
		{name: "(11) iat 1 h ago", reason: "iat is outside", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.iat = s.iat.Add(-time.Hour) })},
		{name: "(11) iat 1 h ahead", reason: "iat is outside", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.iat = s.iat.Add(time.Hour) })},
		{name: "(12) ath of another token", reason: "ath does not match", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: bad, build: proofWith(func(f *fixture, gw *gateway, s *proofSpec) { s.ath = ath("another token") })},
		{name: "(12) key is not the bound key", reason: "not the key the token is bound to", flaw: refgw.FlawSkipDPoPProofChecks, status: s401, scheme: "DPoP", code: iT,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, tok string) *http.Request {
				s := proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()}
				return dpopRequest(t, gw, "DPoP", tok, newDPoPKey(t).proof(t, s))
			}},
		{name: "DPoP scheme with an unbound token", reason: "not DPoP-bound", status: s401, scheme: "DPoP", code: iT,
			build: func(t *testing.T, f *fixture, gw *gateway, key dpopKey, _ string) *http.Request {
				tok := f.mint(f.claims(gw))
				s := proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()}
				return dpopRequest(t, gw, "DPoP", tok, key.proof(t, s))
			}},
	}
}

func TestDPoP(t *testing.T) {
	for _, c := range dpopCases() {
		t.Run(c.name, func(t *testing.T) {
			run := func(t *testing.T, flaws []string) response {
				f := newFixture(t)
				gw := f.newGateway(flaws, withDPoP)
				key := newDPoPKey(t)
				cl := f.claims(gw)
				cl["cnf"] = map[string]any{"jkt": key.jkt}
				tok := f.mint(cl)
				req := c.build(t, f, gw, key, tok)
				resp := gw.do(t, nil, req)
				if resp.status == http.StatusOK {
					if got := f.upstreamRequests(); len(got) != 1 {
						t.Fatalf("upstream got %d requests, want 1", len(got))
					}
				} else if got := f.upstreamRequests(); len(got) != 0 {
					t.Fatalf("upstream got %v after a refusal", got)
				}
				checkDPoPChallenge(t, gw, resp, c.status, c.scheme, c.code, tok)
				recs, _ := readAudit(t, gw.auditPath)
				if r := recs[len(recs)-1].Reason; !strings.Contains(r, c.reason) {
					t.Errorf("audit reason %q, want it to contain %q", r, c.reason)
				}
				return resp
			}
			run(t, nil)
			if c.flaw != "" {
				t.Run("with "+c.flaw, func(t *testing.T) {
					f := newFixture(t)
					gw := f.newGateway([]string{c.flaw}, withDPoP)
					key := newDPoPKey(t)
					cl := f.claims(gw)
					cl["cnf"] = map[string]any{"jkt": key.jkt}
					tok := f.mint(cl)
					resp := gw.do(t, nil, c.build(t, f, gw, key, tok))
					if resp.status != http.StatusOK {
						t.Fatalf("status %d with the flaw on, want 200; WWW-Authenticate %q", resp.status, resp.header.Values("WWW-Authenticate"))
					}
				})
			}
		})
	}
}

func checkDPoPChallenge(t *testing.T, gw *gateway, resp response, status int, scheme, code, tok string) {
	t.Helper()
	checkRefusal(t, gw, resp, status, scheme, code, tok)
	if status == http.StatusOK || scheme != "DPoP" {
		return
	}
	ch := parseChallenges(t, resp.header.Values("WWW-Authenticate"))[0]
	if got, want := ch.Params["algs"], "ES256 ES384 RS256 PS256 EdDSA"; got != want {
		t.Errorf("algs=%q, want %q", got, want)
	}
}

// A proof's jti is accepted once; the same proof again is a replay.
func TestDPoPReplay(t *testing.T) {
	for _, flaws := range [][]string{nil, {refgw.FlawSkipDPoPProofChecks}} {
		f := newFixture(t)
		gw := f.newGateway(flaws, withDPoP)
		key := newDPoPKey(t)
		cl := f.claims(gw)
		cl["cnf"] = map[string]any{"jkt": key.jkt}
		tok := f.mint(cl)
		proof := key.proof(t, proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()})
		if resp := gw.do(t, nil, dpopRequest(t, gw, "DPoP", tok, proof)); resp.status != http.StatusOK {
			t.Fatalf("first use: status %d", resp.status)
		}
		resp := gw.do(t, nil, dpopRequest(t, gw, "DPoP", tok, proof))
		if flaws == nil {
			checkDPoPChallenge(t, gw, resp, s401, "DPoP", "invalid_dpop_proof", tok)
		} else if resp.status != http.StatusOK {
			t.Errorf("replay with %v: status %d, want 200", flaws, resp.status)
		}
		// A fresh proof from the same key still works.
		fresh := key.proof(t, proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()})
		if resp := gw.do(t, nil, dpopRequest(t, gw, "DPoP", tok, fresh)); resp.status != http.StatusOK {
			t.Errorf("fresh proof: status %d", resp.status)
		}
	}
}

// Without DPoP support a bound token cannot be accepted at all, and the
// DPoP scheme is not understood.
func TestDPoPNotConfigured(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil)
	key := newDPoPKey(t)
	cl := f.claims(gw)
	cl["cnf"] = map[string]any{"jkt": key.jkt}
	tok := f.mint(cl)
	resp := gw.do(t, nil, dpopRequest(t, gw, "Bearer", tok))
	checkRefusal(t, gw, resp, s401, "Bearer", iT, tok)
	proof := key.proof(t, proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: tok, iat: f.clock.Now()})
	resp = gw.do(t, nil, dpopRequest(t, gw, "DPoP", tok, proof))
	checkRefusal(t, gw, resp, s401, "Bearer", "", tok)
	if got := f.upstreamRequests(); len(got) != 0 {
		t.Fatalf("upstream got %v", got)
	}
}
