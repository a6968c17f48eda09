package agentlab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/tlsca"
	"github.com/agentsso/agentsso/softhsm"
)

// Names of the agent's client and the harness's own clients in the
// world's tenant.
const (
	AgentClientID = "agent"
	tenantName    = "agents"
	tenant2Name   = "agents2"
)

// World is one scenario's isolated world on 127.0.0.1.
type World struct {
	Scenario string
	Spec     Spec
	Trace    *Trace
	Canaries *Canaries

	Em *emulator.Server
	// Issuer is the AS the agent is given; Issuer2 the second one.
	Issuer, Issuer2 string
	Servers         map[string]*MCPServer
	ModelURL        string
	BrowserURL      string
	RedirectURI     string

	ClientSecret string
	KeyFile      string
	KeyID        string
	// KeyURI is the RFC 7512 URI of the agent's key in SoftHSM2
	// (client_key: pkcs11), its PIN included.
	KeyURI   string
	keyStore io.Closer
	// softHSMConf is the SOFTHSM2_CONF that opens KeyURI's token.
	softHSMConf string
	UserToken   string
	ModelKey    string

	base    string
	model   *Model
	browser *browser

	// CAFile is the PEM of the CA the world's HTTPS servers chain to
	// (setup tls: true).
	CAFile    string
	tlsConfig *tls.Config
	caPool    *x509.CertPool

	mu       sync.Mutex
	revoked  []time.Time
	servers  []*http.Server
	pending  []pendingServer
	tmpDir   string
	closeErr error
}

