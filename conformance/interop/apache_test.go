// Package interop_test runs the conformance catalogue against real
// gateways that nobody here wrote, installed from Debian's packages, and
// asserts what they actually do. The reference gateway only proves that
// the harness agrees with itself; these tests pin down what it says about
// software it was not written with.
//
// Apache httpd is the gateway: a reverse proxy (mod_proxy_http) to the
// harness's fake upstream, with mod_oauth2 or mod_auth_openidc validating
// the emulator's JWT access tokens against its JWKS over HTTPS, or
// mod_oauth2 introspecting them. How to do the same by hand, and the
// observed results, are in docs/REAL-GATEWAYS.md.
package interop_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/emulator/emulatortest"
	"github.com/agentsso/agentsso/scenarios"

	"github.com/agentsso/agentsso/internal/parts"
)

// modulesDir is where Debian installs Apache's modules.
const modulesDir = "/usr/lib/apache2/modules"

// packages are what the tests need, for the skip message.
const packages = "apache2 libapache2-mod-oauth2 libapache2-mod-auth-openidc"

// expectation is what one scenario did against one module, as observed.
type expectation struct {
	status conformance.Status
	// bad are the steps whose verdict was not "ok", by evidence step name.
	bad []string
}

// module is one Apache token validator and what it was seen to do.
type module struct {
	name string // mod_oauth2, as in the template
	pkg  string // its Debian package
	so   string // its module file
	id   string // its LoadModule identifier
	// introspect makes mod_oauth2 introspect tokens at the emulator
	// (RFC 7662) instead of verifying them against the JWKS; the target
	// then declares the introspection feature.
	introspect bool
	// observed is the Debian package version the expectations were
	// observed with.
	observed string
	expect   map[string]expectation
	// skewStatus is the status answered to a token that expired 30 s ago
	// (jwt-temporal's recorded skew probe).
	skewStatus float64
}

// ids are the scenarios run against each configuration: every scenario
// of the catalogue that applies to a gateway, the first wave included.
// Those that need a feature a configuration does not declare (DPoP,
// context binding, the RFC 9068 profile, an audit sink, …) run too and
// must be skipped. A scenario added to the catalogue is logged until its
// observed outcome is recorded here.
var ids = []string{
	"rs-baseline-control",
	"jwt-alg-none",
	"jwt-alg-confusion-hs256",
	"jwt-bad-signature",
	"jwt-temporal",
	"tenant-issuer-confusion",
	"aud-wrong-resource",
	"scope-insufficient",
	"revoked-token-rejected",
	"context-binding-replay",
	"dpop-bound-as-bearer",
	"token-passthrough",
	"audit-record-fields",
	"iss-mismatch",
	"aud-malformed",
	"token-kind-confusion",
	"dpop-proof-checks",
	"jwt-header-key-injection",
	"jwt-key-rotation",
	"jwt-structure-confusion",
	"scope-overbroad-or-foreign",
	"long-lived-token-policy",
	"bearer-hygiene",
	"act-current-actor",
	"introspection-checks",
	"state-handle-hijack",
}

func TestApacheModOAuth2(t *testing.T) { runApache(t, modOAuth2) }

func TestApacheModOAuth2Introspection(t *testing.T) { runApache(t, modOAuth2Introspection) }

func TestApacheModAuthOpenIDC(t *testing.T) { runApache(t, modAuthOpenIDC) }

// requirePart skips when a real part is missing, naming the packages to
// install; AGENTSSO_TEST_STRICT=1 (CI) makes that a failure.
func requirePart(t *testing.T, what string, ok bool) {
	t.Helper()
	parts.Require(t, what, "apt-get install -y --no-install-recommends "+packages, ok)
}

func apacheBinary() string {
	if p, err := exec.LookPath("apache2"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/apache2"); err == nil {
		return "/usr/sbin/apache2"
	}
	return ""
}

// loadModule is one LoadModule line.
type loadModule struct{ Name, Path string }

// confData fills testdata/httpd.conf.tmpl.
type confData struct {
	Module      string
	Dir         string
	Listen      string
	LogLevel    string
	User, Group string
	Modules     []loadModule
	Path        string // the protected location, /api/
	JWKSURL     string
	Issuer      string
	Audience    string
	Scope       string
	CAFile      string
	UpstreamURL string
	// Introspect, with the introspection endpoint and the client the
	// emulator lets introspect (mcp-gateway in the embedded default).
	Introspect             bool
	IntrospectURL          string
	ClientID, ClientSecret string
}

