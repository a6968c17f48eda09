package refgw_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// attack is one request the harness might send. On the reference gateway
// it must be refused with status and the challenge's error code, and
// nothing may reach the upstream. With flaw on (when set) the same request
// must be accepted: that is the negative control a scenario relies on.
type attack struct {
	name   string
	flaw   string
	status int    // on the reference gateway
	code   string // error= in the challenge; "" for none
	// scheme of the challenge; "" means Bearer.
	scheme string
	config func(f *fixture) []func(*refgw.Config)
	build  func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client)
	// noCanary: the reference gateway must not have fetched the canary.
	noCanary bool
	// reason, when set, must appear in the audit record's reason.
	reason string
}

// bearer builds GET /api/tickets with the token tok returns.
func bearer(tok func(f *fixture, gw *gateway) string) func(*testing.T, *fixture, *gateway) (*http.Request, *http.Client) {
	return func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
		return gw.get(t, "/api/tickets", tok(f, gw)), nil
	}
}

// claimsWith mints a token from the valid claims changed by edit.
func claimsWith(edit func(f *fixture, gw *gateway, c map[string]any), opts ...mintOpt) func(f *fixture, gw *gateway) string {
	return func(f *fixture, gw *gateway) string {
		c := f.claims(gw)
		if edit != nil {
			edit(f, gw, c)
		}
		return f.mint(c, opts...)
	}
}

