package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRefAgentCmd(t *testing.T) {
	run := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		cmd := newRoot()
		cmd.SetArgs(append([]string{"reference-agent"}, args...))
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		err := cmd.Execute()
		return out.String(), errb.String(), err
	}
	out, _, err := run("--list-flaws")
	if err != nil || !strings.Contains(out, "pkce-plain") || !strings.Contains(out, "agent-llm-isolation") {
		t.Fatalf("--list-flaws: %v\n%s", err, out)
	}

	t.Setenv("AGENTSSO_MCP_SERVERS", "")
	t.Setenv("AGENTSSO_MCP_SERVER_URL", "")
	t.Setenv("MCP_CONFORMANCE_CONTEXT", "")
	// The server URL as the last argument (the MCP conformance runner's
	// convention); a bad one is named.
	_, stderr, err := run("ftp://127.0.0.1/mcp")
	var ee exitError
	if !errors.As(err, &ee) || int(ee) != 1 || !strings.Contains(stderr, "AGENTSSO_MCP_SERVERS: server server") {
		t.Fatalf("error %v, stderr %q", err, stderr)
	}
	t.Setenv("AGENTSSO_REFAGENT_FLAWS", "no-such-flaw")
	if _, stderr, err = run("http://127.0.0.1:1/mcp"); err == nil || !strings.Contains(stderr, `unknown flaw "no-such-flaw"`) {
		t.Fatalf("error %v, stderr %q", err, stderr)
	}
}
