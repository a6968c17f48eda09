// Package agentssotc starts agentsso in a container for tests, with
// testcontainers-go: the identity provider as the system under test sees
// it, with its admin API for minting, revoking, the clock and faults.
//
//	ctr, err := agentssotc.Run(ctx, agentssotc.WithImage("agentsso:ci"))
//	if err != nil { ... }
//	defer ctr.Terminate(ctx)
//	iss := ctr.IssuerURL("acme")        // http://127.0.0.1:32771/t/acme
//	tok, err := ctr.Admin().Mint(ctx, "acme", conformance.MintRequest{...})
//
// Published ports are bound to 127.0.0.1 only. Once the mapped port is
// known, Run sets the emulator's public base URL to it (admin API POST
// /admin/v1/public-base-url), so every issuer, discovery document and token
// is right as seen from the host. To serve other containers instead, attach
// the container to a network with an alias and give that name as the
// public base URL (WithPublicBaseURL, WithCustomizers); see docs/CI.md.
//
// Docker must run, and the image must exist locally or be pullable: build
// it with `docker build -t agentsso .` or with BuildImage. Where Ryuk's
// image cannot be pulled, set TESTCONTAINERS_RYUK_DISABLED=true.
package agentssotc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/agentsso/agentsso/conformance"
)

const (
	// DefaultImage is what `docker build -t agentsso .` produces.
	DefaultImage = "agentsso:latest"
	// PublicPort and AdminPort are the container's listeners.
	PublicPort = "8080/tcp"
	AdminPort  = "8081/tcp"
	// StateDir is the image's state directory (a volume): keys, the
	// SoftHSM2 token, the TLS CA, the audit log.
	StateDir = "/var/lib/agentsso"
	// ConfigPath is where WithConfigFile and WithConfig put the file.
	ConfigPath = "/etc/agentsso/config.yaml"
)

// Option configures Run.
type Option func(*options) error

type options struct {
	image          string
	build          *testcontainers.FromDockerfile
	config         []byte
	configFile     string
	tls            bool
	keyBackend     string
	adminToken     string
	publicBaseURL  string
	hostIP         string
	env            map[string]string
	tenants        []json.RawMessage
	customizers    []testcontainers.ContainerCustomizer
	startupTimeout time.Duration
}

// WithImage runs this image (default DefaultImage). It is used as found
// locally, and pulled only when absent.
func WithImage(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("agentssotc: WithImage: empty image name")
		}
		o.image = name
		return nil
	}
}

// WithDockerfile builds the image from the Dockerfile in contextDir (the
// repository root) with these build arguments, tags it as the WithImage
// name (default agentsso:testcontainers) and keeps it, so that the next
// run reuses the layer cache. BuildImage does the same without starting a
// container.
func WithDockerfile(contextDir string, buildArgs map[string]string) Option {
	return func(o *options) error {
		o.build = dockerfile(contextDir, "", buildArgs)
		return nil
	}
}

// WithConfigFile copies a configuration file (YAML, see README.md) into the
// container and serves it instead of the embedded default. The image's
// environment still wins for addresses, state directory and key backend.
func WithConfigFile(path string) Option {
	return func(o *options) error {
		o.configFile, o.config = path, nil
		return nil
	}
}

// WithConfig is WithConfigFile with the file's contents.
func WithConfig(yaml []byte) Option {
	return func(o *options) error {
		o.config, o.configFile = yaml, ""
		return nil
	}
}

// WithTLS serves HTTPS with a certificate from the emulator's local CA
// (for 127.0.0.1, localhost and the public base URL's host). The CA is
// read from the container after start: CACertPEM, HTTPClient.
func WithTLS() Option {
	return func(o *options) error {
		o.tls = true
		return nil
	}
}