func headerWith(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "at+jwt"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

func cfg(mods ...func(*refgw.Config)) func(*fixture) []func(*refgw.Config) {
	return func(*fixture) []func(*refgw.Config) { return mods }
}

const (
	s401 = http.StatusUnauthorized
	s403 = http.StatusForbidden
	s400 = http.StatusBadRequest
	iT   = "invalid_token"
	iR   = "invalid_request"
	iS   = "insufficient_scope"
)

func tokenAttacks() []attack {
	now := func(f *fixture) time.Time { return f.clock.Now() }
	return []attack{
		// Positive controls: variants a conforming gateway accepts.
		{name: "valid ES256", status: 200, build: bearer(claimsWith(nil))},
		{name: "valid RS256", status: 200, build: bearer(func(f *fixture, gw *gateway) string { return f.mint(f.claims(gw), withKey(f.rsa)) })},
		{name: "valid PS256", status: 200, build: bearer(func(f *fixture, gw *gateway) string { return f.mint(f.claims(gw), withKey(f.ps)) })},
		{name: "valid aud array containing the gateway", status: 200, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = []string{"https://other.example.test", gw.url}
		}))},
		{name: "valid typ application/at+jwt", status: 200, build: bearer(claimsWith(nil, withTyp("application/AT+JWT")))},
		{name: "valid exp 20s ago within leeway", status: 200, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["exp"] = now(f).Add(-20 * time.Second).Unix()
		}))},
		{name: "valid scheme in lower case", status: 200, build: func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
			req := gw.get(t, "/api/tickets", "")
			req.Header.Set("Authorization", "bearer "+f.mint(f.claims(gw)))
			return req, nil
		}},
		{name: "valid ctx matching zone and network", status: 200, config: cfg(func(c *refgw.Config) { c.Zone = "eu-west-1a" }),
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
				c["ctx"] = map[string]any{"zone": "eu-west-1a", "net": []string{"127.0.0.0/30"}, "instance": "agent-7f3c"}
			}))},
		{name: "valid current actor allowed", status: 200, config: cfg(func(c *refgw.Config) { c.AllowedActors = []string{"agent-a"} }),
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
				c["act"] = map[string]any{"sub": "agent-a", "act": map[string]any{"sub": "agent-b"}}
			}))},

		// jwt-alg-none
		{name: "alg none", flaw: refgw.FlawAcceptAlgNone, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return rawJWT(headerWith("none", ""), f.claims(gw), nil)
		})},
		{name: "alg nOnE", flaw: refgw.FlawAcceptAlgNone, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return rawJWT(headerWith("nOnE", f.ec.kid), f.claims(gw), nil)
		})},
		// jwt-alg-confusion-hs256
		{name: "HS256 with the PEM public key as secret", flaw: refgw.FlawHS256Confusion, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return hs256(headerWith("HS256", f.ec.kid), f.claims(gw), publicPEM(f.t, f.ec))
		})},
		{name: "HS256 with the JWK JSON as secret", flaw: refgw.FlawHS256Confusion, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			jwk := f.rsa.publicJWK()
			secret, _ := jwk.MarshalJSON()
			return hs256(headerWith("HS256", f.rsa.kid), f.claims(gw), secret)
		})},
		// jwt-bad-signature
		{name: "ES256 signature bit flipped", flaw: refgw.FlawSkipSignature, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return flipSignatureBit(f.mint(f.claims(gw)))
		})},
		{name: "RS256 signature bit flipped", flaw: refgw.FlawSkipSignature, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return flipSignatureBit(f.mint(f.claims(gw), withKey(f.rsa)))
		})},
		{name: "PS256 signature bit flipped", flaw: refgw.FlawSkipSignature, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return flipSignatureBit(f.mint(f.claims(gw), withKey(f.ps)))
		})},
		{name: "ES256 r=s=0 raw (CVE-2022-21449)", flaw: refgw.FlawSkipSignature, status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return rawJWT(headerWith("ES256", f.ec.kid), f.claims(gw), make([]byte, 64))
		})},
		{name: "ES256 r=s=0 DER", reason: "signature does not verify", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return rawJWT(headerWith("ES256", f.ec.kid), f.claims(gw), []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00})
		})},
		// jwt-header-key-injection
		{name: "embedded jwk (CVE-2018-0114)", flaw: refgw.FlawTrustHeaderKeys, status: s401, code: iT,
			build: bearer(func(f *fixture, gw *gateway) string {
				return f.mint(f.claims(gw), withKey(f.attacker), withEmbeddedJWK())
			})},
		{name: "jku to a canary", flaw: refgw.FlawTrustHeaderKeys, status: s401, code: iT, noCanary: true,
			build: bearer(func(f *fixture, gw *gateway) string {
				return f.mint(f.claims(gw), withKey(f.attacker), withHeader("jku", f.idp.URL+"/canary/jwks"))
			})},
		{name: "x5u to a canary", flaw: refgw.FlawTrustHeaderKeys, status: s401, code: iT, noCanary: true,
			build: bearer(func(f *fixture, gw *gateway) string {
				return f.mint(f.claims(gw), withKey(f.attacker), withHeader("x5u", f.idp.URL+"/canary/cert.pem"))
			})},
		{name: "self-signed x5c", flaw: refgw.FlawTrustHeaderKeys, status: s401, code: iT,
			build: bearer(func(f *fixture, gw *gateway) string {
				return f.mint(f.claims(gw), withKey(f.attacker), withHeader("x5c", []string{base64.StdEncoding.EncodeToString(f.attackerCertDER())}))
			})},
		{name: "kid path traversal with empty HMAC key", reason: "signature algorithm not accepted", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return hs256(headerWith("HS256", "../../../../../../dev/null"), f.claims(gw), nil)
		})},
		{name: "kid SQL injection", reason: "signature algorithm not accepted", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return hs256(headerWith("HS256", "x' UNION SELECT 'k'--"), f.claims(gw), []byte("k"))
		})},
		{name: "unknown kid", reason: "no key of the issuer matches", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return f.mint(f.claims(gw), withKey(signingKey{kid: "nope", alg: jose.ES256, priv: f.attacker.priv}))
		})},
		// tenant-issuer-confusion
		{name: "tenant B token at tenant A's gateway", flaw: refgw.FlawAcceptAnyTenantKey, status: s401, code: iT,
			build: bearer(func(f *fixture, gw *gateway) string {
				c := f.claims(gw)
				c["iss"] = f.issuerB
				return f.mint(c, withKey(f.tenantB))
			})},
		{name: "iss A signed with tenant B's key", reason: "no key of the issuer matches", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string { return f.mint(f.claims(gw), withKey(f.tenantB)) })},
		// jwt-structure-confusion
		{name: "unknown crit", reason: "unsupported critical header", flaw: refgw.FlawIgnoreCrit, status: s401, code: iT,
			build: bearer(claimsWith(nil, withHeader("crit", []string{"urn:example:unknown"}), withHeader("urn:example:unknown", true)))},
		{name: "JWE instead of JWS", reason: "JWE", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return b64(map[string]any{"alg": "dir", "enc": "A128GCM", "typ": "at+jwt"}) + "..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
		})},
		{name: "JWS JSON serialization", reason: "b64token", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			jws, _ := jose.ParseSignedCompact(f.mint(f.claims(gw)), []jose.SignatureAlgorithm{jose.ES256})
			return jws.FullSerialize()
		})},
		{name: "nested JWT with an unsigned inner token", reason: "claims are not a JSON object", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			inner := rawJWT(map[string]any{"alg": "none"}, f.claims(gw), nil)
			return f.mintRaw([]byte(inner), withHeader("cty", "JWT"))
		})},
		{name: "b64 false", reason: "b64", status: s401, code: iT, build: bearer(claimsWith(nil, withHeader("b64", true)))},
		// token-kind-confusion
		{name: "typ JWT (an ID token)", flaw: refgw.FlawSkipTyp, status: s401, code: iT, build: bearer(claimsWith(nil, withTyp("JWT")))},
		{name: "typ absent", flaw: refgw.FlawSkipTyp, status: s401, code: iT, build: bearer(claimsWith(nil, withTyp("-")))},
		{name: "typ dpop+jwt (a DPoP proof)", flaw: refgw.FlawSkipTyp, status: s401, code: iT, build: bearer(claimsWith(nil, withTyp("dpop+jwt")))},
		// iss-mismatch
		{name: "foreign iss", flaw: refgw.FlawSkipIssuer, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["iss"] = "https://evil.example.test"
		}))},
		{name: "iss with a trailing slash", flaw: refgw.FlawSkipIssuer, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["iss"] = f.issuer + "/"
		}))},
		{name: "iss in other case", flaw: refgw.FlawSkipIssuer, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["iss"] = strings.ToUpper(f.issuer)
		}))},
		// aud-wrong-resource, aud-malformed
		{name: "aud is a sibling server", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = "https://mcp.example.test/other"
		}))},
		{name: "aud is the upstream", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = f.upstream.URL
		}))},
		{name: "aud missing", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			delete(c, "aud")
		}))},
		{name: "aud empty array", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = []string{}
		}))},
		{name: "aud array of empty string", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = []string{""}
		}))},
		{name: "aud prefix look-alike", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = gw.url[:len(gw.url)-1]
		}))},
		{name: "aud suffix look-alike", flaw: refgw.FlawSkipAudience, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = gw.url + ".evil.test"
		}))},
		{name: "aud not a string", reason: "aud is neither", status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["aud"] = 42
		}))},
		// jwt-temporal
		{name: "exp 5 min past", flaw: refgw.FlawSkipExpiry, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["iat"] = now(f).Add(-10 * time.Minute).Unix()
			c["exp"] = now(f).Add(-5 * time.Minute).Unix()
		}))},
		{name: "exp just past the leeway", flaw: refgw.FlawSkipExpiry, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["exp"] = now(f).Add(-31 * time.Second).Unix()
		}))},
		{name: "exp missing", flaw: refgw.FlawSkipExpiry, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			delete(c, "exp")
		}))},
		{name: "exp not a number", reason: "exp is not a NumericDate", status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["exp"] = "tomorrow"
		}))},
		{name: "nbf 1 h ahead", flaw: refgw.FlawSkipNbf, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["nbf"] = now(f).Add(time.Hour).Unix()
		}))},
		{name: "iat 1 h ahead", flaw: refgw.FlawSkipNbf, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["iat"] = now(f).Add(time.Hour).Unix()
			c["exp"] = now(f).Add(time.Hour + 5*time.Minute).Unix()
		}))},
		// long-lived-token-policy
		{name: "24 h token", flaw: refgw.FlawNoLifetimeLimit, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["exp"] = now(f).Add(24 * time.Hour).Unix()
		}))},
		{name: "token issued 2 h ago still valid", flaw: refgw.FlawNoLifetimeLimit, status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["iat"] = now(f).Add(-2 * time.Hour).Unix()
		}))},
		// Claims the gateway needs.
		{name: "sub missing", reason: "token has no sub", status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) { delete(c, "sub") }))},
		{name: "scope as a JSON array", reason: "scope is not a string", status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = []string{scopeRead}
		}))},
		{name: "certificate-bound token (cnf x5t#S256)", reason: "unsupported confirmation method", status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["cnf"] = map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
		}))},
		{name: "act without sub", reason: "act has no sub", status: s401, code: iT, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["act"] = map[string]any{"client_id": "x"}
		}))},
		// act-current-actor
		{name: "current actor not allowed, nested actor allowed", flaw: refgw.FlawAnyActor, status: s401, code: iT,
			config: cfg(func(c *refgw.Config) { c.AllowedActors = []string{"agent-a"} }),
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
				c["act"] = map[string]any{"sub": "agent-b", "act": map[string]any{"sub": "agent-a"}}
			}))},
		// context-binding-replay (zone and env; networks are in TestContextBinding)
		{name: "ctx zone of another zone", flaw: refgw.FlawSkipContext, status: s401, code: iT, config: cfg(func(c *refgw.Config) { c.Zone = "eu-west-1a" }),
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) { c["ctx"] = map[string]any{"zone": "us-east-1b"} }))},
		{name: "ctx zone at a gateway with no zone", flaw: refgw.FlawSkipContext, status: s401, code: iT,
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) { c["ctx"] = map[string]any{"zone": "us-east-1b"} }))},
		{name: "ctx env of another environment", flaw: refgw.FlawSkipContext, status: s401, code: iT, config: cfg(func(c *refgw.Config) { c.Env = "prod" }),
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) { c["ctx"] = map[string]any{"env": "staging"} }))},
		{name: "ctx net elsewhere", flaw: refgw.FlawSkipContext, status: s401, code: iT,
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
				c["ctx"] = map[string]any{"net": []string{"10.0.0.0/8"}}
			}))},
		{name: "ctx net not a CIDR", reason: "ctx.net", status: s401, code: iT,
			build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
				c["ctx"] = map[string]any{"net": []string{"localhost"}}
			}))},
		// scope-insufficient, scope-overbroad-or-foreign
		{name: "scope missing", flaw: refgw.FlawSkipScope, status: s403, code: iS, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = "openid"
		}))},
		{name: "scope of another resource", flaw: refgw.FlawSkipScope, status: s403, code: iS, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = "crm:read"
		}))},
		{name: "scope tab-separated", flaw: refgw.FlawSkipScope, status: s403, code: iS, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = "openid\t" + scopeRead
		}))},
		{name: "scope superstring (readonly vs read)", flaw: refgw.FlawLooseScope, status: s403, code: iS, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = scopeRead + "only"
		}))},
		{name: "scope wildcard *", flaw: refgw.FlawLooseScope, status: s403, code: iS, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = "*"
		}))},
		{name: "scope all", flaw: refgw.FlawLooseScope, status: s403, code: iS, build: bearer(claimsWith(func(f *fixture, gw *gateway, c map[string]any) {
			c["scope"] = "all"
		}))},
		// bearer-hygiene and presentation
		{name: "token in the query string", flaw: refgw.FlawQueryToken, status: s400, code: iR, build: func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
			return gw.get(t, "/api/tickets?access_token="+f.mint(f.claims(gw)), ""), nil
		}},
		{name: "token in the query and the header", reason: "query string", status: s400, code: iR, build: func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
			tok := f.mint(f.claims(gw))
			return gw.get(t, "/api/tickets?access_token="+tok, tok), nil
		}},
		{name: "two Authorization headers", reason: "more than one Authorization header", status: s400, code: iR, build: func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
			req := gw.get(t, "/api/tickets", f.mint(f.claims(gw)))
			req.Header.Add("Authorization", "Bearer "+f.mint(f.claims(gw)))
			return req, nil
		}},
		{name: "empty bearer token", reason: "empty token", status: s400, code: iR, build: func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
			req := gw.get(t, "/api/tickets", "")
			req.Header.Set("Authorization", "Bearer ")
			return req, nil
		}},
		{name: "no token", reason: "no access token", status: s401, build: bearer(func(*fixture, *gateway) string { return "" })},
		{name: "Basic credentials", reason: "unsupported authorization scheme", status: s401, build: func(t *testing.T, f *fixture, gw *gateway) (*http.Request, *http.Client) {
			req := gw.get(t, "/api/tickets", "")
			req.SetBasicAuth("support-bot", "secret")
			return req, nil
		}},
		{name: "token with a space inside", reason: "b64token", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			tok := f.mint(f.claims(gw))
			return tok[:20] + " " + tok[20:]
		})},
		// jwt-oversize-dos
		{name: "100 KiB token", reason: "token too large", status: s401, code: iT, build: bearer(func(*fixture, *gateway) string { return strings.Repeat("a", 100<<10) })},
		{name: "100k dots", reason: "token too large", status: s401, code: iT, build: bearer(func(*fixture, *gateway) string { return strings.Repeat(".", 100_000) })},
		{name: "15 KiB of dots", reason: "not a JWS", status: s401, code: iT, build: bearer(func(*fixture, *gateway) string { return strings.Repeat(".", 15<<10) })},
		{name: "deeply nested claims", reason: "signature", status: s401, code: iT, build: bearer(func(f *fixture, gw *gateway) string {
			return rawJWT(headerWith("ES256", f.ec.kid), map[string]any{"x": json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))}, make([]byte, 64))
		})},
	}
}

