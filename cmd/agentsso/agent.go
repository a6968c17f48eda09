package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-shellwords"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/refagent"
	"github.com/agentsso/agentsso/scenarios"
	"github.com/agentsso/agentsso/softhsm"
)

// agentFlags are run's flags for agent targets.
type agentFlags struct {
	command    string
	reference  bool
	flaws      []string
	timeout    time.Duration
	attach     bool
	attachFile string
}

func (a *agentFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&a.command, "agent-command", "", "agent: the command that runs the agent once per scenario (shell words; instead of command: in the target file)")
	fl.BoolVar(&a.reference, "reference-agent", false, "agent: judge agentsso's reference agent, run in process (with --agent-flaw to break it)")
	fl.StringSliceVar(&a.flaws, "agent-flaw", nil, "agent: switch on a flaw of the reference agent (repeatable; `agentsso reference-agent --list-flaws`)")
	fl.DurationVar(&a.timeout, "agent-timeout", 60*time.Second, "agent: how long one run of the agent may take (plus the scenario's scripted model delays)")
	fl.BoolVar(&a.attach, "attach", false, "agent: the agent runs already; print each scenario run's variables and wait for its task (set --agent-timeout generously)")
	fl.StringVar(&a.attachFile, "attach-file", "", "agent, with --attach: also write each run's variables to this file (KEY=value lines)")
}

// apply puts --agent-command into the target.
func (a *agentFlags) apply(t *conformance.Target) error {
	if a.attach {
		t.Attach = true
	}
	if a.attachFile != "" && !t.Attach {
		return errors.New("--attach-file goes with --attach (or attach: true in the target file)")
	}
	if a.command == "" {
		return nil
	}
	words, err := shellwords.Parse(a.command)
	if err != nil || len(words) == 0 {
		return fmt.Errorf("--agent-command %q: want a command line such as \"node agent.js\"", a.command)
	}
	t.Command = words
	return nil
}

// runAgentTarget judges an agent: each scenario builds its own world (an
// in-process emulator tenant, fake MCP servers, a fake model, a browser
// shim) and launches the agent into it.
func runAgentTarget(ctx context.Context, out, progress io.Writer, f runFlags, target *conformance.Target, cs *conformance.CatalogueSet, expected map[string]string) error {
	if err := f.agent.apply(target); err != nil {
		return usageError{err}
	}
	if f.idp != "" || f.adminURL != "" {
		return usageError{errors.New("--idp/--admin-url: an agent is judged against worlds the harness builds per scenario (its own emulator included); leave them out")}
	}
	opts := conformance.Options{
		Only: f.only, Skip: f.skip, Strict: f.strict, RunTimeout: f.runTimeout, Expected: expected,
		Progress: progress, Version: version, CatalogueVersion: scenarios.Version, Parallel: f.parallel,
	}
	opts.AgentTimeout = f.agent.timeout
	if err := agentOptions(&opts.AgentOptions, target, f.agent); err != nil {
		return usageError{err}
	}
	if target.Attach {
		opts.AttachOut, opts.AttachFile = out, f.agent.attachFile
	}
	fmt.Fprintf(out, "agentsso: judging agent %s\n", describeAgent(target, f.agent))
	fmt.Fprintln(out, "each scenario builds its own world on 127.0.0.1 (emulator tenant, fake MCP servers, fake model, browser shim)")
	fmt.Fprintln(out, "and starts the agent with the variables of docs/AGENTS.md.")
	if f.printConfig {
		fmt.Fprintln(out, "\nvariables: AGENTSSO_SCENARIO AGENTSSO_TASK AGENTSSO_ISSUER AGENTSSO_GRANT AGENTSSO_CLIENT_ID AGENTSSO_CLIENT_AUTH")
		fmt.Fprintln(out, "  AGENTSSO_CLIENT_SECRET | AGENTSSO_CLIENT_KEY_FILE | AGENTSSO_CLIENT_KEY_PKCS11_URI (+ _ID, _ALG)\n  AGENTSSO_REDIRECT_URI AGENTSSO_BROWSER_URL BROWSER AGENTSSO_CA_FILE (HTTPS worlds)")
		fmt.Fprintln(out, "  AGENTSSO_MCP_SERVERS AGENTSSO_MCP_SERVER_URL AGENTSSO_USER_TOKEN AGENTSSO_MODEL_URL OPENAI_BASE_URL OPENAI_API_KEY")
		fmt.Fprintln(out, "  ANTHROPIC_BASE_URL ANTHROPIC_API_KEY MCP_CONFORMANCE_SCENARIO MCP_CONFORMANCE_CONTEXT")
		return nil
	}
	fmt.Fprintln(out)
	runner := &conformance.Runner{Target: target, Catalogue: cs, Opts: opts}
	rep, err := runner.Run(ctx)
	if err != nil {
		return err
	}
	return writeReports(out, f.out, rep)
}

