package refgw_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// audit-record-fields: one record per decision, with the fields auditors
// expect, and never a token or proof.
func TestAudit(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, withExchange(f), withDPoP, func(c *refgw.Config) { c.AllowedActors = []string{gatewayID} })

	good := f.claims(gw)
	good["act"] = map[string]any{"sub": gatewayID, "act": map[string]any{"sub": agentID}}
	good["ctx"] = map[string]any{"instance": "agent-7f3c"}
	goodTok := f.mint(good)
	noScope := f.claims(gw)
	noScope["scope"] = "openid"
	noScopeTok := f.mint(noScope)
	badSig := flipSignatureBit(f.mint(f.claims(gw)))
	key := newDPoPKey(t)
	bound := f.claims(gw)
	bound["cnf"] = map[string]any{"jkt": key.jkt}
	boundTok := f.mint(bound)
	proof := key.proof(t, proofSpec{method: http.MethodGet, htu: gw.url + "/api/tickets", token: boundTok, iat: f.clock.Now()})

	gw.do(t, nil, gw.get(t, "/api/tickets", goodTok))
	gw.do(t, nil, gw.get(t, "/api/tickets", noScopeTok))
	gw.do(t, nil, gw.get(t, "/api/tickets", badSig))
	gw.do(t, nil, gw.get(t, "/api/tickets", ""))
	gw.do(t, nil, dpopRequest(t, gw, "DPoP", boundTok, proof))
	gw.do(t, nil, gw.get(t, "/api/tickets?access_token="+goodTok, ""))
	gw.do(t, nil, gw.get(t, "/.well-known/oauth-protected-resource", "")) // not a decision

	recs, raw := readAudit(t, gw.auditPath)
	for _, secret := range []string{goodTok, noScopeTok, badSig, boundTok, proof, "upstream-token-1", gatewaySecr} {
		if contains(raw, secret) {
			t.Errorf("the audit log holds a secret: %.20s…", secret)
		}
	}
	iss, aud := f.issuer, []string{gw.url}
	scopes := []string{"openid", scopeRead}
	required := []string{scopeRead}
	want := []refgw.AuditRecord{
		{Iss: iss, Sub: userAlice, Agent: agentID, Act: gatewayID, ActChain: []string{gatewayID, agentID}, Aud: aud, JTI: good["jti"].(string), Instance: "agent-7f3c",
			ScopesPresented: scopes, ScopesRequired: required, Decision: "allow", Reason: "authorized", Method: "GET", Path: "/api/tickets",
			Scheme: "Bearer", TokenVerified: true, UpstreamToken: "exchanged"},
		{Iss: iss, Sub: userAlice, Agent: agentID, Aud: aud, JTI: noScope["jti"].(string),
			ScopesPresented: []string{"openid"}, ScopesRequired: required, Decision: "deny", Reason: "insufficient scope: this call needs tickets:read", Status: 403,
			Method: "GET", Path: "/api/tickets", Scheme: "Bearer", TokenVerified: true},
		{Iss: iss, Sub: userAlice, Agent: agentID, Aud: aud,
			ScopesPresented: scopes, ScopesRequired: []string{}, Decision: "deny", Reason: "signature does not verify", Status: 401,
			Method: "GET", Path: "/api/tickets", Scheme: "Bearer", TokenVerified: false},
		{Aud: []string{}, ScopesPresented: []string{}, ScopesRequired: []string{}, Decision: "deny", Reason: "no access token", Status: 401,
			Method: "GET", Path: "/api/tickets"},
		{Iss: iss, Sub: userAlice, Agent: agentID, Aud: aud, JTI: bound["jti"].(string),
			ScopesPresented: scopes, ScopesRequired: required, Decision: "allow", Reason: "authorized", Method: "GET", Path: "/api/tickets",
			Scheme: "DPoP", TokenVerified: true, UpstreamToken: "exchanged"},
		{Aud: []string{}, ScopesPresented: []string{}, ScopesRequired: []string{}, Decision: "deny",
			Reason: "access token in the query string: tokens are accepted in the Authorization header only", Status: 400,
			Method: "GET", Path: "/api/tickets"},
	}
	// The unverified record keeps the claims as presented but no jti
	// check: the badSig token has a random jti.
	opts := []cmp.Option{
		cmpopts.IgnoreFields(refgw.AuditRecord{}, "Time", "Source"),
		cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "JTI" }, cmp.Ignore()),
	}
	if diff := cmp.Diff(want, recs, opts...); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
	for i, r := range recs {
		if !r.Time.Equal(f.clock.Now()) || !strings.HasPrefix(r.Source, "127.0.0.1:") {
			t.Errorf("record %d: time %v source %q", i, r.Time, r.Source)
		}
		if i != 2 && i != 3 && i != 5 && r.JTI == "" {
			t.Errorf("record %d has no jti", i)
		}
	}
	// Every line has every canonical field, even when empty.
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		for _, k := range []string{"time", "iss", "sub", "agent", "act", "aud", "jti", "scopes_presented", "scopes_required", "decision", "reason"} {
			if _, ok := m[k]; !ok {
				t.Errorf("audit line lacks %q: %s", k, line)
			}
		}
	}
}

