package conformance

import (
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance/agentlab"
)

const goodAgentScenario = `id: agent-x
title: t
kinds: [agent]
severity: MUST
refs: [{id: RFC1}]
agent:
  setup:
    task: [{tool: notes_read}]
    rs: {rs1: {reject: [2]}}
  variants:
    - name: a
      setup: {rs: {rs1: {revoke_after: 1}}, access_token_lifetime: 30s}
      expect: [{check: task_completed}]
    - name: b
      requires: dpop
      setup: {dpop: {rs_nonce: true}}
      expect: [{check: dpop_proofs, severity: SHOULD}]
`

func TestParseAgentScenario(t *testing.T) {
	s, err := ParseScenario("a.yaml", []byte(goodAgentScenario))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Depends) != 1 || s.Depends[0] != AgentBaselineID {
		t.Errorf("depends %v, want the agent baseline", s.Depends)
	}
	runs, err := s.Agent.runs()
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	// Variant setups merge over the scenario's, key by key.
	a := runs[0].spec
	if a.RS["rs1"].RevokeAfter != 1 || len(a.RS["rs1"].Reject) != 1 || time.Duration(a.AccessTokenLifetime) != 30*time.Second || len(a.Task) != 1 {
		t.Errorf("merged setup: %+v", a)
	}
	if runs[1].requires != "dpop" || runs[1].spec.DPoP == nil || !runs[1].spec.DPoP.RSNonce {
		t.Errorf("variant b: %+v", runs[1])
	}
}

// TestAgentScenarioErrors: a broken agent section names the field.
func TestAgentScenarioErrors(t *testing.T) {
	head := "id: agent-x\ntitle: t\nkinds: [agent]\nseverity: MUST\nrefs: [{id: R}]\n"
	for _, c := range []struct{ body, want string }{
		{"agent:\n  setup: {grant: implicit}\n  expect: [{check: task_completed}]\n", "grant"},
		{"agent:\n  setup: {task: [{tool: rm_rf}]}\n  expect: [{check: task_completed}]\n", "rm_rf"},
		{"agent:\n  expect: [{check: vibes}]\n", "vibes"},
		{"agent:\n  setup: {warp: 9}\n  expect: [{check: task_completed}]\n", "a.yaml:7: agent.setup.warp: unknown field (known: grant,"},
		{"agent:\n  setup:\n    rs: {rs1: {reject: x}}\n  expect: [{check: task_completed}]\n", "line 8: cannot unmarshal"},
		{"agent:\n  setup: {}\n  variants: [{name: v, setup: {rs: {rs1: {rejct: [2]}}}, expect: [{check: task_completed}]}]\n", "agent.variants[0].setup.rs.rs1.rejct: unknown field"},
		{"agent:\n  setup: {}\n", "expect"},
		{"agent:\n  variants: [{name: v, requires: telepathy, expect: [{check: task_completed}]}]\n", "telepathy"},
		{"agent:\n  variants: [{name: v, setup: {as: {id_token: sloppy}}, expect: [{check: task_completed}]}]\n", "agent.variants[0].setup.as.id_token: \"sloppy\": use wrong-iss"},
		{"", "agent"},
		{"steps: [{call: {expect: accept}}]\nagent:\n  expect: [{check: task_completed}]\n", "steps"},
	} {
		_, err := ParseScenario("a.yaml", []byte(head+c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one naming %q", c.body, err, c.want)
		}
	}
}

func TestAuthParam(t *testing.T) {
	h := `Bearer resource_metadata="http://x/.well-known/oauth-protected-resource/mcp", scope="a b", error="insufficient_scope", error_description="need b"`
	for name, want := range map[string]string{"scope": "a b", "error": "insufficient_scope", "error_description": "need b", "resource_metadata": "http://x/.well-known/oauth-protected-resource/mcp", "algs": ""} {
		if got := authParam(h, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if got := authParam(`DPoP error=use_dpop_nonce, algs="ES256"`, "error"); got != "use_dpop_nonce" {
		t.Errorf("unquoted: %q", got)
	}
}

func FuzzAuthParam(f *testing.F) {
	f.Add(`Bearer scope="a b", error="x"`, "scope")
	f.Add(`DPoP error=use_dpop_nonce`, "error")
	f.Fuzz(func(t *testing.T, h, name string) {
		_ = authParam(h, name)
	})
}

// TestAgentChecksNeedExercise: checks over an empty trace never pass.
func TestAgentChecksNeedExercise(t *testing.T) {
	w, err := agentlab.New(t.Context(), "empty", agentlab.Spec{Task: []agentlab.ToolCall{{Tool: "notes_read"}}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for name, c := range agentChecks {
		v := c.fn(w, agentOutput{}, AgentCheck{Check: name})
		if v.state == checkHeld {
			t.Errorf("%s holds on an agent that did nothing: %s", name, v.msg)
		}
	}
}