func TestTokenChecks(t *testing.T) {
	for _, a := range tokenAttacks() {
		t.Run(a.name, func(t *testing.T) {
			f := newFixture(t)
			var mods []func(*refgw.Config)
			if a.config != nil {
				mods = a.config(f)
			}
			gw := f.newGateway(nil, mods...)
			req, client := a.build(t, f, gw)
			tok := presentedToken(req)
			resp := gw.do(t, client, req)
			checkRefusal(t, gw, resp, a.status, a.scheme, a.code, tok)
			got := f.upstreamRequests()
			if a.status == http.StatusOK {
				if len(got) != 1 {
					t.Fatalf("upstream got %d requests, want 1", len(got))
				}
			} else if len(got) != 0 {
				t.Fatalf("upstream got %v after a refusal", got)
			}
			recs, _ := readAudit(t, gw.auditPath)
			if len(recs) != 1 {
				t.Fatalf("%d audit records, want 1", len(recs))
			}
			if want := map[bool]string{true: refgw.DecisionAllow, false: refgw.DecisionDeny}[a.status == http.StatusOK]; recs[0].Decision != want {
				t.Errorf("audit decision %q, want %q", recs[0].Decision, want)
			}
			if !strings.Contains(recs[0].Reason, a.reason) {
				t.Errorf("audit reason %q, want it to contain %q", recs[0].Reason, a.reason)
			}
			if _, canary, _ := f.counters(); a.noCanary && canary != 0 {
				t.Errorf("the gateway fetched the canary %d times", canary)
			}
			if a.flaw == "" {
				return
			}
			// Negative control: the same request passes with the flaw on.
			t.Run("with "+a.flaw, func(t *testing.T) {
				f := newFixture(t)
				var mods []func(*refgw.Config)
				if a.config != nil {
					mods = a.config(f)
				}
				gw := f.newGateway([]string{a.flaw}, mods...)
				req, client := a.build(t, f, gw)
				resp := gw.do(t, client, req)
				if resp.status != http.StatusOK {
					t.Fatalf("status %d, want 200 with the flaw on; body %s; WWW-Authenticate %q", resp.status, resp.body, resp.header.Values("WWW-Authenticate"))
				}
				if got := f.upstreamRequests(); len(got) != 1 {
					t.Fatalf("upstream got %d requests, want 1", len(got))
				}
			})
		})
	}
}