func runApache(t *testing.T, m module) {
	bin := apacheBinary()
	requirePart(t, "apache2", bin != "")
	base := []loadModule{
		{"mpm_event_module", "mod_mpm_event.so"},
		{"authn_core_module", "mod_authn_core.so"},
		{"authz_core_module", "mod_authz_core.so"},
		{"headers_module", "mod_headers.so"},
		{"proxy_module", "mod_proxy.so"},
		{"proxy_http_module", "mod_proxy_http.so"},
		{m.id, m.so},
	}
	for i, lm := range base {
		base[i].Path = filepath.Join(modulesDir, lm.Path)
		_, err := os.Stat(base[i].Path)
		what := "apache2"
		if lm.Name == m.id {
			what = m.pkg
		}
		requirePart(t, what+" ("+base[i].Path+")", err == nil)
	}
	if v := debVersion(m.pkg); v != "" && v != m.observed {
		t.Logf("%s is %s here; the expectations were observed with %s", m.pkg, v, m.observed)
	}

	env, caFile := emulatortest.NewTLS(t, nil)
	const tenant, scope = "acme", "zendesk:tickets:read"
	issuer := env.Issuer(tenant)

	// Apache's directory must be readable by the account its worker
	// drops to when the test runs as root; t.TempDir's parents are not.
	dir, err := os.MkdirTemp("", "agentsso-apache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}

	listen, upstream := freeAddr(t), freeAddr(t)
	name := "Apache httpd " + m.name
	if m.introspect {
		name += " (introspection)"
	}
	target := &conformance.Target{
		Name:     name,
		Kind:     "gateway",
		URL:      "http://" + listen + "/api/tickets",
		Protocol: "http",
		Tenant:   tenant,
		Scope:    scope,
		Upstream: upstream,
	}
	if m.introspect {
		target.Features = []string{"introspection"}
	}
	if err := target.Validate(); err != nil {
		t.Fatal(err)
	}
	d := confData{
		Module: m.name, Dir: dir, Listen: listen, LogLevel: "warn", Modules: base, Path: "/api/",
		JWKSURL: issuer + "/jwks", Issuer: issuer, Audience: target.Audience, Scope: scope,
		CAFile: filepath.Join(dir, "ca.pem"), UpstreamURL: "http://" + upstream + "/api/",
		Introspect: m.introspect, IntrospectURL: issuer + "/introspect", ClientID: "mcp-gateway", ClientSecret: "mcp-gateway-secret",
	}
	if os.Geteuid() == 0 {
		d.User, d.Group = "www-data", "www-data"
		if _, err := user.Lookup("www-data"); err != nil {
			d.User, d.Group = "nobody", "nogroup"
		}
	}
	startApache(t, bin, d)

	cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range cs.Scenarios {
		if slices.Contains(sc.Kinds, "gateway") && !slices.Contains(ids, sc.ID) {
			t.Logf("%s is not run: record what Apache does with it in ids and the expectations", sc.ID)
		}
	}
	r := &conformance.Runner{
		IdP:       &conformance.IdP{URL: env.URL, AdminURL: env.AdminURL},
		Target:    target,
		Catalogue: cs,
		Opts:      conformance.Options{Only: ids, Version: "test", PollBound: 3 * time.Second, RequestTimeout: 5 * time.Second},
	}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	var table strings.Builder
	got := map[string]*conformance.Result{}
	for i := range rep.Results {
		res := &rep.Results[i]
		got[res.ID] = res
		fmt.Fprintf(&table, "\t%-26s %-5s %s", res.ID, res.Status, res.Reason)
		if len(res.Figures) > 0 {
			fmt.Fprintf(&table, " %v", res.Figures)
		}
		table.WriteByte('\n')
	}
	t.Logf("%s against the emulator at %s:\n%s", target.Name, env.URL, table.String())
	for _, id := range ids {
		res, want := got[id], m.expect[id]
		if res == nil {
			t.Errorf("%s did not run: was it renamed or removed from the catalogue?", id)
			continue
		}
		if want.status == "" {
			t.Errorf("%s: %s (%s): no expectation recorded for %s", id, res.Status, res.Reason, m.name)
			continue
		}
		bad := badSteps(res)
		if res.Status != want.status || !slices.Equal(bad, want.bad) {
			t.Errorf("%s: %s, steps not ok %q; observed with %s %s: %s, steps not ok %q\n\treason: %s",
				id, res.Status, bad, m.pkg, m.observed, want.status, want.bad, res.Reason)
			for _, e := range res.Evidence {
				if e.Verdict != "ok" {
					t.Logf("\t%s: %s; expected %s; got %+v; %s", e.Step, e.Verdict, e.Expected, e.Response, e.Note)
				}
			}
		}
	}
	if res := got["jwt-temporal"]; res != nil {
		if s := res.Figures["skew_probe_status"]; s != m.skewStatus {
			t.Errorf("jwt-temporal: a token expired 30 s ago was answered %v; observed %v", s, m.skewStatus)
		}
	}
	if t.Failed() {
		var lit strings.Builder
		for _, id := range ids {
			if res := got[id]; res != nil {
				fmt.Fprintf(&lit, "\t%q: {conformance.Status%s, %#v},\n", id, strings.ToUpper(string(res.Status[:1]))+string(res.Status[1:]), badSteps(res))
			}
		}
		t.Logf("observed now, as a table for %s.expect:\n%s", m.name, lit.String())
		logTail(t, filepath.Join(dir, "error.log"))
	}
}

// badSteps lists the evidence steps whose verdict was not ok.
func badSteps(res *conformance.Result) []string {
	var out []string
	for _, e := range res.Evidence {
		if e.Verdict != "ok" {
			out = append(out, e.Step)
		}
	}
	return out
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startApache writes httpd.conf and runs Apache in the foreground as one
// process (-X), stopped by its PID when the test ends.
func startApache(t *testing.T, bin string, d confData) {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "httpd.conf.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var conf bytes.Buffer
	if err := tmpl.Execute(&conf, d); err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(d.Dir, "httpd.conf")
	if err := os.WriteFile(confFile, conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-X", "-d", d.Dir, "-f", confFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "LANG=C")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			logTail(t, filepath.Join(d.Dir, "error.log"))
			t.Fatalf("apache2 exited at start (%v): %s\n%s", err, out.String(), conf.String())
		default:
		}
		c, err := net.DialTimeout("tcp", d.Listen, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			logTail(t, filepath.Join(d.Dir, "error.log"))
			t.Fatalf("apache2 does not listen on %s after 15s: %v", d.Listen, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func logTail(t *testing.T, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Log(err)
		}
		return
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	t.Logf("%s:\n%s", file, b)
}

// debVersion is an installed Debian package's version, or "".
func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Step names, as the evidence names them.
const (
	noToken     = "call with no token at all"
	passthrough = "a valid call; inspect what the upstream received"
	badTokenMsg = "a bad token; the error body must not repeat it"
	withdrawn   = "a token signed by the withdrawn key"
)

func mutated(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "call with token: " + n
	}
	return out
}

// common is what every configuration does alike: Apache's challenges,
// scope handling and proxying, whatever validates the token.
var common = map[string]expectation{
	// The 401 without a token says Bearer error="invalid_request" and has
	// no resource_metadata: neither module serves RFC 9728 metadata. The
	// valid token reaches the upstream, so the baseline holds.
	"rs-baseline-control": {conformance.StatusWarn, []string{noToken}},
	// Rejected (401), but aud is checked by a Require, and a failed Require
	// answers with the module's insufficient_scope challenge (set from its
	// environment variable by mod_headers), not invalid_token.
	"aud-wrong-resource": {conformance.StatusWarn, mutated("aud-sibling", "aud-upstream")},
	"aud-malformed":      {conformance.StatusWarn, mutated("aud-missing", "aud-empty-array", "aud-empty-string", "aud-prefix", "aud-truncated")},
	// Refused, but with 401: Apache answers a failed Require for an
	// authenticated user with 401 (403 only with AuthzSendForbiddenOnFailure,
	// which would turn the audience and issuer refusals into 403 too).
	"scope-insufficient": {conformance.StatusWarn, mutated("scope-other", "scope-none")},
	// mod_proxy_http forwards the Authorization header: the upstream gets
	// the caller's own token. Neither module exchanges tokens.
	"token-passthrough": {conformance.StatusFail, []string{passthrough}},
	// The query token is ignored (treated as no token: 401
	// invalid_request, which the scenario accepts); the bad token's 401
	// carries the insufficient_scope challenge (its aud is a Require). No
	// token is echoed.
	"bearer-hygiene": {conformance.StatusWarn, []string{badTokenMsg}},
	// No lifetime policy: a 24-hour token is accepted.
	"long-lived-token-policy": {conformance.StatusWarn, mutated("lifetime-24h")},
	// Not declared by this configuration, so skipped.
	"context-binding-replay": {conformance.StatusSkip, nil},
	"dpop-bound-as-bearer":   {conformance.StatusSkip, nil},
	"dpop-proof-checks":      {conformance.StatusSkip, nil},
	"audit-record-fields":    {conformance.StatusSkip, nil},
	"token-kind-confusion":   {conformance.StatusSkip, nil}, // no typ check: rfc9068 not declared
	"act-current-actor":      {conformance.StatusSkip, nil},
	"state-handle-hijack":    {conformance.StatusSkip, nil}, // not an MCP target
	// Refused by signature verification (cjose), every variant.
	"jwt-alg-none":             {conformance.StatusPass, nil},
	"jwt-alg-confusion-hs256":  {conformance.StatusPass, nil},
	"jwt-bad-signature":        {conformance.StatusPass, nil},
	"jwt-header-key-injection": {conformance.StatusPass, nil}, // no jku/x5u fetch either
	"tenant-issuer-confusion":  {conformance.StatusPass, nil},
}

// with is common with some entries replaced.
func with(over map[string]expectation) map[string]expectation {
	out := map[string]expectation{}
	for k, v := range common {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// JWT validation against the JWKS (verify.exp and verify.iat required).
var modOAuth2 = module{
	name: "mod_oauth2", pkg: "libapache2-mod-oauth2", so: "mod_oauth2.so", id: "oauth2_module",
	observed: "3.3.1-1",
	expect: with(map[string]expectation{
		// nbf is never checked: a token valid only from 10 minutes on is
		// accepted now. exp (required here; by default a token without exp
		// passes) and iat (10 s of slack) are.
		"jwt-temporal": {conformance.StatusFail, mutated("nbf-future")},
		// The issuer is a Require, so the refusal carries insufficient_scope.
		"iss-mismatch": {conformance.StatusWarn, mutated("iss-foreign", "iss-trailing-slash", "iss-case")},
		// An unknown kid makes it refetch the JWKS, so the new key works;
		// the withdrawn key stays trusted as long as the cached JWKS
		// (jwks_uri.expiry, 24 hours by default).
		"jwt-key-rotation": {conformance.StatusWarn, []string{withdrawn}},
		// cjose does not enforce crit: a token with an unknown critical
		// header is accepted. JWE and JSON-serialized tokens are refused.
		"jwt-structure-confusion": {conformance.StatusFail, mutated("crit-unknown")},
		// "scope:X" compares the whole scope string, so "*", "all" and a
		// superstring are refused (with 401); a scope array holding X
		// matches, as any array element does.
		"scope-overbroad-or-foreign": {conformance.StatusWarn, mutated("scope:*", "scope:all", "scope-superstring", "scope-array")},
		"revoked-token-rejected":     {conformance.StatusSkip, nil}, // no introspection
		"introspection-checks":       {conformance.StatusSkip, nil},
	}),
	skewStatus: 401, // no leeway on exp
}

// RFC 7662 introspection at the emulator, without a result cache.
var modOAuth2Introspection = module{
	name: "mod_oauth2", pkg: "libapache2-mod-oauth2", so: "mod_oauth2.so", id: "oauth2_module",
	introspect: true,
	observed:   "3.3.1-1",
	expect: with(map[string]expectation{
		// The emulator answers active:false for every bad signature, time,
		// issuer, withdrawn key and structure: those checks are the IdP's,
		// and Apache refuses with invalid_token.
		"jwt-temporal":            {conformance.StatusPass, nil},
		"iss-mismatch":            {conformance.StatusPass, nil},
		"jwt-key-rotation":        {conformance.StatusPass, nil},
		"jwt-structure-confusion": {conformance.StatusPass, nil},
		// A scope array is not turned into an active token's scope string,
		// so only the three string variants reach the Require (and 401).
		"scope-overbroad-or-foreign": {conformance.StatusWarn, mutated("scope:*", "scope:all", "scope-superstring")},
		// Every request introspects (expiry=0): the revoked token is refused
		// on the next call, and an introspection error or outage fails closed.
		"revoked-token-rejected": {conformance.StatusPass, nil},
		"introspection-checks":   {conformance.StatusPass, nil},
	}),
	skewStatus: 401,
}

// JWT validation against the JWKS (AuthType oauth20, OIDCOAuthVerifyJwksUri).
var modAuthOpenIDC = module{
	name: "mod_auth_openidc", pkg: "libapache2-mod-auth-openidc", so: "mod_auth_openidc.so", id: "auth_openidc_module",
	observed: "2.4.12.3-2+deb12u5",
	expect: with(map[string]expectation{
		// Only exp is checked, and only when present: a token without exp,
		// one with nbf 10 minutes ahead and one issued 10 minutes in the
		// future are all accepted, and no directive changes that for a JWT
		// access token (OIDCOAuthTokenExpiryClaim and OIDCIDTokenIatSlack
		// do not apply).
		"jwt-temporal": {conformance.StatusFail, mutated("exp-missing", "nbf-future", "iat-future")},
		"iss-mismatch": {conformance.StatusWarn, mutated("iss-foreign", "iss-trailing-slash", "iss-case")},
		// An unknown kid forces a JWKS refresh; the withdrawn key stays
		// trusted as long as the cached JWKS (OIDCJWKSRefreshInterval, 1 hour).
		"jwt-key-rotation":           {conformance.StatusWarn, []string{withdrawn}},
		"jwt-structure-confusion":    {conformance.StatusFail, mutated("crit-unknown")},
		"scope-overbroad-or-foreign": {conformance.StatusWarn, mutated("scope:*", "scope:all", "scope-superstring", "scope-array")},
		"revoked-token-rejected":     {conformance.StatusSkip, nil},
		"introspection-checks":       {conformance.StatusSkip, nil},
	}),
	skewStatus: 401,
}
