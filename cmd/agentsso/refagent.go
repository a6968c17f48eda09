package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/conformance/refagent"
)

// newRefAgentCmd runs the reference agent (conformance/refagent) as a
// subprocess target: its inputs are the environment variables of
// docs/AGENTS.md, plus AGENTSSO_REFAGENT_FLAWS to switch flaws on. Hidden:
// it is a part of the harness, not a user command.
func newRefAgentCmd() *cobra.Command {
	var listFlaws bool
	cmd := &cobra.Command{
		Use:    "reference-agent [mcp-server-url]",
		Short:  "Run agentsso's reference agent against the servers named in the environment (docs/AGENTS.md)",
		Hidden: true,
		Args:   cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if listFlaws {
				for _, f := range refagent.Flaws() {
					fmt.Fprintf(cmd.OutOrStdout(), "%-24s %s (%s)\n", f.Name, f.Description, strings.Join(f.Scenarios, ", "))
				}
				return nil
			}
			env := refagent.Environ(os.Environ())
			// The MCP conformance suite's client runner passes the server
			// URL as the last argument.
			if len(args) == 1 && env["AGENTSSO_MCP_SERVERS"] == "" && env["AGENTSSO_MCP_SERVER_URL"] == "" {
				env["AGENTSSO_MCP_SERVER_URL"] = args[0]
			}
			if err := refagent.Run(cmd.Context(), env, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
				return exitError(1) // Run has said why on stderr
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&listFlaws, "list-flaws", false, "list the flaws AGENTSSO_REFAGENT_FLAWS can switch on, and exit")
	return cmd
}