// New builds the world for one scenario: an emulator with tenants agents
// (and agents2), the fake MCP servers, the model and the browser shim, all
// listening on 127.0.0.1. dir holds files handed to the agent (its key);
// a temporary directory is used when empty.
func New(ctx context.Context, scenario string, spec Spec, dir string) (_ *World, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	w := &World{Scenario: scenario, Spec: spec, Trace: NewTrace(), Canaries: NewCanaries(), Servers: map[string]*MCPServer{}}
	var opened []net.Listener
	defer func() {
		if err != nil {
			w.Close()
			for _, l := range opened {
				l.Close() // those not yet handed to a server
			}
		}
	}()
	if dir == "" {
		if dir, err = os.MkdirTemp("", "agentsso-agent-"); err != nil {
			return nil, err
		}
		w.tmpDir = dir
	}
	listen := func() (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			opened = append(opened, l)
		}
		return l, err
	}
	lIdP, err := listen()
	if err != nil {
		return nil, fmt.Errorf("agentlab: listening for the IdP: %w", err)
	}
	scheme := "http"
	if spec.TLS {
		if err := w.setupTLS(dir); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	w.base = scheme + "://" + lIdP.Addr().String()
	w.Issuer = w.base + "/t/" + tenantName
	w.Issuer2 = w.base + "/t/" + tenant2Name
	ls := map[string]net.Listener{}
	for _, n := range []string{"rs1", "rs2", "decoy", "model", "browser"} {
		l, err := listen()
		if err != nil {
			return nil, fmt.Errorf("agentlab: listening for %s: %w", n, err)
		}
		ls[n] = l
	}
	// The redirect URI: a free port the agent will listen on, on an
	// address of 127.0.0.0/8 of this world's own, so that the port,
	// released here until the agent binds it, is not handed to any other
	// listener meanwhile (the harness's all bind 127.0.0.1).
	lr, err := net.Listen("tcp", redirectHost()+":0")
	if err != nil {
		if lr, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("agentlab: a port for the redirect URI: %w", err)
		}
	}
	w.RedirectURI = "http://" + lr.Addr().String() + "/callback"
	lr.Close()

	rsURL := func(n string) string { return scheme + "://" + ls[n].Addr().String() + "/mcp" }
	cfg, err := w.config(dir, rsURL)
	if err != nil {
		return nil, err
	}
	em, err := emulator.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("agentlab: starting the emulator: %w", err)
	}
	w.Em = em
	introSecret, _ := em.ClientSecret(tenantName, "rs-introspect")
	introSecret2, _ := em.ClientSecret(tenant2Name, "rs-introspect")

	fr := &front{w: w, em: em, setup: spec.AS}
	w.serve(lIdP, w.Trace.Wrap("idp", fr))
	for _, n := range []string{"rs1", "rs2", "decoy"} {
		issuer, tenant, secret := w.Issuer, tenantName, introSecret
		if n == "rs2" && spec.SecondAS {
			issuer, tenant, secret = w.Issuer2, tenant2Name, introSecret2
		}
		s := newMCPServer(n, scheme+"://"+ls[n].Addr().String(), issuer, spec.RS[n], spec.DPoP, inProcessIntrospect(em, tenant, "rs-introspect", secret))
		s.otherResource = rsURL("rs2")
		if n == "rs2" {
			s.otherResource = rsURL("rs1")
		}
		s.revoke = w.revokeAgent
		w.Servers[n] = s
		w.serve(ls[n], w.Trace.Wrap(n, s))
	}
	w.model = &Model{script: spec.Task}
	w.ModelURL = scheme + "://" + ls["model"].Addr().String()
	w.serve(ls["model"], w.Trace.Wrap("model", w.model))
	w.browser = &browser{w: w, setup: spec.AS, client: &http.Client{
		Transport:     w.clientTransport(),
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	w.BrowserURL = scheme + "://" + ls["browser"].Addr().String() + "/open"
	w.serve(ls["browser"], w.Trace.Wrap("browser", w.browser))

	w.ModelKey = "sk-agentsso-model-" + randomString(18)
	w.Canaries.Add(w.ModelKey, "model_key", "the model API key", "")
	if spec.UserToken {
		res, err := em.Mint(ctx, tenantName, emulator.MintRequest{Claims: map[string]any{
			"sub": "user-alice", "client_id": "user-app", "aud": []any{AgentClientID},
			"scope": "notes:read notes:write search",
		}, Lifetime: 10 * time.Minute})
		if err != nil {
			return nil, fmt.Errorf("agentlab: minting the user's token: %w", err)
		}
		w.UserToken = res.Token
		w.Canaries.Add(res.Token, "user_token", "the user's access token (AGENTSSO_USER_TOKEN)", w.Issuer)
	}
	if w.ClientSecret != "" {
		w.Canaries.Add(w.ClientSecret, "client_secret", "the agent's client secret", w.Issuer)
	}
	// Serve only now that the world is whole: a request reaches nothing
	// half built.
	w.mu.Lock()
	for _, p := range w.pending {
		go func() { _ = p.srv.Serve(p.l) }()
	}
	w.pending = nil
	w.mu.Unlock()
	return w, nil
}

// serve registers a server; New starts them all once the world is built.
func (w *World) serve(l net.Listener, h http.Handler) {
	// Failed handshakes (an agent that does not trust the world's CA) are
	// the agent's to report, not noise on the harness's output.
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	if w.tlsConfig != nil {
		l = tls.NewListener(l, w.tlsConfig)
	}
	w.mu.Lock()
	w.servers = append(w.servers, s)
	w.pending = append(w.pending, pendingServer{s, l})
	w.mu.Unlock()
}

type pendingServer struct {
	srv *http.Server
	l   net.Listener
}

// config is the emulator configuration of the world.
func (w *World) config(dir string, rsURL func(string) string) (emulator.Config, error) {
	auds := []string{rsURL("rs1"), rsURL("rs2"), rsURL("decoy")}
	scopes := []string{"openid", "profile", "email", "offline_access", "notes:read", "notes:write", "search", "lookup"}
	lt := 5 * time.Minute
	if w.Spec.AccessTokenLifetime > 0 {
		lt = time.Duration(w.Spec.AccessTokenLifetime)
	}
	agent := emulator.ClientConfig{
		ID: AgentClientID, Name: "Agent under test", Kind: "agent",
		AuthMethod:     w.Spec.clientAuth(),
		RedirectURIs:   []string{w.RedirectURI},
		OptionalScopes: scopes,
		Audiences:      auds, DefaultAudience: auds[:1], ExchangeAudiences: auds,
		Lifetimes: emulator.LifetimeConfig{AccessToken: lt},
	}
	switch w.Spec.clientAuth() {
	case "none":
		agent.GrantTypes = []string{emulator.GrantAuthorizationCode, emulator.GrantRefreshToken, emulator.GrantDeviceCode}
	case "client_secret_basic":
		w.ClientSecret = "agentsso-canary-secret-" + randomString(18)
		agent.Secret = w.ClientSecret
		agent.GrantTypes = []string{emulator.GrantAuthorizationCode, emulator.GrantRefreshToken, emulator.GrantClientCredentials, emulator.GrantTokenExchange, emulator.GrantDeviceCode}
	case "private_key_jwt":
		agentKey := w.agentKey
		if w.Spec.ClientKey == "pkcs11" {
			agentKey = w.agentKeyInHSM
		}
		jwks, err := agentKey(dir)
		if err != nil {
			return emulator.Config{}, err
		}
		agent.JWKS = jwks
		agent.AssertionAlg = "ES256"
		agent.GrantTypes = []string{emulator.GrantAuthorizationCode, emulator.GrantRefreshToken, emulator.GrantClientCredentials, emulator.GrantTokenExchange}
	}
	intro := func() emulator.ClientConfig {
		return emulator.ClientConfig{
			ID: "rs-introspect", Name: "Fake MCP servers", Kind: "gateway", Introspect: true,
			AuthMethod: "client_secret_basic", Secret: "rs-introspect-" + randomString(12),
			GrantTypes: []string{emulator.GrantClientCredentials}, Audiences: auds[:1], DefaultAudience: auds[:1],
		}
	}
	userApp := emulator.ClientConfig{
		ID: "user-app", Name: "The app the user signed in to", Kind: "app", AuthMethod: "client_secret_basic",
		Secret: "user-app-" + randomString(12), GrantTypes: []string{emulator.GrantClientCredentials},
		Audiences: []string{AgentClientID}, DefaultAudience: []string{AgentClientID}, OptionalScopes: scopes,
	}
	users := []emulator.UserConfig{{Username: "alice", Password: "alice-" + randomString(8), Subject: "user-alice", Name: "Alice Agentowner", Email: "alice@agents.test"}}
	t1 := emulator.TenantConfig{
		Name: tenantName, Scopes: scopes, Audiences: append(auds, AgentClientID),
		Registration: emulator.RegistrationConfig{Dynamic: true},
		Clients:      []emulator.ClientConfig{agent, intro(), userApp}, Users: users,
	}
	t2 := emulator.TenantConfig{
		Name: tenant2Name, Scopes: scopes, Audiences: auds,
		Registration: emulator.RegistrationConfig{Dynamic: true},
		Clients:      []emulator.ClientConfig{intro()}, Users: users,
	}
	if w.Spec.DPoP != nil && w.Spec.DPoP.ASNonce {
		t1.DPoP.RequireNonce = true
		t2.DPoP.RequireNonce = true
	}
	cfg := emulator.Config{
		Addr:          strings.TrimPrefix(strings.TrimPrefix(w.base, "http://"), "https://"),
		PublicBaseURL: w.base,
		Keys:          emulator.KeysConfig{Backend: "memory", Alg: "ES256"},
		Audit:         emulator.AuditConfig{Disabled: true},
		Defaults: emulator.LifetimeConfig{
			AccessToken: lt, RefreshToken: time.Hour, IDToken: 10 * time.Minute, Code: time.Minute,
		},
		Tenants: []emulator.TenantConfig{t1, t2},
	}
	return cfg, nil
}

// agentKey makes the agent's private_key_jwt key, writes it as PKCS#8 PEM
// and returns the public JWKS to register.
func (w *World) agentKey(dir string) (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", err
	}
	w.KeyID = "agent-" + randomString(6)
	w.KeyFile = filepath.Join(dir, "agent-key.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(w.KeyFile, pemBytes, 0o600); err != nil {
		return "", fmt.Errorf("agentlab: writing the agent's key: %w", err)
	}
	w.Canaries.Add(string(pemBytes), "private_key", "the agent's private key", "")
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: w.KeyID, Algorithm: "ES256", Use: "sig"}}}
	b, err := json.Marshal(set)
	return string(b), err
}

