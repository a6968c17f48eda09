package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/report"
	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/tlsca"
	"github.com/agentsso/agentsso/scenarios"
)

// usageError exits with status 2: bad flags, configuration or input.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

type runFlags struct {
	serve                               serveFlags
	tgt                                 conformance.Target
	features                            []string
	target, out, idp, adminURL, expfile string
	adminToken                          string
	only, skip, scenarioDirs            []string
	strict, printConfig                 bool
	parallel                            int
	reqTimeout, runTimeout, pollBound   time.Duration
	agent                               agentFlags
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --target FILE",
		Short: "Run the scenario catalogue against a gateway or resource server and write reports",
		Long: `run judges a target (a gateway or an MCP/resource server, described in a target file,
see docs/TARGETS.md) against the scenario catalogue and writes report.json, report.xml
(JUnit), report.md and report.html into --out.

The target must trust an emulator tenant. By default run starts its own emulator on
127.0.0.1:8080 (admin 127.0.0.1:8081) with the state directory .agentsso, so issuer,
keys and secrets stay the same from run to run; --idp and --admin-url use one that runs
already. Before the first scenario it prints what the target must be configured with;
--print-config prints only that and exits.

Exit status: 0 when rs-baseline-control passed and every applicable MUST held (or is an
expected failure); 1 otherwise; 2 for usage or configuration errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runRun(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
			var ue usageError
			if errors.As(err, &ue) {
				fmt.Fprintln(cmd.ErrOrStderr(), "agentsso:", ue.error)
				return exitError(2)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "target file (YAML): kind, url, audience, tenant, scope, features, upstream …")
	fl.StringVar(&f.out, "out", "agentsso-report", "directory for report.json, report.xml, report.md, report.html")
	fl.StringVar(&f.idp, "idp", "", "public base URL of a running emulator (default: start one)")
	fl.StringVar(&f.adminURL, "admin-url", "", "admin API URL of the running emulator given by --idp")
	fl.StringVar(&f.adminToken, "admin-token", "", "admin API token (or AGENTSSO_ADMIN_TOKEN)")
	fl.StringSliceVar(&f.only, "only", nil, "run only these scenario ids or tags (comma-separated)")
	fl.StringSliceVar(&f.skip, "skip", nil, "skip these scenario ids or tags")
	fl.StringSliceVar(&f.scenarioDirs, "scenarios", nil, "extra scenario directories (YAML files), after the embedded catalogue")
	fl.StringVar(&f.expfile, "expected-failures", "", "YAML map of scenario id to reason: known gaps that do not fail the run")
	fl.BoolVar(&f.strict, "strict", false, "a failed SHOULD fails the run")
	fl.BoolVar(&f.printConfig, "print-config", false, "print what the target must be configured with, and exit")
	fl.IntVar(&f.parallel, "parallel", conformance.DefaultParallel, "scenarios run at once (1: one at a time); those that change shared state run alone")
	fl.DurationVar(&f.reqTimeout, "request-timeout", 5*time.Second, "timeout of each request to the target")
	fl.DurationVar(&f.runTimeout, "timeout", 10*time.Minute, "timeout of the whole run")
	fl.DurationVar(&f.pollBound, "poll-bound", 30*time.Second, "how long a scenario waits on the target's own behaviour (revocation, key rotation)")
	fl.StringVar(&f.tgt.URL, "target-url", "", "the protected URL (instead of, or overriding, the target file)")
	fl.StringVar(&f.tgt.Kind, "kind", "", "target kind: gateway, resource-server or agent")
	fl.StringVar(&f.tgt.Protocol, "protocol", "", "mcp or http")
	fl.StringVar(&f.tgt.Tool, "tool", "", "MCP tool to call")
	fl.StringVar(&f.tgt.Audience, "audience", "", "audience the target answers to")
	fl.StringVar(&f.tgt.Tenant, "tenant", "", "emulator tenant the target trusts")
	fl.StringVar(&f.tgt.Scope, "scope", "", "scope the call requires")
	fl.StringSliceVar(&f.features, "features", nil, "features the target declares (comma-separated)")
	fl.StringVar(&f.tgt.Upstream, "upstream", "", "gateway: HOST:PORT it forwards to (the harness listens there)")
	fl.StringVar(&f.tgt.Zone, "zone", "", "context-binding: the target's zone")
	f.agent.register(fl)
	f.serve.register(cmd)
	return cmd
}

// targetOverrides applies the target flags on top of the file's values.
func (f *runFlags) targetOverrides(t *conformance.Target) {
	o := f.tgt
	for _, p := range []struct {
		dst *string
		v   string
	}{
		{&t.URL, o.URL}, {&t.Kind, o.Kind}, {&t.Protocol, o.Protocol}, {&t.Tool, o.Tool}, {&t.Audience, o.Audience},
		{&t.Tenant, o.Tenant}, {&t.Scope, o.Scope}, {&t.Upstream, o.Upstream}, {&t.Zone, o.Zone},
	} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	if len(f.features) > 0 {
		t.Features = f.features
	}
}

// loadCatalogue loads the embedded catalogue and the user's directories.
func loadCatalogue(dirs []string) (*conformance.CatalogueSet, error) {
	src := map[string]fs.FS{"scenarios": scenarios.FS()}
	order := []string{"scenarios"}
	for _, d := range dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return nil, usageError{fmt.Errorf("--scenarios %s: not a directory", d)}
		}
		src[d] = os.DirFS(d)
		order = append(order, d)
	}
	cs, err := conformance.Load(src, order)
	if err != nil {
		return nil, usageError{fmt.Errorf("scenario catalogue:\n%w", indent(err))}
	}
	return cs, nil
}

func runRun(ctx context.Context, out, progress io.Writer, f runFlags) error {
	var target *conformance.Target
	switch {
	case f.target != "":
		b, err := os.ReadFile(f.target)
		if err != nil {
			return usageError{fmt.Errorf("--target: %w", err)}
		}
		if target, err = conformance.ParseTarget(f.target, b); err != nil {
			return usageError{err}
		}
		f.targetOverrides(target)
		if err := target.Validate(); err != nil {
			return usageError{err}
		}
	case f.tgt.Kind == "agent":
		target = &conformance.Target{}
		f.targetOverrides(target)
		if err := f.agent.apply(target); err != nil {
			return usageError{err}
		}
		if err := target.Validate(); err != nil {
			return usageError{fmt.Errorf("target flags: %w", err)}
		}
	case f.tgt.URL != "":
		target = &conformance.Target{}
		f.targetOverrides(target)
		if err := target.Validate(); err != nil {
			return usageError{fmt.Errorf("target flags: %w", err)}
		}
	case !f.printConfig:
		return usageError{errors.New("describe the target with --target FILE or --target-url and the other target flags (see docs/TARGETS.md; `agentsso demo` runs against the reference gateway)")}
	}
	if f.parallel < 1 {
		return usageError{fmt.Errorf("--parallel %d: want 1 (one scenario at a time) or more", f.parallel)}
	}
	cs, err := loadCatalogue(f.scenarioDirs)
	if err != nil {
		return err
	}
	expected := map[string]string{}
	if f.expfile != "" {
		b, err := os.ReadFile(f.expfile)
		if err != nil {
			return usageError{fmt.Errorf("--expected-failures: %w", err)}
		}
		if err := yaml.Unmarshal(b, &expected); err != nil {
			return usageError{fmt.Errorf("--expected-failures %s: want a YAML map of scenario id to reason: %w", f.expfile, err)}
		}
		for id := range expected {
			if cs.Find(id) == nil {
				return usageError{fmt.Errorf("--expected-failures %s: no scenario %q", f.expfile, id)}
			}
		}
	}
	if target != nil && target.Kind == "agent" {
		return runAgentTarget(ctx, out, progress, f, target, cs, expected)
	}
	if f.adminToken == "" {
		f.adminToken = os.Getenv("AGENTSSO_ADMIN_TOKEN")
	}
	idp := &conformance.IdP{URL: f.idp, AdminURL: f.adminURL, AdminToken: f.adminToken}
	var srv *emulator.Server
	caFile := ""
	stateDir := f.serve.stateDir
	if f.idp == "" {
		if f.serve.addr == "" {
			f.serve.addr = "127.0.0.1:8080"
		}
		if f.serve.adminAddr == "" {
			f.serve.adminAddr = "127.0.0.1:8081"
		}
		if f.serve.stateDir == "" {
			f.serve.stateDir = ".agentsso"
		}
		cfg, _, err := f.serve.load()
		if err != nil {
			return usageError{err}
		}
		r, err := start(ctx, cfg, io.Discard)
		if err != nil {
			return err
		}
		defer r.stop()
		srv, caFile = r.srv, r.caFile
		stateDir = cfg.StateDir
		idp.URL, idp.AdminURL = r.url, r.adminURL
	} else if f.adminURL == "" {
		return usageError{errors.New("--idp needs --admin-url: the harness mints, revokes and rotates through the admin API")}
	}
	// mtls: the harness's client certificates come from the local CA of
	// the state directory, the one `agentsso serve --tls` uses.
	var clientCA *tlsca.CA
	if target != nil && target.Has("mtls") {
		if stateDir == "" {
			stateDir = ".agentsso"
		}
		if clientCA, err = tlsca.LoadOrCreate(filepath.Join(stateDir, "tls")); err != nil {
			return usageError{fmt.Errorf("client CA for mtls (--state-dir): %w", err)}
		}
	}
	printTargetConfig(out, idp, srv, target, caFile, clientCA)
	if f.printConfig {
		return nil
	}
	opts := conformance.Options{
		Only: f.only, Skip: f.skip, Strict: f.strict, RequestTimeout: f.reqTimeout, RunTimeout: f.runTimeout,
		PollBound: f.pollBound, Expected: expected, Progress: progress, Live: isTerminal(progress), Version: version, CatalogueVersion: scenarios.Version,
		Parallel: f.parallel,
	}
	if clientCA != nil {
		opts.ClientCA = clientCA
	}
	runner := &conformance.Runner{IdP: idp, Target: target, Catalogue: cs, Opts: opts}
	rep, err := runner.Run(ctx)
	if err != nil {
		return err
	}
	return writeReports(out, f.out, rep)
}

func writeReports(out io.Writer, dir string, rep *conformance.Report) error {
	paths, err := report.WriteAll(dir, rep)
	if err != nil {
		return err
	}
	s := rep.Summary
	fmt.Fprintf(out, "\n%s: %d scenarios in %.1f s: %d pass, %d fail, %d warn, %d skip, %d error\n", strings.ToUpper(rep.Verdict), s.Total, rep.Duration.Seconds(), s.Pass, s.Fail, s.Warn, s.Skip, s.Error)
	fmt.Fprintf(out, "%s\n", rep.VerdictReason)
	fmt.Fprintf(out, "reports: %s\n", strings.Join(paths, " "))
	if rep.ExitCode() != 0 {
		return exitError(rep.ExitCode())
	}
	return nil
}

// printTargetConfig says what the target must be configured with.
func printTargetConfig(w io.Writer, idp *conformance.IdP, srv *emulator.Server, t *conformance.Target, caFile string, clientCA *tlsca.CA) {
	tenant := "acme"
	if t != nil {
		tenant = t.Tenant
	}
	iss := idp.Issuer(tenant)
	fmt.Fprintf(w, "Configure the target with:\n")
	fmt.Fprintf(w, "  issuer             %s\n", iss)
	fmt.Fprintf(w, "  discovery          %s/.well-known/openid-configuration\n", iss)
	fmt.Fprintf(w, "  jwks_uri           %s/jwks\n", iss)
	fmt.Fprintf(w, "  introspection      %s/introspect\n", iss)
	fmt.Fprintf(w, "  token endpoint     %s/token   (token exchange for the upstream)\n", iss)
	if srv != nil {
		for _, c := range gatewayClients(srv, tenant) {
			fmt.Fprintf(w, "  client             %s / %s   (the target's own client: introspection, token exchange)\n", c[0], c[1])
		}
	}
	if caFile != "" {
		fmt.Fprintf(w, "  CA file            %s\n", filepath.Clean(caFile))
	}
	if clientCA != nil {
		fmt.Fprintf(w, "  client CA          %s   (mtls: verify client certificates against it; the harness presents certificates it issued)\n", filepath.Clean(clientCA.CertFile()))
		fmt.Fprintf(w, "  server certificate issued by the client CA, a system root or the target file's tls.ca_file\n")
	}
	if t != nil {
		if t.Kind == "gateway" {
			fmt.Fprintf(w, "  upstream           http://%s   (the harness listens there as the upstream API)\n", t.Upstream)
		}
		fmt.Fprintf(w, "  audience           %s\n", t.Audience)
		if t.Audit != nil && t.Audit.Webhook != "" {
			fmt.Fprintf(w, "  audit webhook      %s   (POST each decision's record as JSON: one per request, an array, or JSON lines)\n", conformance.WebhookURL(t.Audit.Webhook))
		}
	}
	fmt.Fprintln(w)
}

// gatewayClients lists the tenant's clients of kind gateway with secrets.
func gatewayClients(srv *emulator.Server, tenant string) [][2]string {
	cs, err := srv.Clients(tenant)
	if err != nil {
		return nil
	}
	var out [][2]string
	for _, c := range cs {
		if c.Kind == "gateway" {
			sec, _ := srv.ClientSecret(tenant, c.ID)
			out = append(out, [2]string{c.ID, sec})
		}
	}
	return out
}

func newScenariosCmd() *cobra.Command {
	var dirs []string
	cmd := &cobra.Command{Use: "scenarios", Short: "List and show the scenario catalogue"}
	cmd.PersistentFlags().StringSliceVar(&dirs, "scenarios", nil, "extra scenario directories")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the scenarios: id, severity, title, target kinds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := loadCatalogue(dirs)
			if err != nil {
				return err
			}
			for _, s := range cs.Scenarios {
				fmt.Fprintf(cmd.OutOrStdout(), "%-28s %-16s %s\n", s.ID, s.Severity, s.Title)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%d scenarios, catalogue %s (%s)\n", len(cs.Scenarios), scenarios.Version, cs.Hash()[:12])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show ID",
		Short: "Show one scenario: its file, sources and steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := loadCatalogue(dirs)
			if err != nil {
				return err
			}
			s := cs.Find(args[0])
			if s == nil {
				return usageError{fmt.Errorf("no scenario %q (agentsso scenarios list)", args[0])}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# %s\n", s.File)
			b, err := fs.ReadFile(scenarios.FS(), filepath.Base(s.File))
			if err != nil {
				b, err = os.ReadFile(s.File)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "mutations",
		Short: "List the named token mutations scenario steps can use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, m := range conformance.MutationDocs() {
				fmt.Fprintf(cmd.OutOrStdout(), "%-20s %s\n", m[0], m[1])
			}
			return nil
		},
	})
	return cmd
}

func newReportCmd() *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "report FILE.json",
		Short: "Render a report.json again as html, md, junit or json",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return usageError{err}
			}
			defer f.Close()
			rep, err := report.ReadJSON(f)
			if err != nil {
				return usageError{fmt.Errorf("%s: %w", args[0], err)}
			}
			w := cmd.OutOrStdout()
			if out != "" {
				of, err := os.Create(out)
				if err != nil {
					return err
				}
				defer of.Close()
				w = of
			}
			if err := report.Render(w, format, rep); err != nil {
				return usageError{err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "md", "html, md, junit or json")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// isTerminal reports whether w is an interactive terminal and not a CI
// log (CI=true is set by GitHub Actions, GitLab CI and most others).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("CI") != "" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
