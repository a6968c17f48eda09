package agentssotc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"

	agentssotc "github.com/agentsso/agentsso/ci/testcontainers"
	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/report"
	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/scenarios"
)

// The tests need Docker and the agentsso image. AGENTSSO_IMAGE names an
// image that exists (ci/scripts/docker-setup.sh builds agentsso:ci and
// exports it); without it the tests build the repository's Dockerfile as
// agentsso:testcontainers, with the build arguments in AGENTSSO_BUILD_ARGS
// ("K=V K=V", for example GO_IMAGE=... on a machine without a registry).

func TestMain(m *testing.M) {
	// Every test terminates its containers itself, and Ryuk's image may
	// not be pullable (no registry): keep it off unless asked for.
	if _, ok := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !ok {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	os.Exit(m.Run())
}

// requirePart skips when a real part is missing, naming what to install;
// AGENTSSO_TEST_STRICT=1 (CI) makes that a failure. (The convention of
// cmd/agentsso's tests.)
func requirePart(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("needs %s: %v", what, err)
	if os.Getenv("AGENTSSO_TEST_STRICT") == "1" {
		t.Fatal(msg + "; AGENTSSO_TEST_STRICT=1 makes this a failure")
	}
	t.Skip(msg)
}

const dockerParts = "Docker (apt-get install -y docker.io, and a running dockerd)"

var (
	resolveOnce sync.Once
	dockerErr   error
	imageErr    error
	imageName   string
)

func repoRoot() string { return filepath.Join("..", "..") }

func buildArgs() map[string]string {
	args := map[string]string{}
	for _, kv := range strings.Fields(os.Getenv("AGENTSSO_BUILD_ARGS")) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			args[k] = v
		}
	}
	return args
}

func dockerUp(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker client: %v", r)
		}
	}()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Health(ctx)
}

// image returns the agentsso image to run, skipping (or failing, strict)
// without Docker or an image.
func image(t testing.TB) string {
	t.Helper()
	resolveOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		if dockerErr = dockerUp(ctx); dockerErr != nil {
			return
		}
		if imageName = os.Getenv("AGENTSSO_IMAGE"); imageName != "" {
			p, err := testcontainers.NewDockerProvider()
			if err != nil {
				imageErr = err
				return
			}
			defer p.Close()
			if _, err := p.Client().ImageInspect(ctx, imageName); err != nil {
				imageErr = fmt.Errorf("AGENTSSO_IMAGE=%s: %w", imageName, err)
			}
			return
		}
		imageName = "agentsso:testcontainers"
		if err := agentssotc.BuildImage(ctx, repoRoot(), imageName, buildArgs(), io.Discard); err != nil {
			imageErr = err
		}
	})
	requirePart(t, dockerParts, dockerErr)
	requirePart(t, "the agentsso image (docker build -t agentsso . with a registry; without one, "+
		"source ci/scripts/docker-setup.sh, which builds agentsso:ci and exports AGENTSSO_IMAGE)", imageErr)
	return imageName
}