// presentedToken is the token a request carries (header or query).
func presentedToken(req *http.Request) string {
	if tok := req.URL.Query().Get("access_token"); tok != "" {
		return tok
	}
	_, tok, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	return tok
}

// checkRefusal checks status, challenge and body of an answer.
func checkRefusal(t *testing.T, gw *gateway, resp response, status int, scheme, code, tok string) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d, want %d; body %s; WWW-Authenticate %q", resp.status, status, resp.body, resp.header.Values("WWW-Authenticate"))
	}
	if status == http.StatusOK {
		return
	}
	if len(tok) > 8 && strings.Contains(resp.body, tok) {
		t.Errorf("the body echoes the token: %s", resp.body)
	}
	if scheme == "" {
		scheme = "Bearer"
	}
	chs := parseChallenges(t, resp.header.Values("WWW-Authenticate"))
	if len(chs) == 0 {
		t.Fatalf("no WWW-Authenticate")
	}
	ch := chs[0]
	want := challenge{Scheme: scheme, Params: map[string]string{"resource_metadata": gw.metadataURL()}}
	if code != "" {
		want.Params["error"] = code
	}
	got := challenge{Scheme: ch.Scheme, Params: map[string]string{"resource_metadata": ch.Params["resource_metadata"]}}
	if e, ok := ch.Params["error"]; ok {
		got.Params["error"] = e
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("challenge (-want +got):\n%s\nfull: %q", diff, resp.header.Values("WWW-Authenticate"))
	}
	if code != "" && ch.Params["error_description"] == "" {
		t.Errorf("challenge has no error_description: %q", resp.header.Values("WWW-Authenticate"))
	}
	if code == "insufficient_scope" && ch.Params["scope"] == "" {
		t.Errorf("insufficient_scope without scope: %q", resp.header.Values("WWW-Authenticate"))
	}
}
