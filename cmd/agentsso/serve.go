package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/emulator/tlsca"
	"github.com/agentsso/agentsso/softhsm"
)

type serveFlags struct {
	config, addr, adminAddr, stateDir, baseURL string
	mtlsAddr                                   string
	tls                                        bool
}

func (f *serveFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML); default: $AGENTSSO_CONFIG or the embedded default")
	fl.StringVar(&f.addr, "addr", "", "public listener HOST:PORT, overriding the file (port 0 picks a free port)")
	fl.StringVar(&f.adminAddr, "admin-addr", "", "admin API listener HOST:PORT, overriding the file")
	fl.StringVar(&f.stateDir, "state-dir", "", "state directory (keys, generated secrets, TLS CA, audit log)")
	fl.StringVar(&f.baseURL, "public-base-url", "", "base URL clients reach the emulator at (default: from --addr)")
	fl.BoolVar(&f.tls, "tls", false, "serve HTTPS with a certificate from the local CA")
	fl.StringVar(&f.mtlsAddr, "mtls-addr", "", "also serve the RFC 8705 mTLS endpoints on HOST:PORT (client certificates requested)")
}

// apply loads the configuration and lets flags override it.
func (f *serveFlags) load() (emulator.Config, string, error) {
	cfg, source, err := loadConfig(f.config)
	if err != nil {
		return cfg, source, err
	}
	if f.addr != "" {
		cfg.Addr = f.addr
	}
	if f.adminAddr != "" {
		cfg.AdminAddr = f.adminAddr
	}
	if f.stateDir != "" {
		cfg.StateDir = f.stateDir
	}
	if f.baseURL != "" {
		cfg.PublicBaseURL = f.baseURL
	}
	if f.tls {
		cfg.TLS = true
	}
	if f.mtlsAddr != "" {
		cfg.MTLSAddr = f.mtlsAddr
	}
	return cfg, source, cfg.Validate()
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the multi-tenant identity provider and its admin API",
		Long: `Run the emulator. With no flags it serves the embedded default configuration
(tenants acme and globex, see README.md) on 127.0.0.1:8080, and the admin API on
127.0.0.1:8081. The first lines of output name the chosen addresses and issuers.
Stop it with Ctrl-C (SIGINT) or SIGTERM: the audit log is synced before exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, source, err := f.load()
			if err != nil {
				return err
			}
			run, err := start(cmd.Context(), cfg, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "agentsso: configuration %s; stop with Ctrl-C\n", source)
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.OutOrStdout(), "agentsso: shutting down")
			return run.stop()
		},
	}
	f.register(cmd)
	return cmd
}

// running is an emulator started by start.
type running struct {
	srv      *emulator.Server
	url      string
	adminURL string
	auditLog *audit.Log
	auditPth string
	caFile   string
	keys     *keyStore
	public   *http.Server
	admin    *http.Server
	mtls     *http.Server
	errc     chan error
}

// start binds the listeners, builds the emulator and serves it, printing
// the chosen addresses first. On any error everything opened so far is
// closed again.
func start(ctx context.Context, cfg emulator.Config, out io.Writer) (_ *running, err error) {
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	listen := func(field, flag, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w (choose another with %s, or port 0 for a free one)", field, addr, err, flag)
		}
		undo = append(undo, func() { ln.Close() })
		return ln, nil
	}
	ln, err := listen("addr", "--addr", cfg.Addr)
	if err != nil {
		return nil, err
	}
	aln, err := listen("admin_addr", "--admin-addr", cfg.AdminAddr)
	if err != nil {
		return nil, err
	}
	var mln net.Listener
	if cfg.MTLSAddr != "" {
		if mln, err = listen("mtls_addr", "--mtls-addr", cfg.MTLSAddr); err != nil {
			return nil, err
		}
		cfg.MTLSAddr = mln.Addr().String()
		if cfg.MTLSBaseURL == "" {
			cfg.MTLSBaseURL = "https://" + cfg.MTLSAddr
		}
	}
	cfg.Addr, cfg.AdminAddr = ln.Addr().String(), aln.Addr().String()
	scheme := "http"
	if cfg.TLS {
		scheme = "https"
	}
	if cfg.PublicBaseURL == "" {
		cfg.PublicBaseURL = scheme + "://" + cfg.Addr
	}
	r := &running{errc: make(chan error, 3)}
	var opts []emulator.Option
	if cfg.TLS || mln != nil {
		dir := filepath.Join(cfg.StateDir, "tls")
		if cfg.StateDir == "" {
			d, err := os.MkdirTemp("", "agentsso-tls-")
			if err != nil {
				return nil, err
			}
			dir = d
		}
		ca, err := tlsca.LoadOrCreate(dir)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		hosts := []string{"localhost", "127.0.0.1"}
		for _, base := range []string{cfg.PublicBaseURL, cfg.MTLSBaseURL} {
			if u, err := url.Parse(base); err == nil && u.Hostname() != "" {
				hosts = append(hosts, u.Hostname())
			}
		}
		if h, _, err := net.SplitHostPort(cfg.Addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
		if cfg.TLS {
			tc, err := ca.ServerTLSConfig(hosts)
			if err != nil {
				return nil, fmt.Errorf("tls: %w", err)
			}
			ln = tls.NewListener(ln, tc)
		}
		if mln != nil {
			mtc, err := ca.MTLSServerConfig(hosts)
			if err != nil {
				return nil, fmt.Errorf("mtls: %w", err)
			}
			mln = tls.NewListener(mln, mtc)
			opts = append(opts, emulator.WithClientCAs(ca.Pool()))
		}
		r.caFile = ca.CertFile()
	}
	if !cfg.Audit.Disabled {
		p := cfg.Audit.Path
		if p == "" && cfg.StateDir != "" {
			p = filepath.Join(cfg.StateDir, "audit.jsonl")
		}
		if p != "" {
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return nil, fmt.Errorf("audit.path: %w", err)
			}
			l, err := audit.Open(p, audit.Options{SyncInterval: cfg.Audit.SyncInterval})
			if err != nil {
				return nil, fmt.Errorf("audit.path %s: %w", p, err)
			}
			undo = append(undo, func() { l.Close() })
			r.auditLog, r.auditPth = l, p
			opts = append(opts, emulator.WithAuditor(l))
		}
	}
	ks, err := openKeyStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { ks.Close() })
	r.keys = ks
	opts = append(opts, emulator.WithKeyStore(ks.Store))
	srv, err := emulator.New(ctx, cfg, opts...)
	if err != nil {
		return nil, err
	}
	r.srv = srv
	r.url = cfg.PublicBaseURL
	r.adminURL = "http://" + cfg.AdminAddr
	r.public = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	r.admin = &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "agentsso: listening on %s://%s (public base %s)\n", scheme, cfg.Addr, cfg.PublicBaseURL)
	fmt.Fprintf(out, "agentsso: admin API on %s\n", r.adminURL)
	if mln != nil {
		fmt.Fprintf(out, "agentsso: mTLS endpoints (RFC 8705) on %s\n", cfg.MTLSBaseURL)
	}
	if r.caFile != "" {
		fmt.Fprintf(out, "agentsso: TLS CA certificate %s (give it to targets that must trust the issuer)\n", r.caFile)
	}
	var iss []string
	for _, t := range srv.Tenants() {
		iss = append(iss, t+"="+srv.Issuer(t))
	}
	fmt.Fprintf(out, "agentsso: issuers %s\n", strings.Join(iss, " "))
	fmt.Fprintf(out, "agentsso: keys in %s backend", srv.KeyBackend())
	if rt, ok := ks.Store.(*softhsm.Router); ok {
		var per []string
		for _, t := range srv.Tenants() {
			per = append(per, t+"="+rt.BackendOf(t))
		}
		fmt.Fprintf(out, " (%s)", strings.Join(per, " "))
	}
	for _, n := range ks.notes {
		fmt.Fprintf(out, "; %s", n)
	}
	if r.auditPth != "" {
		fmt.Fprintf(out, "; audit log %s", r.auditPth)
	}
	fmt.Fprintln(out)
	go func() { r.errc <- serveOn(r.public, ln) }()
	go func() { r.errc <- serveOn(r.admin, aln) }()
	if mln != nil {
		r.mtls = &http.Server{Handler: srv.MTLSHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { r.errc <- serveOn(r.mtls, mln) }()
	}
	return r, nil
}

func serveOn(s *http.Server, ln net.Listener) error {
	err := s.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// stop shuts the listeners down gracefully and syncs the audit log.
func (r *running) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := errors.Join(r.public.Shutdown(ctx), r.admin.Shutdown(ctx))
	if r.mtls != nil {
		err = errors.Join(err, r.mtls.Shutdown(ctx))
	}
	if r.auditLog != nil {
		err = errors.Join(err, r.auditLog.Close())
	}
	if r.keys != nil {
		err = errors.Join(err, r.keys.Close())
	}
	return err
}

func defaultYAML() []byte { return emulator.DefaultYAML() }