// revokeAgent revokes every token the agent's client holds, as a
// scenario's server asks.
func (w *World) revokeAgent() {
	_ = w.Em.Revoke(tenantName, emulator.Revocation{ClientID: AgentClientID, Reason: "scenario " + w.Scenario})
	w.mu.Lock()
	w.revoked = append(w.revoked, time.Now())
	w.mu.Unlock()
}

// Revocations are the times the harness revoked the agent's tokens.
func (w *World) Revocations() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.revoked...)
}

// Done reports whether the model gave its final answer: the agent got
// every scripted tool result.
func (w *World) Done() bool { return w.model.final.Load() }

// BrowserRefused counts authorization URLs the shim refused to open.
func (w *World) BrowserRefused() int64 { return w.browser.refused.Load() }

// ServerName names the fake server whose URL u is ("" if none).
func (w *World) serverName(u string) string {
	for n, s := range w.Servers {
		if s.URL == u {
			return n
		}
	}
	return u
}

// ServerOf names the fake server a resource URL belongs to, or "".
func (w *World) ServerOf(u string) string {
	for n, s := range w.Servers {
		if s.URL == u {
			return n
		}
	}
	return ""
}

// Env is the adapter protocol's environment (docs/AGENTS.md).
func (w *World) Env() map[string]string {
	var servers []string
	first := ""
	for _, n := range w.Spec.servers() {
		servers = append(servers, n+"="+w.Servers[n].URL)
		if first == "" {
			first = w.Servers[n].URL
		}
	}
	env := map[string]string{
		"AGENTSSO_SCENARIO":        w.Scenario,
		"AGENTSSO_TASK":            w.task(),
		"AGENTSSO_ISSUER":          w.Issuer,
		"AGENTSSO_GRANT":           w.Spec.grant(),
		"AGENTSSO_CLIENT_ID":       AgentClientID,
		"AGENTSSO_CLIENT_AUTH":     w.Spec.clientAuth(),
		"AGENTSSO_REDIRECT_URI":    w.RedirectURI,
		"AGENTSSO_BROWSER_URL":     w.BrowserURL,
		"AGENTSSO_MCP_SERVERS":     strings.Join(servers, " "),
		"AGENTSSO_MCP_SERVER_URL":  first,
		"AGENTSSO_MODEL_URL":       w.ModelURL,
		"OPENAI_BASE_URL":          w.ModelURL + "/v1",
		"OPENAI_API_KEY":           w.ModelKey,
		"ANTHROPIC_BASE_URL":       w.ModelURL,
		"ANTHROPIC_API_KEY":        w.ModelKey,
		"MCP_CONFORMANCE_SCENARIO": w.Scenario,
	}
	if w.ClientSecret != "" {
		env["AGENTSSO_CLIENT_SECRET"] = w.ClientSecret
	}
	if w.KeyURI != "" {
		env["AGENTSSO_CLIENT_KEY_PKCS11_URI"] = w.KeyURI
		env["SOFTHSM2_CONF"] = w.softHSMConf
	}
	if w.KeyFile != "" {
		env["AGENTSSO_CLIENT_KEY_FILE"] = w.KeyFile
	}
	if w.KeyURI != "" || w.KeyFile != "" {
		env["AGENTSSO_CLIENT_KEY_ID"] = w.KeyID
		env["AGENTSSO_CLIENT_KEY_ALG"] = "ES256"
	}
	if w.UserToken != "" {
		env["AGENTSSO_USER_TOKEN"] = w.UserToken
	}
	if w.CAFile != "" {
		// The world's CA, by our name and by the names Go, OpenSSL and
		// Node.js read.
		env["AGENTSSO_CA_FILE"] = w.CAFile
		env["SSL_CERT_FILE"] = w.CAFile
		env["NODE_EXTRA_CA_CERTS"] = w.CAFile
	}
	ctx, _ := json.Marshal(map[string]string{
		"client_id": AgentClientID, "client_secret": w.ClientSecret, "issuer": w.Issuer, "server_url": first,
	})
	env["MCP_CONFORMANCE_CONTEXT"] = string(ctx)
	return env
}