// agentOptions wires the agent: the reference agent in process, or the
// target's command as a subprocess with this process's environment.
func agentOptions(o *conformance.AgentOptions, target *conformance.Target, a agentFlags) error {
	if len(a.flaws) > 0 && !a.reference {
		return errors.New("--agent-flaw breaks the reference agent: add --reference-agent")
	}
	if _, err := refagent.ParseFlaws(strings.Join(a.flaws, ",")); err != nil {
		return fmt.Errorf("--agent-flaw: %w", err)
	}
	switch {
	case target.Attach:
		if a.reference {
			return errors.New("--reference-agent runs in process; it cannot be attached")
		}
	case a.reference && len(target.Command) > 0:
		return errors.New("--reference-agent: the target already names a command; use one or the other")
	case a.reference:
		o.Agent = refagent.Run
		if len(a.flaws) > 0 {
			list := strings.Join(a.flaws, ",")
			o.AgentEnv = func(_ string, env map[string]string) { env["AGENTSSO_REFAGENT_FLAWS"] = list }
		}
		if len(target.Features) == 0 {
			target.Features = append([]string(nil), referenceAgentFeatures...)
			if softhsm.SoftHSM2Available() {
				target.Features = append(target.Features, "pkcs11-key")
			}
		}
		if target.Name == "" || target.Name == "agent" {
			target.Name = "agentsso reference agent"
		}
	case len(target.Command) > 0:
		o.BaseEnv = os.Environ()
		if exe, err := os.Executable(); err == nil {
			o.BrowserCommand = exe + " browse"
		}
	default:
		return errors.New("an agent target needs command: in the target file, --agent-command, --attach (an agent that runs already), or --reference-agent (see docs/AGENTS.md)")
	}
	return nil
}

// referenceAgentFeatures is what the reference agent declares.
var referenceAgentFeatures = []string{"authorization-code", "client-credentials", "private-key-jwt", "oidc", "dynamic-registration", "dpop", "token-exchange", "https"}

func describeAgent(t *conformance.Target, a agentFlags) string {
	s := t.Name
	if len(t.Command) > 0 {
		s = strings.Join(t.Command, " ")
	}
	if len(a.flaws) > 0 {
		s += " with flaw(s) " + strings.Join(a.flaws, ", ")
	}
	if len(t.Features) > 0 {
		s += " (features: " + strings.Join(t.Features, ", ") + ")"
	}
	return s
}

// newBrowseCmd is the BROWSER command the harness gives an agent: it
// hands an authorization URL to the browser shim of the scenario's world.
func newBrowseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "browse URL",
		Short: "Open an authorization URL in the harness's browser shim (the BROWSER of an agent under test)",
		Long: `browse hands URL to the browser shim named by AGENTSSO_BROWSER_URL: its user signs in,
consents, and the authorization response is delivered to the agent's redirect URI.
agentsso sets BROWSER to this command for an agent it runs (docs/AGENTS.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			shim := os.Getenv("AGENTSSO_BROWSER_URL")
			if shim == "" {
				return usageErrorExit(cmd.ErrOrStderr(), errors.New("AGENTSSO_BROWSER_URL is not set: browse runs inside an agentsso agent scenario"))
			}
			c := &http.Client{Timeout: 20 * time.Second}
			resp, err := c.Get(shim + "?url=" + url.QueryEscape(args[0]))
			if err != nil {
				return fmt.Errorf("browse: %w", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				fmt.Fprintf(cmd.ErrOrStderr(), "agentsso browse: the browser shim answered %d: %s\n", resp.StatusCode, strings.TrimSpace(string(b)))
				return exitError(1)
			}
			return nil
		},
	}
}

// runAgentDemo is demo's agent part: the agent catalogue against the
// reference agent, reports in dir/agent.
func runAgentDemo(ctx context.Context, out, progress io.Writer, dir string, flaws []string, slow bool, parallel int) (*conformance.Report, error) {
	cs, err := loadCatalogue(nil)
	if err != nil {
		return nil, err
	}
	target := &conformance.Target{Kind: "agent"}
	if err := target.Validate(); err != nil {
		return nil, err
	}
	opts := conformance.Options{Progress: progress, Version: version, CatalogueVersion: scenarios.Version, Parallel: parallel}
	if err := agentOptions(&opts.AgentOptions, target, agentFlags{reference: true, flaws: flaws}); err != nil {
		return nil, usageErrorExit(progress, err)
	}
	if !slow {
		opts.Skip = []string{"slow"}
	}
	n := 0
	for _, s := range cs.Scenarios {
		if s.Agent != nil {
			n++
		}
	}
	fmt.Fprintf(out, "\nagent part: the reference agent")
	if len(flaws) > 0 {
		fmt.Fprintf(out, " with flaw(s) %s", strings.Join(flaws, ", "))
	}
	fmt.Fprintf(out, " against %d agent scenarios", n)
	if !slow {
		fmt.Fprintf(out, " (those tagged slow skipped: --slow runs them)")
	}
	fmt.Fprintln(out)
	runner := &conformance.Runner{Target: target, Catalogue: cs, Opts: opts}
	rep, err := runner.Run(ctx)
	if err != nil {
		return nil, err
	}
	return rep, writeReports(out, filepath.Join(dir, "agent"), rep)
}