func TestNoAuditFlaw(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway([]string{refgw.FlawNoAudit})
	gw.do(t, nil, gw.get(t, "/api/tickets", f.mint(f.claims(gw))))
	gw.do(t, nil, gw.get(t, "/api/tickets", ""))
	if recs, _ := readAudit(t, gw.auditPath); len(recs) != 0 {
		t.Errorf("%d audit records with %s", len(recs), refgw.FlawNoAudit)
	}
}

// rs-baseline-control: the exact challenges, and the metadata they point at.
func TestChallenges(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil)
	md := gw.metadataURL()
	noScope := f.claims(gw)
	noScope["scope"] = "openid"
	for _, tc := range []struct {
		name   string
		tok    string
		status int
		want   []string
	}{
		{"no token", "", 401, []string{`Bearer resource_metadata="` + md + `"`}},
		{"bad token", flipSignatureBit(f.mint(f.claims(gw))), 401,
			[]string{`Bearer error="invalid_token", error_description="signature does not verify", resource_metadata="` + md + `"`}},
		{"insufficient scope", f.mint(noScope), 403,
			[]string{`Bearer error="insufficient_scope", error_description="insufficient scope: this call needs tickets:read", scope="tickets:read", resource_metadata="` + md + `"`}},
	} {
		resp := gw.do(t, nil, gw.get(t, "/api/tickets", tc.tok))
		if resp.status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.status, tc.status)
		}
		if diff := cmp.Diff(tc.want, resp.header.Values("WWW-Authenticate")); diff != "" {
			t.Errorf("%s: WWW-Authenticate (-want +got):\n%s", tc.name, diff)
		}
		if tc.tok != "" && strings.Contains(resp.body, tc.tok) {
			t.Errorf("%s: body echoes the token", tc.name)
		}
		if strings.Contains(resp.body, "goroutine") || strings.Contains(resp.body, ".go:") {
			t.Errorf("%s: body looks like a stack trace: %s", tc.name, resp.body)
		}
	}

	// With DPoP both schemes are offered to a request without a token.
	gwd := f.newGateway(nil, withDPoP)
	resp := gwd.do(t, nil, gwd.get(t, "/api/tickets", ""))
	want := []string{
		`Bearer resource_metadata="` + gwd.metadataURL() + `"`,
		`DPoP algs="ES256 ES384 RS256 PS256 EdDSA", resource_metadata="` + gwd.metadataURL() + `"`,
	}
	if diff := cmp.Diff(want, resp.header.Values("WWW-Authenticate")); diff != "" {
		t.Errorf("DPoP gateway, no token (-want +got):\n%s", diff)
	}

	// no-resource-metadata: the flaw drops the pointer to the metadata.
	gwf := f.newGateway([]string{refgw.FlawNoResourceMetadata})
	resp = gwf.do(t, nil, gwf.get(t, "/api/tickets", ""))
	if diff := cmp.Diff([]string{"Bearer"}, resp.header.Values("WWW-Authenticate")); diff != "" {
		t.Errorf("with %s (-want +got):\n%s", refgw.FlawNoResourceMetadata, diff)
	}
}