// WithKeyBackend keeps the signing keys in memory, pkcs11 (the image's
// default: a SoftHSM2 token in the state directory) or tpm (an swtpm that
// agentsso starts inside the container).
func WithKeyBackend(name string) Option {
	return func(o *options) error {
		switch name {
		case "memory", "pkcs11", "tpm":
			o.keyBackend = name
			return nil
		}
		return fmt.Errorf("agentssotc: WithKeyBackend(%q): want memory, pkcs11 or tpm", name)
	}
}

// WithAdminToken sets the admin API's bearer token. Without it Run makes a
// random one (AdminToken returns it): the image's admin API listens beyond
// loopback, which requires a token.
func WithAdminToken(token string) Option {
	return func(o *options) error {
		if token == "" {
			return errors.New("agentssotc: WithAdminToken: empty token")
		}
		o.adminToken = token
		return nil
	}
}

// WithPublicBaseURL fixes the public base URL (for example
// http://agentsso:8080 when the system under test runs in another
// container on the same network) instead of the host's mapped port. The
// issuers are then {url}/t/{tenant}, and host-side clients must send
// requests there or accept that name.
func WithPublicBaseURL(url string) Option {
	return func(o *options) error {
		o.publicBaseURL = strings.TrimSuffix(url, "/")
		return nil
	}
}

// WithHostIP publishes the ports on this host address (default
// 127.0.0.1). An unspecified address (0.0.0.0) uses testcontainers' idea of
// the Docker host (TESTCONTAINERS_HOST_OVERRIDE) in the URLs.
func WithHostIP(ip string) Option {
	return func(o *options) error {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("agentssotc: WithHostIP: %w", err)
		}
		o.hostIP = ip
		return nil
	}
}

// WithEnv adds environment variables (AGENTSSO_*, see `agentsso env`).
// They win over the options above.
func WithEnv(env map[string]string) Option {
	return func(o *options) error {
		for k, v := range env {
			o.env[k] = v
		}
		return nil
	}
}

// WithTenant creates a tenant once the container runs, through the admin
// API (POST /admin/v1/tenants): a JSON object with the names of the YAML
// configuration, as in docs/ADMIN.md.
func WithTenant(config json.RawMessage) Option {
	return func(o *options) error {
		if !json.Valid(config) {
			return errors.New("agentssotc: WithTenant: not valid JSON")
		}
		o.tenants = append(o.tenants, config)
		return nil
	}
}

// WithCustomizers passes testcontainers customizers through, after the
// module's own: a network and alias (network.WithNetwork), log consumers,
// mounts, a name.
func WithCustomizers(cs ...testcontainers.ContainerCustomizer) Option {
	return func(o *options) error {
		o.customizers = append(o.customizers, cs...)
		return nil
	}
}

// WithStartupTimeout bounds the wait for /healthz (default 60 s).
func WithStartupTimeout(d time.Duration) Option {
	return func(o *options) error {
		o.startupTimeout = d
		return nil
	}
}

// Container is a running agentsso container.
type Container struct {
	*testcontainers.DockerContainer
	publicURL, adminURL string
	adminToken          string
	caPEM               []byte
	http                *http.Client
	admin               *Admin
}

// PublicURL is the public base URL as the emulator announces it (by
// default http://127.0.0.1:PORT, the mapped port).
func (c *Container) PublicURL() string { return c.publicURL }

// AdminURL is the admin API's base URL on the host (the paths start with
// /admin/v1).
func (c *Container) AdminURL() string { return c.adminURL }

// AdminToken is the admin API's bearer token.
func (c *Container) AdminToken() string { return c.adminToken }

// IssuerURL is a tenant's issuer.
func (c *Container) IssuerURL(tenant string) string { return c.publicURL + "/t/" + tenant }

// Admin is the admin API client.
func (c *Container) Admin() *Admin { return c.admin }

// IdP describes the emulator for conformance.Runner.
func (c *Container) IdP() *conformance.IdP { return c.admin.IdP }

// CACertPEM is the emulator's CA certificate (PEM) with WithTLS, else nil.
func (c *Container) CACertPEM() []byte { return c.caPEM }