func (w *World) task() string {
	if len(w.Spec.Task) == 0 {
		return "Say hello."
	}
	var tools []string
	for _, c := range w.Spec.Task {
		tools = append(tools, c.Tool)
	}
	return "Use the tools " + strings.Join(tools, ", ") + " and report what they say."
}

// Stop stops the world's servers, waiting (up to 2 s) for the requests
// under way: once it returns, every request the agent made is in the
// trace. The harness calls it when the agent is done, before judging.
func (w *World) Stop() {
	w.mu.Lock()
	servers := w.servers
	w.servers = nil
	for _, p := range w.pending {
		p.l.Close() // never served: New failed half way
	}
	w.pending = nil
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			_ = s.Close()
		}
	}
}

// Close stops every server of the world and removes what it made.
func (w *World) Close() error {
	w.Stop()
	var errs []error
	if w.Em != nil {
		errs = append(errs, w.Em.Close())
	}
	if w.keyStore != nil {
		errs = append(errs, w.keyStore.Close())
	}
	if w.tmpDir != "" {
		errs = append(errs, os.RemoveAll(w.tmpDir))
	}
	return errors.Join(errs...)
}

// agentKeyInHSM creates the agent's private_key_jwt key in the process's
// shared SoftHSM2 token (see agentHSM) and returns the public JWKS; the
// agent gets the token's RFC 7512 URI, PIN included, and the kid of its
// key.
func (w *World) agentKeyInHSM(string) (string, error) {
	if !softhsm.SoftHSM2Available() {
		return "", errors.New("agentlab: client_key pkcs11 needs SoftHSM2 (apt-get install softhsm2) and a cgo build")
	}
	store, cfg, conf, lease, err := acquireAgentHSM()
	if err != nil {
		return "", err
	}
	w.keyStore = lease
	key, err := store.Create(context.Background(), AgentClientID, softhsm.ES256)
	if err != nil {
		return "", fmt.Errorf("agentlab: creating the agent's key in SoftHSM2: %w", err)
	}
	jwk := key.PublicJWK()
	w.KeyID = jwk.KeyID
	w.KeyURI = softhsm.PKCS11URI{Token: cfg.Token, ModulePath: cfg.Module, PINValue: cfg.PIN}.Encode()
	w.softHSMConf = conf
	w.Canaries.Add(cfg.PIN, "pin", "the PIN of the agent's SoftHSM2 token", "")
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	return string(b), err
}