func TestResourceMetadata(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, withDPoP, func(c *refgw.Config) { c.Resource = c.Audience + "/mcp" })
	want := map[string]any{
		"resource":                          gw.url + "/mcp",
		"authorization_servers":             []any{f.issuer},
		"scopes_supported":                  []any{scopeRead, scopeWrite},
		"bearer_methods_supported":          []any{"header"},
		"resource_name":                     "agentsso reference gateway",
		"dpop_signing_alg_values_supported": []any{"ES256", "ES384", "RS256", "PS256", "EdDSA"},
		"dpop_bound_access_tokens_required": false,
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp := gw.do(t, nil, gw.get(t, path, ""))
		var got map[string]any
		if err := json.Unmarshal([]byte(resp.body), &got); err != nil || resp.status != http.StatusOK {
			t.Fatalf("%s: status %d body %s", path, resp.status, resp.body)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
	if resp := gw.do(t, nil, gw.get(t, "/.well-known/oauth-protected-resource/other", "")); resp.status != http.StatusNotFound {
		t.Errorf("metadata of another resource: status %d", resp.status)
	}
	// The challenge points at the path-specific metadata.
	resp := gw.do(t, nil, gw.get(t, "/mcp", ""))
	ch := parseChallenges(t, resp.header.Values("WWW-Authenticate"))[0]
	if got, want := ch.Params["resource_metadata"], gw.url+"/.well-known/oauth-protected-resource/mcp"; got != want {
		t.Errorf("resource_metadata %q, want %q", got, want)
	}
}

// jwt-key-rotation: refetch on an unknown kid (at most every 5 s), drop
// removed keys, and handle a missing kid.
func TestKeyRotation(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, func(c *refgw.Config) { c.JWKSRefresh = time.Minute })
	status := func(k signingKey, opts ...mintOpt) int {
		return gw.do(t, nil, gw.get(t, "/api/tickets", f.mint(f.claims(gw), append([]mintOpt{withKey(k)}, opts...)...))).status
	}
	fetches := func() int { n, _, _ := f.counters(); return n }

	k1, k2 := f.ec, newECKey(t, "ec-2")
	f.publish(k1.publicJWK())
	if s := status(k1); s != 200 || fetches() != 1 {
		t.Fatalf("k1: status %d after %d fetches", s, fetches())
	}
	// The IdP adds k2; its first token causes one refetch.
	f.publish(k1.publicJWK(), k2.publicJWK())
	f.clock.Add(6 * time.Second)
	if s := status(k2); s != 200 || fetches() != 2 {
		t.Fatalf("k2: status %d after %d fetches", s, fetches())
	}
	// Unknown kids right after: no refetch storm.
	unknown := signingKey{kid: "unknown", alg: jose.ES256, priv: f.attacker.priv}
	for i := 0; i < 5; i++ {
		if s := status(unknown); s != 401 {
			t.Fatalf("unknown kid: status %d", s)
		}
	}
	if fetches() != 2 {
		t.Errorf("%d fetches after unknown kids within 5 s, want 2", fetches())
	}
	f.clock.Add(6 * time.Second)
	status(unknown)
	if fetches() != 3 {
		t.Errorf("%d fetches after 5 s, want 3", fetches())
	}
	// No kid, several keys: each is tried.
	if s := status(k2, withoutKID()); s != 200 {
		t.Errorf("no kid, two keys: status %d", s)
	}
	// The IdP removes k1: once the keys are refreshed, k1 is refused.
	f.publish(k2.publicJWK())
	f.clock.Add(61 * time.Second)
	if s := status(k1); s != 401 {
		t.Errorf("removed k1: status %d, want 401", s)
	}
	// No kid, one key.
	if s := status(k2, withoutKID()); s != 200 {
		t.Errorf("no kid, one key: status %d", s)
	}
	// A key published for one alg is not used with another.
	rs := f.rsa.publicJWK()
	rs.Algorithm = "PS256"
	f.publish(rs)
	f.clock.Add(61 * time.Second)
	if s := status(f.rsa); s != 401 {
		t.Errorf("RS256 token, key published for PS256: status %d, want 401", s)
	}
}

