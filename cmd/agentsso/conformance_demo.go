package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/scenarios"
)

func newDemoCmd() *cobra.Command {
	var out string
	var flaws []string
	var listFlaws bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole scenario catalogue against the reference gateway, in one process, and write the reports",
		Long: `demo starts the emulator (embedded default configuration), the reference gateway
(an MCP gateway that does every check right) and the harness in one process on free
127.0.0.1 ports, runs the whole catalogue, prints the summary and writes report.json,
report.xml, report.md and report.html into --out.

--flaw NAME turns one of the reference gateway's checks off, to show what a failing
report looks like (--list-flaws names them). The exit status is that of agentsso run:
0 when the target conforms, 1 when it does not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listFlaws {
				for _, f := range refgw.FlawCatalog {
					fmt.Fprintf(cmd.OutOrStdout(), "%-26s %s\n", f.Name, f.Description)
				}
				return nil
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), out, flaws)
		},
	}
	cmd.Flags().StringVar(&out, "out", "agentsso-demo-report", "directory for the reports")
	cmd.Flags().StringSliceVar(&flaws, "flaw", nil, "turn off a check of the reference gateway (repeatable; see --list-flaws)")
	cmd.Flags().BoolVar(&listFlaws, "list-flaws", false, "list the reference gateway's flaws and exit")
	return cmd
}

func runDemo(ctx context.Context, out, progress io.Writer, dir string, flawNames []string) error {
	flaws, err := refgw.ParseFlaws(flawNames...)
	if err != nil {
		return usageErrorExit(progress, err)
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
	gw, err := reference.Start(reference.Options{IdPURL: r.url, Dir: tmp, Flaws: flaws})
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
	fmt.Fprintf(out, "\nrunning %d scenarios\n\n", len(cs.Scenarios))
	runner := &conformance.Runner{
		IdP:       &conformance.IdP{URL: r.url, AdminURL: r.adminURL},
		Target:    gw.Target,
		Catalogue: cs,
		Opts:      conformance.Options{Progress: progress, Live: isTerminal(progress), Version: version, CatalogueVersion: scenarios.Version},
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
