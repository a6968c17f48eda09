package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/refagent"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/tlsca"
	"github.com/agentsso/agentsso/scenarios"
)

func newDemoCmd() *cobra.Command {
	var out string
	var flaws []string
	var listFlaws bool
	var parallel int
	var agentFlaws []string
	var part string
	var slow bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole scenario catalogue against the reference gateway, in one process, and write the reports",
		Long: `demo starts the emulator (embedded default configuration), the reference gateway
(an MCP gateway that does every check right) and the harness in one process on free
127.0.0.1 ports, runs the whole catalogue, prints the summary and writes report.json,
report.xml, report.md and report.html into --out.

Then the agent part runs the agent catalogue against the reference agent (an MCP
client that does every check right), each scenario in a world of its own (emulator
tenant, fake MCP servers, fake model, browser shim), and writes its reports into
--out/agent. Scenarios tagged slow (30-second tokens) run only with --slow.

--flaw NAME turns one of the reference gateway's checks off, --agent-flaw NAME one of
the reference agent's, to show what a failing report looks like (--list-flaws names
them). --part gateway or --part agent runs one part. The exit status is that of
agentsso run: 0 when every part conforms, 1 when one does not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listFlaws {
				fmt.Fprintln(cmd.OutOrStdout(), "reference gateway (--flaw):")
				for _, f := range refgw.FlawCatalog {
					fmt.Fprintf(cmd.OutOrStdout(), "  %-26s %s\n", f.Name, f.Description)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "reference agent (--agent-flaw):")
				for _, f := range refagent.Flaws() {
					fmt.Fprintf(cmd.OutOrStdout(), "  %-26s %s\n", f.Name, f.Description)
				}
				return nil
			}
			if part != "all" && part != "gateway" && part != "agent" {
				return usageErrorExit(cmd.ErrOrStderr(), fmt.Errorf("--part %q: want all, gateway or agent", part))
			}
			if part == "agent" && len(flaws) > 0 {
				return usageErrorExit(cmd.ErrOrStderr(), errors.New("--flaw breaks the reference gateway, which --part agent does not run"))
			}
			if part == "gateway" && len(agentFlaws) > 0 {
				return usageErrorExit(cmd.ErrOrStderr(), errors.New("--agent-flaw breaks the reference agent, which --part gateway does not run"))
			}
			var gwErr, agErr error
			if part != "agent" {
				gwErr = runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), out, flaws, parallel)
				var ee exitError
				if gwErr != nil && !errors.As(gwErr, &ee) {
					return gwErr
				}
			}
			if part != "gateway" {
				_, agErr = runAgentDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), out, agentFlaws, slow, parallel)
			}
			if gwErr != nil {
				return gwErr
			}
			return agErr
		},
	}
	cmd.Flags().StringVar(&out, "out", "agentsso-demo-report", "directory for the reports")
	cmd.Flags().StringSliceVar(&flaws, "flaw", nil, "turn off a check of the reference gateway (repeatable; see --list-flaws)")
	cmd.Flags().BoolVar(&listFlaws, "list-flaws", false, "list the reference gateway's flaws and exit")
	cmd.Flags().IntVar(&parallel, "parallel", conformance.DefaultParallel, "scenarios run at once (1: one at a time); those that change shared state run alone")
	cmd.Flags().StringSliceVar(&agentFlaws, "agent-flaw", nil, "switch on a flaw of the reference agent (repeatable; see --list-flaws)")
	cmd.Flags().StringVar(&part, "part", "all", "which part to run: all, gateway or agent")
	cmd.Flags().BoolVar(&slow, "slow", false, "also run the agent scenarios tagged slow (they wait on 30-second tokens)")
	return cmd
}

func runDemo(ctx context.Context, out, progress io.Writer, dir string, flawNames []string, parallel int) error {
	flaws, err := refgw.ParseFlaws(flawNames...)
	if err != nil {
		return usageErrorExit(progress, err)
	}
	if parallel < 1 {
		return usageErrorExit(progress, fmt.Errorf("--parallel %d: want 1 (one scenario at a time) or more", parallel))
	}
	cfg := emulator.DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	tmp, err := os.MkdirTemp("", "agentsso-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r, err := start(ctx, cfg, io.Discard)
	if err != nil {
		return err
	}
	defer r.stop()
	// The reference gateway serves HTTPS and checks client certificates
	// (mtls) of a CA that also issues the harness's.
	ca, err := tlsca.LoadOrCreate(filepath.Join(tmp, "tls"))
	if err != nil {
		return err
	}
	gw, err := reference.Start(reference.Options{IdPURL: r.url, Dir: tmp, Flaws: flaws, CA: ca})
	if err != nil {
		return err
	}
	defer gw.Close()
	cs, err := loadCatalogue(nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "agentsso demo: emulator %s, reference gateway %s", r.url, gw.Target.URL)
	if len(flawNames) > 0 {
		fmt.Fprintf(out, " with flaw(s) %s", strings.Join(flawNames, ", "))
	}
	n := 0
	for _, s := range cs.Scenarios {
		if slices.Contains(s.Kinds, gw.Target.Kind) {
			n++
		}
	}
	fmt.Fprintf(out, "\nrunning %d scenarios, up to %d at a time\n\n", n, parallel)
	runner := &conformance.Runner{
		IdP:       &conformance.IdP{URL: r.url, AdminURL: r.adminURL},
		Target:    gw.Target,
		Catalogue: cs,
		Opts:      conformance.Options{Progress: progress, Live: isTerminal(progress), Version: version, CatalogueVersion: scenarios.Version, ClientCA: ca, Parallel: parallel},
	}
	rep, err := runner.Run(ctx)
	if err != nil {
		return err
	}
	return writeReports(out, dir, rep)
}

func usageErrorExit(w io.Writer, err error) error {
	fmt.Fprintln(w, "agentsso:", err)
	return exitError(2)
}