// The rotation flaws: a pinned key set never learns the new key; a
// merging one never forgets the withdrawn key.
func TestKeyRotationFlaws(t *testing.T) {
	for _, tc := range []struct {
		flaws             []string
		newKey, removedOK bool // accepted after the rotation
	}{
		{nil, true, false},
		{[]string{refgw.FlawNoKeyRefetch}, false, true},
		{[]string{refgw.FlawKeepRemovedKeys}, true, true},
	} {
		f := newFixture(t)
		gw := f.newGateway(tc.flaws, func(c *refgw.Config) { c.JWKSRefresh = time.Minute })
		status := func(k signingKey) int {
			return gw.do(t, nil, gw.get(t, "/api/tickets", f.mint(f.claims(gw), withKey(k)))).status
		}
		k1, k2 := f.ec, newECKey(t, "ec-2")
		f.publish(k1.publicJWK())
		if s := status(k1); s != 200 {
			t.Fatalf("%v: k1 before the rotation: %d", tc.flaws, s)
		}
		// Rotation: k2 replaces k1.
		f.publish(k2.publicJWK())
		f.clock.Add(61 * time.Second)
		if got := status(k2) == 200; got != tc.newKey {
			t.Errorf("%v: new key accepted = %v, want %v", tc.flaws, got, tc.newKey)
		}
		f.clock.Add(61 * time.Second)
		if got := status(k1) == 200; got != tc.removedOK {
			t.Errorf("%v: withdrawn key accepted = %v, want %v", tc.flaws, got, tc.removedOK)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	valid := func() refgw.Config {
		return refgw.Config{Issuer: "https://idp.example.test/t/a", JWKSURL: "https://idp.example.test/t/a/jwks", Audience: "https://gw.example.test", Upstream: "http://127.0.0.1:9"}
	}
	for _, tc := range []struct {
		name   string
		edit   func(c *refgw.Config)
		fields []string
	}{
		{"valid", func(*refgw.Config) {}, nil},
		{"empty", func(c *refgw.Config) { *c = refgw.Config{} }, []string{"Audience", "Issuer", "JWKSURL", "Upstream"}},
		{"relative JWKS URL", func(c *refgw.Config) { c.JWKSURL = "/jwks" }, []string{"JWKSURL"}},
		{"bad tool name and scope", func(c *refgw.Config) { c.ToolScopes = map[string]string{"bad tool": "a b"} }, []string{"ToolScopes", "ToolScopes"}},
		{"bad default scope", func(c *refgw.Config) { c.DefaultScope = `a"b` }, []string{"DefaultScope"}},
		{"introspection without URL and client", func(c *refgw.Config) { c.Introspection = &refgw.IntrospectionConfig{} }, []string{"Introspection.ClientID", "Introspection.URL"}},
		{"exchange without audience", func(c *refgw.Config) {
			c.Exchange = &refgw.ExchangeConfig{TokenURL: "https://idp.example.test/token", ClientID: "gw"}
		}, []string{"Exchange.Audience"}},
		{"negative leeway", func(c *refgw.Config) { c.Leeway = -time.Second }, []string{"Leeway"}},
		{"unknown flaw", func(c *refgw.Config) { c.Flaws = refgw.Flaws{"skip-everything": true} }, []string{"Flaws"}},
		{"empty allowed actor", func(c *refgw.Config) { c.AllowedActors = []string{""} }, []string{"AllowedActors"}},
		{"audit path in a missing directory", func(c *refgw.Config) { c.AuditPath = t.TempDir() + "/no/such/dir/audit.jsonl" }, []string{"AuditPath"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			g, err := refgw.New(c)
			if g != nil {
				defer g.Close()
			}
			var fields []string
			var joined interface{ Unwrap() []error }
			errs := []error{err}
			if errors.As(err, &joined) {
				errs = joined.Unwrap()
			}
			for _, e := range errs {
				var ce *refgw.ConfigError
				if errors.As(e, &ce) {
					fields = append(fields, ce.Field)
				} else if e != nil {
					t.Errorf("error %v is not a *ConfigError", e)
				}
			}
			sort.Strings(fields)
			if diff := cmp.Diff(tc.fields, fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// Every flaw in the catalogue is exercised as a negative control by some
// test, and the catalogue is well formed.
func TestFlawCatalog(t *testing.T) {
	covered := map[string]bool{
		// Covered by dedicated tests rather than the tables.
		refgw.FlawSkipContext:           true, // TestContextBinding (and the table)
		refgw.FlawUnboundSession:        true, // TestMCPSessionBinding
		refgw.FlawPassthrough:           true, // TestUpstreamToken
		refgw.FlawNoAudit:               true, // TestNoAuditFlaw
		refgw.FlawNoResourceMetadata:    true, // TestChallenges
		refgw.FlawIntrospectionFailOpen: true, // TestIntrospection
		refgw.FlawSkipIntrospection:     true, // TestIntrospection
		refgw.FlawNoKeyRefetch:          true, // TestKeyRotationFlaws
		refgw.FlawKeepRemovedKeys:       true, // TestKeyRotationFlaws
		refgw.FlawMTLSBindingUnchecked:  true, // TestMTLSBinding
		refgw.FlawMTLSTrustsCertHeader:  true, // TestMTLSBinding
		refgw.FlawTrustsForwardedFor:    true, // TestMTLSBinding
		refgw.FlawNoSizeLimit:           true, // TestOversizeTokens
		refgw.FlawIdentityBySubOnly:     true, // TestSessionIdentity
		refgw.FlawIdentityByEmail:       true, // TestSessionIdentity
	}
	for _, a := range tokenAttacks() {
		covered[a.flaw] = true
	}
	for _, c := range dpopCases() {
		covered[c.flaw] = true
	}
	delete(covered, "")
	seen := map[string]bool{}
	for _, fl := range refgw.FlawCatalog {
		if seen[fl.Name] {
			t.Errorf("flaw %q listed twice", fl.Name)
		}
		seen[fl.Name] = true
		if fl.Description == "" || len(fl.Scenarios) == 0 {
			t.Errorf("flaw %q lacks a description or scenarios", fl.Name)
		}
		if !covered[fl.Name] {
			t.Errorf("flaw %q has no negative-control test", fl.Name)
		}
		if _, err := refgw.ParseFlaws(fl.Name); err != nil {
			t.Errorf("ParseFlaws(%q): %v", fl.Name, err)
		}
	}
	for name := range covered {
		if !seen[name] {
			t.Errorf("tests use flaw %q, which is not in the catalogue", name)
		}
	}
	if _, err := refgw.ParseFlaws("skip-everything"); err == nil {
		t.Errorf("ParseFlaws accepted an unknown name")
	}
	fl, _ := refgw.ParseFlaws(refgw.FlawSkipTyp, " ", refgw.FlawAcceptAlgNone)
	if got := fl.String(); got != "accept-alg-none,skip-typ" {
		t.Errorf("Flaws.String() = %q", got)
	}
}