// HTTPClient is a client for the public endpoints: it trusts the
// emulator's CA with WithTLS.
func (c *Container) HTTPClient() *http.Client { return c.http }

// Run starts an agentsso container (`agentsso serve`), waits until it
// answers /healthz through the mapped port, sets the public base URL to the
// host's view (unless WithPublicBaseURL) and creates the WithTenant
// tenants. On error it removes the container it started.
func Run(ctx context.Context, opts ...Option) (*Container, error) {
	o := &options{image: DefaultImage, hostIP: "127.0.0.1", env: map[string]string{}, startupTimeout: 60 * time.Second}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.adminToken == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		o.adminToken = hex.EncodeToString(b)
	}
	env := map[string]string{"AGENTSSO_ADMIN_TOKEN": o.adminToken}
	if o.keyBackend != "" {
		env["AGENTSSO_KEYS_BACKEND"] = o.keyBackend
	}
	if o.tls {
		env["AGENTSSO_TLS"] = "true"
	}
	if o.publicBaseURL != "" {
		env["AGENTSSO_PUBLIC_BASE_URL"] = o.publicBaseURL
	}
	var files []testcontainers.ContainerFile
	switch {
	case o.configFile != "":
		files = append(files, testcontainers.ContainerFile{HostFilePath: o.configFile, ContainerFilePath: ConfigPath, FileMode: 0o644})
		env["AGENTSSO_CONFIG"] = ConfigPath
	case o.config != nil:
		files = append(files, testcontainers.ContainerFile{Reader: strings.NewReader(string(o.config)), ContainerFilePath: ConfigPath, FileMode: 0o644})
		env["AGENTSSO_CONFIG"] = ConfigPath
	}
	for k, v := range o.env {
		env[k] = v
	}
	hostIP := netip.MustParseAddr(o.hostIP)
	cs := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts(PublicPort, AdminPort),
		testcontainers.WithEnv(env),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort(PublicPort): {{HostIP: hostIP}},
				network.MustParsePort(AdminPort):  {{HostIP: hostIP}},
			}
		}),
		testcontainers.WithWaitStrategyAndDeadline(o.startupTimeout, &healthz{tls: o.tls, hostIP: hostIP}),
	}
	if len(files) > 0 {
		cs = append(cs, testcontainers.WithFiles(files...))
	}
	image := o.image
	if o.build != nil {
		if o.image != DefaultImage {
			o.build.Repo, o.build.Tag = splitImage(o.image)
		}
		cs = append(cs, testcontainers.WithDockerfile(*o.build))
		image = ""
	}
	cs = append(cs, o.customizers...)
	ctr, err := testcontainers.Run(ctx, image, cs...)
	if err != nil {
		msg := ""
		if ctr != nil {
			msg = tailLogs(ctx, ctr)
			_ = ctr.Terminate(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("agentssotc: start %s: %w%s", o.image, err, msg)
	}
	c, err := setup(ctx, ctr, o, hostIP)
	if err != nil {
		_ = ctr.Terminate(context.WithoutCancel(ctx))
		return nil, err
	}
	return c, nil
}

func setup(ctx context.Context, ctr *testcontainers.DockerContainer, o *options, hostIP netip.Addr) (*Container, error) {
	host, err := hostFor(ctx, ctr, hostIP)
	if err != nil {
		return nil, err
	}
	pub, err := ctr.MappedPort(ctx, PublicPort)
	if err != nil {
		return nil, fmt.Errorf("agentssotc: %w", err)
	}
	adm, err := ctr.MappedPort(ctx, AdminPort)
	if err != nil {
		return nil, fmt.Errorf("agentssotc: %w", err)
	}
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	c := &Container{
		DockerContainer: ctr,
		publicURL:       scheme + "://" + net.JoinHostPort(host, pub.Port()),
		adminURL:        "http://" + net.JoinHostPort(host, adm.Port()),
		adminToken:      o.adminToken,
		http:            &http.Client{Timeout: 30 * time.Second},
	}
	if o.tls {
		rc, err := ctr.CopyFileFromContainer(ctx, StateDir+"/tls/ca.pem")
		if err != nil {
			return nil, fmt.Errorf("agentssotc: reading the CA certificate: %w", err)
		}
		c.caPEM, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.caPEM) {
			return nil, errors.New("agentssotc: the container's CA certificate is not PEM")
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	c.admin = &Admin{IdP: &conformance.IdP{URL: c.publicURL, AdminURL: c.adminURL, AdminToken: o.adminToken}}
	if o.publicBaseURL != "" {
		c.publicURL = o.publicBaseURL
		c.admin.URL = o.publicBaseURL
	} else if err := c.admin.SetPublicBaseURL(ctx, c.publicURL); err != nil {
		return nil, err
	}
	for _, t := range o.tenants {
		if err := c.admin.CreateTenant(ctx, t); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// hostFor is the address the mapped ports are reached at.
func hostFor(ctx context.Context, ctr *testcontainers.DockerContainer, ip netip.Addr) (string, error) {
	if !ip.IsUnspecified() {
		return ip.String(), nil
	}
	return ctr.Host(ctx)
}

// healthz waits until GET /healthz answers 200 through the mapped port.
type healthz struct {
	tls    bool
	hostIP netip.Addr
}

func (h *healthz) WaitUntilReady(ctx context.Context, target wait.StrategyTarget) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // liveness only; the CA is read after
	}}
	defer client.CloseIdleConnections()
	scheme := "http"
	if h.tls {
		scheme = "https"
	}
	var last error
	for {
		if err := h.probe(ctx, target, client, scheme); err == nil {
			return nil
		} else {
			last = err
		}
		if st, err := target.State(ctx); err == nil && !st.Running {
			return fmt.Errorf("container exited (status %d) before /healthz answered", st.ExitCode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (h *healthz) probe(ctx context.Context, target wait.StrategyTarget, client *http.Client, scheme string) error {
	port, err := target.MappedPort(ctx, PublicPort)
	if err != nil {
		return err
	}
	host := h.hostIP.String()
	if h.hostIP.IsUnspecified() {
		if host, err = target.Host(ctx); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port.Port())+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: HTTP %d", resp.StatusCode)
	}
	return nil
}

// BuildImage builds the Dockerfile in contextDir (the repository root) as
// image (for example agentsso:dev) with these build arguments, without
// starting a container, and keeps it. See the Dockerfile for the
// arguments (GO_IMAGE, RUNTIME_IMAGE, PREBUILT, VERSION).
func BuildImage(ctx context.Context, contextDir, image string, buildArgs map[string]string, log io.Writer) error {
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return fmt.Errorf("agentssotc: docker: %w", err)
	}
	defer p.Close()
	df := dockerfile(contextDir, image, buildArgs)
	df.BuildLogWriter = log
	if _, err := p.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: *df}); err != nil {
		return fmt.Errorf("agentssotc: docker build %s: %w", contextDir, err)
	}
	return nil
}

func dockerfile(contextDir, image string, buildArgs map[string]string) *testcontainers.FromDockerfile {
	args := map[string]*string{}
	for k, v := range buildArgs {
		args[k] = &v
	}
	if image == "" {
		image = "agentsso:testcontainers"
	}
	repo, tag := splitImage(image)
	return &testcontainers.FromDockerfile{Context: contextDir, Dockerfile: "Dockerfile", Repo: repo, Tag: tag, BuildArgs: args, KeepImage: true}
}

// splitImage splits name[:tag]; a colon before the last slash belongs to a
// registry's port.
func splitImage(image string) (repo, tag string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, "latest"
	}
	return image[:i], image[i+1:]
}

func tailLogs(ctx context.Context, ctr *testcontainers.DockerContainer) string {
	rc, err := ctr.Logs(context.WithoutCancel(ctx))
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	if len(lines) == 0 || lines[0] == "" {
		return ""
	}
	return "\ncontainer log:\n  " + strings.Join(lines, "\n  ")
}