// run starts a container for the test and terminates it at the end.
func run(t testing.TB, opts ...agentssotc.Option) *agentssotc.Container {
	t.Helper()
	img := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := agentssotc.Run(ctx, append([]agentssotc.Option{agentssotc.WithImage(img)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Terminate(context.Background()); err != nil {
			t.Errorf("terminate: %v", err)
		}
	})
	return c
}

func getJSON(t testing.TB, hc *http.Client, u string, out any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

// clientCredentials asks the tenant's token endpoint for support-bot's
// token and returns the HTTP status and the decoded answer.
func clientCredentials(t testing.TB, c *agentssotc.Container, tokenURL string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {"https://mcp.acme.test/zendesk"}}
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("support-bot", "support-bot-secret")
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func claims(t testing.TB, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestContainer is the proof: start the image, fetch discovery
// through the mapped port, get a client_credentials token, use the admin
// API (keys, clock, faults), run a small scenario suite against the
// reference gateway on the host, stop.
func TestContainer(t *testing.T) {
	c := run(t)
	ctx := context.Background()
	iss := c.IssuerURL("acme")
	if !strings.HasPrefix(iss, "http://127.0.0.1:") {
		t.Errorf("issuer %s: want the mapped port on 127.0.0.1", iss)
	}

	var disc struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
		JWKSURI       string `json:"jwks_uri"`
	}
	getJSON(t, c.HTTPClient(), iss+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != iss || disc.TokenEndpoint != iss+"/token" || disc.JWKSURI != iss+"/jwks" {
		t.Errorf("discovery through the mapped port: %+v; want issuer %s", disc, iss)
	}

	status, tok := clientCredentials(t, c, disc.TokenEndpoint)
	if status != http.StatusOK {
		t.Fatalf("client_credentials: HTTP %d %v", status, tok)
	}
	at, _ := tok["access_token"].(string)
	cl := claims(t, at)
	if cl["iss"] != iss || cl["client_id"] != "support-bot" {
		t.Errorf("token claims iss=%v client_id=%v; want %s, support-bot", cl["iss"], cl["client_id"], iss)
	}

	// Keys: the image keeps them in SoftHSM2 by default.
	keys, err := c.Admin().Keys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 || keys[0].Backend != "pkcs11" {
		t.Errorf("keys %+v: want the image's default backend pkcs11", keys)
	}

	// Clock: frozen and advanced, then back to real time.
	freeze := true
	st, err := c.Admin().SetClock(ctx, "acme", agentssotc.ClockChange{Freeze: &freeze, Advance: 11 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Frozen || st.Now.Before(time.Now().Add(10*time.Minute)) {
		t.Errorf("clock after freeze+advance 11m: %+v", st)
	}
	if _, err := c.Admin().SetClock(ctx, "acme", agentssotc.ClockChange{Reset: true}); err != nil {
		t.Fatal(err)
	}

	// Faults: one 503 at the token endpoint, then the real answer again.
	if err := c.Admin().SetFault(ctx, "acme", emulator.Fault{Endpoint: "token", Mode: "unavailable", Count: 1}); err != nil {
		t.Fatal(err)
	}
	if status, _ := clientCredentials(t, c, disc.TokenEndpoint); status != http.StatusServiceUnavailable {
		t.Errorf("with an unavailable fault: HTTP %d, want 503", status)
	}
	if status, _ := clientCredentials(t, c, disc.TokenEndpoint); status != http.StatusOK {
		t.Errorf("after the fault's one hit: HTTP %d, want 200", status)
	}

	// A small scenario suite against the reference gateway, which trusts
	// the container's issuer through the mapped port.
	gw, err := reference.Start(reference.Options{IdPURL: c.PublicURL(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	only := []string{"rs-baseline-control", "jwt-alg-none", "aud-wrong-resource"}
	runner := &conformance.Runner{IdP: c.IdP(), Target: gw.Target, Catalogue: cs,
		Opts: conformance.Options{Only: only, Version: "test", PollBound: 7 * time.Second}}
	rep, err := runner.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.WriteAll(t.ArtifactDir(), rep); err != nil {
		t.Error(err)
	}
	if len(rep.Results) != len(only) {
		t.Errorf("%d results, want %d", len(rep.Results), len(only))
	}
	for _, r := range rep.Results {
		if r.Status != conformance.StatusPass {
			t.Errorf("%s: %s: %s", r.ID, r.Status, r.Reason)
		}
	}
	if rep.Verdict != "pass" {
		t.Errorf("verdict %s: %s", rep.Verdict, rep.VerdictReason)
	}
}

// TestKeyBackends serves with the keys in memory and in an swtpm inside
// the container (pkcs11, the default, is TestContainer's).
func TestKeyBackends(t *testing.T) {
	for _, backend := range []string{"memory", "tpm"} {
		t.Run(backend, func(t *testing.T) {
			c := run(t, agentssotc.WithKeyBackend(backend))
			keys, err := c.Admin().Keys(context.Background(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) == 0 || keys[0].Backend != backend {
				t.Errorf("keys %+v: want backend %s", keys, backend)
			}
			if status, tok := clientCredentials(t, c, c.IssuerURL("acme")+"/token"); status != http.StatusOK {
				t.Errorf("client_credentials: HTTP %d %v", status, tok)
			}
		})
	}
}

// TestTLS serves HTTPS; the client trusts the CA read from the container.
func TestTLS(t *testing.T) {
	c := run(t, agentssotc.WithTLS())
	iss := c.IssuerURL("acme")
	if !strings.HasPrefix(iss, "https://127.0.0.1:") || len(c.CACertPEM()) == 0 {
		t.Fatalf("issuer %s, CA %d bytes: want https on 127.0.0.1 and a CA", iss, len(c.CACertPEM()))
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	getJSON(t, c.HTTPClient(), iss+"/.well-known/oauth-authorization-server", &disc)
	if disc.Issuer != iss {
		t.Errorf("issuer %q, want %q", disc.Issuer, iss)
	}
	if status, tok := clientCredentials(t, c, iss+"/token"); status != http.StatusOK {
		t.Errorf("client_credentials over TLS: HTTP %d %v", status, tok)
	}
	// The image's health check verifies the certificate with the CA in the
	// state directory.
	code, out, err := c.Exec(context.Background(), []string{"agentsso", "healthcheck"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out)
	if code != 0 || !strings.Contains(string(b), "ok: https://127.0.0.1:8080/healthz") {
		t.Errorf("agentsso healthcheck over TLS: exit %d: %s", code, b)
	}
}

// TestConfigAndTenant serves a configuration file of its own, adds a
// tenant through the admin API, and uses a fixed admin token.
func TestConfigAndTenant(t *testing.T) {
	cfg := []byte(`
tenants:
  - name: ci
    scopes: [x:read]
    audiences: [https://rs.ci.test]
    clients:
      - id: ci-bot
        secret: ci-bot-secret
        grant_types: [client_credentials]
        required_scopes: [x:read]
        audiences: [https://rs.ci.test]
        default_audience: [https://rs.ci.test]
`)
	c := run(t,
		agentssotc.WithConfig(cfg),
		agentssotc.WithAdminToken("fixed-admin-token"),
		agentssotc.WithTenant(json.RawMessage(`{"name": "iso", "scopes": ["y:read"], "audiences": ["https://rs.iso.test"]}`)),
	)
	if c.AdminToken() != "fixed-admin-token" {
		t.Errorf("admin token %q", c.AdminToken())
	}
	names, err := c.Admin().TenantNames(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "ci,iso" {
		t.Errorf("tenants %v, want [ci iso]", names)
	}
	for _, tenant := range []string{"ci", "iso"} {
		var disc struct {
			Issuer string `json:"issuer"`
		}
		getJSON(t, c.HTTPClient(), c.IssuerURL(tenant)+"/.well-known/openid-configuration", &disc)
		if disc.Issuer != c.IssuerURL(tenant) {
			t.Errorf("%s: issuer %q", tenant, disc.Issuer)
		}
	}
	// A wrong token is refused.
	bad := &agentssotc.Admin{IdP: &conformance.IdP{AdminURL: c.AdminURL(), AdminToken: "wrong"}}
	if _, err := bad.PublicBaseURL(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong admin token: %v, want HTTP 401", err)
	}
}

// TestNoAdminToken: the image's admin API listens beyond loopback, so
// serve refuses to start without a token, and says how to give one.
func TestNoAdminToken(t *testing.T) {
	img := image(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agentssotc.Run(ctx, agentssotc.WithImage(img), agentssotc.WithEnv(map[string]string{"AGENTSSO_ADMIN_TOKEN": ""}))
	if err == nil {
		c.Terminate(ctx)
		t.Fatal("started without an admin token")
	}
	if !strings.Contains(err.Error(), "AGENTSSO_ADMIN_TOKEN") {
		t.Errorf("error does not say how to set the token: %v", err)
	}
}

// TestHealthcheck: Docker's HEALTHCHECK (agentsso healthcheck) turns the
// container healthy, and the command answers 0 inside the container.
func TestHealthcheck(t *testing.T) {
	c := run(t)
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ins, err := c.Inspect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h := ins.State.Health; h != nil && h.Status == container.Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy after 15 s: %+v", ins.State.Health)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, out, err := c.Exec(ctx, []string{"agentsso", "healthcheck"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out)
	if code != 0 || !strings.Contains(string(b), "ok: http://127.0.0.1:8080/healthz") {
		t.Errorf("agentsso healthcheck: exit %d: %s", code, b)
	}
}

// TestRunFromDockerfile builds the image through the module's
// WithDockerfile option (kept, so the layer cache makes reruns fast) and
// starts it.
func TestRunFromDockerfile(t *testing.T) {
	image(t) // Docker, and a buildable image
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := agentssotc.Run(ctx, agentssotc.WithDockerfile(repoRoot(), buildArgs()), agentssotc.WithImage("agentsso:testcontainers"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Terminate(context.Background())
	var disc struct {
		Issuer string `json:"issuer"`
	}
	getJSON(t, c.HTTPClient(), c.IssuerURL("globex")+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != c.IssuerURL("globex") {
		t.Errorf("issuer %q, want %q", disc.Issuer, c.IssuerURL("globex"))
	}
}