// deviceApprovalDelay is how long the scripted user takes to approve a
// device authorization request (RFC 8628): long enough for a first poll
// to see authorization_pending, shorter than the 5 s interval.
const deviceApprovalDelay = time.Second

// approveDevice has the scenario's user (alice) approve a device
// authorization request after deviceApprovalDelay, recorded in the trace
// as the user's doing.
func (w *World) approveDevice(tenant, userCode string) {
	time.AfterFunc(deviceApprovalDelay, func() {
		w.mu.Lock()
		closed := w.servers == nil && w.pending == nil
		w.mu.Unlock()
		if closed {
			return
		}
		status := http.StatusOK
		if _, err := w.Em.ApproveDevice(tenant, userCode, "alice"); err != nil {
			status = http.StatusConflict
		}
		w.Trace.add(Record{Seq: int(w.Trace.seq.Add(1)), Time: time.Now(), Server: "user", Method: "APPROVE",
			Path: "/t/" + tenant + "/device", Source: "harness", Status: status})
	})
}

// redirectHost is a random loopback address outside 127.0.0.0/24.
func redirectHost() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("127.%d.%d.%d", 1+int(b[0])%254, b[1], 1+int(b[2])%254)
}

// setupTLS makes the world's CA under dir and the server configuration
// every listener of the world uses: a certificate for 127.0.0.1, and a
// client certificate asked for (not required) so that one presented is
// recorded.
func (w *World) setupTLS(dir string) error {
	ca, err := tlsca.LoadOrCreate(filepath.Join(dir, "tls"))
	if err != nil {
		return fmt.Errorf("agentlab: the world's CA: %w", err)
	}
	cfg, err := ca.ServerTLSConfig([]string{"127.0.0.1", "localhost"})
	if err != nil {
		return fmt.Errorf("agentlab: the world's server certificate: %w", err)
	}
	cfg.ClientAuth = tls.RequestClientCert
	w.tlsConfig, w.caPool, w.CAFile = cfg, ca.Pool(), ca.CertFile()
	return nil
}

// clientTransport is how the harness itself calls the world's servers
// (the browser shim): trusting the world's CA when it has one.
func (w *World) clientTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	if w.caPool != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: w.caPool, MinVersion: tls.VersionTLS12}
	}
	return t
}
