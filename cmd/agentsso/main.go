// Command agentsso is a local emulator and conformance harness for the
// identity of AI agents.
//
//	agentsso demo      # emulator + reference gateway + the whole scenario catalogue, with reports
//	agentsso tour      # the emulator on the embedded default, walked through the agent flows
//	agentsso serve     # the multi-tenant IdP with its admin API
//	agentsso run       # the scenario catalogue against your gateway or resource server
//	agentsso env       # the environment variables agentsso reads
//	agentsso config    # print or check a configuration
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "agentsso:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a status and no further message.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "agentsso",
		Short:         "Local emulator and conformance harness for the identity of AI agents",
		Long:          "agentsso emulates a multi-tenant OAuth 2.1 / OpenID Connect identity provider for agents,\nwith the test controls a real one lacks (virtual clocks, minting, key games, faults, audit).",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newDemoCmd(), newTourCmd(), newRunCmd(), newScenariosCmd(), newReportCmd(), newLoadCmd(), newKeysCmd(), newEnvCmd(), newConfigCmd(), newHealthcheckCmd(), newRefAgentCmd(), newBrowseCmd())
	return root
}

func newEnvCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "env",
		Short: "List the environment variables agentsso reads, with their current values (secrets masked)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			for _, e := range envVars {
				val, set := os.LookupEnv(e.Name)
				shown := "(unset)"
				if set {
					shown = val
					if e.Sensitive {
						shown = "(set, hidden)"
					}
				}
				fmt.Fprintf(w, "%-34s %s\n    %s", e.Name, shown, e.Help)
				if e.Sensitive {
					fmt.Fprintf(w, "; also read from %s_FILE", e.Name)
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
}

func newConfigCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the embedded default configuration, or check a configuration file",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the embedded default configuration (YAML), a starting point for your own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(defaultYAML())
			return err
		},
	})
	check := &cobra.Command{
		Use:   "check",
		Short: "Load a configuration (file, then AGENTSSO_* variables) and report every error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, source, err := loadConfig(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d tenants)\n", source, len(cfg.Tenants))
			return nil
		},
	}
	check.Flags().StringVar(&file, "config", "", "configuration file (YAML); default: $AGENTSSO_CONFIG or the embedded default")
	cmd.AddCommand(check)
	return cmd
}
