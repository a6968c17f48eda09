package refagent_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/refagent"
	"github.com/agentsso/agentsso/conformance/report"
	"github.com/agentsso/agentsso/internal/parts"
	"github.com/agentsso/agentsso/scenarios"
	"github.com/agentsso/agentsso/softhsm"
)

// agentFeatures are what the reference agent declares.
var agentFeatures = []string{"authorization-code", "client-credentials", "private-key-jwt", "oidc", "dynamic-registration", "dpop", "token-exchange", "https"}

func runAgentCatalogue(t *testing.T, flaws string, only ...string) *conformance.Report {
	t.Helper()
	cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	features := append([]string(nil), agentFeatures...)
	if softhsm.SoftHSM2Available() {
		features = append(features, "pkcs11-key")
	} else if parts.Strict() {
		t.Fatal("SoftHSM2 is missing (apt-get install softhsm2): the agent's PKCS#11 key variant cannot run")
	}
	target := &conformance.Target{Kind: "agent", Name: "reference agent", Features: features}
	if err := target.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &conformance.Runner{Target: target, Catalogue: cs, Opts: conformance.Options{
		Only: only, Version: "test", Parallel: 8,
		AgentOptions: conformance.AgentOptions{
			Agent: refagent.Run,
			AgentEnv: func(_ string, env map[string]string) {
				if flaws != "" {
					env["AGENTSSO_REFAGENT_FLAWS"] = flaws
				}
			},
		},
	}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestReferenceAgentPasses: every agent scenario passes on the reference
// agent with no flaw switched on.
func TestReferenceAgentPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("the agent catalogue waits on 30-second tokens; run without -short")
	}
	rep := runAgentCatalogue(t, "")
	if len(rep.Results) < 17 {
		t.Fatalf("only %d agent scenarios ran", len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Status != conformance.StatusPass {
			t.Errorf("%s: %s: %s", r.ID, r.Status, r.Reason)
			t.Log(report.Text(&r))
		}
	}
	if rep.ExitCode() != 0 {
		t.Errorf("exit code %d: %s", rep.ExitCode(), rep.VerdictReason)
	}
}

// TestAgentNegativeControls: each flaw of the reference agent makes the
// scenarios it breaks fail (or warn, for a SHOULD), never pass.
func TestAgentNegativeControls(t *testing.T) {
	if testing.Short() {
		t.Skip("the agent catalogue waits on 30-second tokens; run without -short")
	}
	covered := map[string]bool{}
	for _, f := range refagent.Flaws() {
		for _, id := range f.Scenarios {
			covered[id] = true
		}
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			rep := runAgentCatalogue(t, f.Name, f.Scenarios...)
			for _, id := range f.Scenarios {
				var got *conformance.Result
				for i := range rep.Results {
					if rep.Results[i].ID == id {
						got = &rep.Results[i]
					}
				}
				if got == nil {
					t.Errorf("%s did not run", id)
					continue
				}
				if got.Status != conformance.StatusFail && got.Status != conformance.StatusWarn {
					t.Errorf("with flaw %s, %s is %s (want fail or warn): %s", f.Name, id, got.Status, got.Reason)
					t.Log(report.Text(got))
				}
			}
		})
	}
	cs, _ := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	for _, s := range cs.Scenarios {
		if strings.HasPrefix(s.ID, "agent-") && s.ID != conformance.AgentBaselineID && !covered[s.ID] {
			t.Errorf("agent scenario %s has no negative control: no reference agent flaw names it", s.ID)
		}
	}
}
