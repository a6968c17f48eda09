package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance/refagent"
)

// TestMain lets the test binary play an agent subprocess: with
// AGENTSSO_TEST_BE=reference-agent it runs the reference agent on the
// adapter protocol's environment instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("AGENTSSO_TEST_BE") == "leaky-agent" {
		// An agent that prints the secrets it was given and gives up.
		fmt.Fprintf(os.Stderr, "client secret %s, model key %s\n", os.Getenv("AGENTSSO_CLIENT_SECRET"), os.Getenv("OPENAI_API_KEY"))
		os.Exit(1)
	}
	if os.Getenv("AGENTSSO_TEST_BE") == "reference-agent" {
		if err := refagent.Run(context.Background(), refagent.Environ(os.Environ()), os.Stdout, os.Stderr); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func readReport(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func resultStatus(rep map[string]any, id string) (string, map[string]any) {
	for _, r := range rep["results"].([]any) {
		r := r.(map[string]any)
		if r["id"] == id {
			return r["status"].(string), r
		}
	}
	return "", nil
}

// TestRunAgentSubprocess judges an agent launched as a subprocess through
// the adapter protocol (the reference agent, played by this test binary):
// it conforms, and with a flaw the matching scenario fails the run.
func TestRunAgentSubprocess(t *testing.T) {
	t.Setenv("AGENTSSO_TEST_BE", "reference-agent")
	only := "--only=agent-llm-isolation,agent-prm-resource-mismatch"
	dir := t.TempDir()
	out, code := runCmd(t, "--kind", "agent", "--agent-command", os.Args[0], "--features", "authorization-code,client-credentials", only, "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	rep := readReport(t, dir)
	for _, id := range []string{"agent-baseline-control", "agent-llm-isolation", "agent-prm-resource-mismatch"} {
		if st, _ := resultStatus(rep, id); st != "pass" {
			t.Errorf("%s: %s\n%s", id, st, out)
		}
	}
	_, r := resultStatus(rep, "agent-llm-isolation")
	if tr, _ := r["trace"].([]any); len(tr) < 5 {
		t.Errorf("agent-llm-isolation has a trace of %d entries", len(tr))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "report.json")); strings.Contains(string(b), "agentsso-canary-secret-") || strings.Contains(string(b), "eyJ") {
		t.Error("the report holds a secret or a JWT")
	}

	t.Setenv("AGENTSSO_REFAGENT_FLAWS", "leak-token-to-model")
	dir = t.TempDir()
	out, code = runCmd(t, "--kind", "agent", "--agent-command", os.Args[0], "--features", "authorization-code", only, "--out", dir)
	if code != 1 {
		t.Fatalf("with leak-token-to-model: exit %d, want 1:\n%s", code, out)
	}
	if st, r := resultStatus(readReport(t, dir), "agent-llm-isolation"); st != "fail" || !strings.Contains(r["reason"].(string), "the model received") {
		t.Errorf("agent-llm-isolation: %s: %v", st, r["reason"])
	}
}

// TestRunAgentInProcess judges the reference agent in process, with and
// without a flaw.
func TestRunAgentInProcess(t *testing.T) {
	dir := t.TempDir()
	out, code := runCmd(t, "--kind", "agent", "--reference-agent", "--only", "agent-pkce-s256", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = runCmd(t, "--kind", "agent", "--reference-agent", "--agent-flaw", "pkce-plain", "--only", "agent-pkce-s256", "--out", t.TempDir())
	if code != 1 || !strings.Contains(out, "agent-pkce-s256") {
		t.Fatalf("with pkce-plain: exit %d:\n%s", code, out)
	}
}

// TestRunAgentUsage: bad agent settings are usage errors (exit 2) naming
// the flag or field.
func TestRunAgentUsage(t *testing.T) {
	tf := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(tf, []byte("kind: agent\nurl: http://127.0.0.1:1/mcp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--kind", "agent"}, "command"},
		{[]string{"--kind", "agent", "--agent-command", "x", "--agent-flaw", "pkce-plain"}, "--reference-agent"},
		{[]string{"--kind", "agent", "--reference-agent", "--agent-flaw", "no-such-flaw"}, "no-such-flaw"},
		{[]string{"--kind", "agent", "--agent-command", "x", "--features", "warp-drive"}, "warp-drive"},
		{[]string{"--kind", "agent", "--agent-command", "x", "--idp", "http://127.0.0.1:1"}, "--idp"},
		{[]string{"--target", tf}, "url"},
	} {
		out, code := runCmd(t, append(c.args, "--out", t.TempDir())...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want 2 naming %q:\n%s", c.args, code, c.want, out)
		}
	}
}

// TestBrowseNeedsTheShim: browse outside a scenario says what is missing.
func TestBrowseNeedsTheShim(t *testing.T) {
	t.Setenv("AGENTSSO_BROWSER_URL", "")
	cmd := newBrowseCmd()
	var b strings.Builder
	cmd.SetOut(&b)
	cmd.SetErr(&b)
	cmd.SetArgs([]string{"http://127.0.0.1:1/authorize"})
	err := cmd.Execute()
	var ee exitError
	if err == nil || !errors.As(err, &ee) || int(ee) != 2 || !strings.Contains(b.String(), "AGENTSSO_BROWSER_URL") {
		t.Fatalf("err %v, output %q", err, b.String())
	}
}

// parseDotenv reads the KEY=value lines of an attach file.
func parseDotenv(s string) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") && len(v) >= 2 {
			v = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
		}
		env[k] = v
	}
	return env
}

// TestRunAgentAttached: an agent that runs already is pointed at each
// scenario run by hand (here: a goroutine that watches the attach file).
func TestRunAgentAttached(t *testing.T) {
	f := filepath.Join(t.TempDir(), "attach.env")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		last := ""
		for ctx.Err() == nil {
			b, _ := os.ReadFile(f)
			if s := string(b); s != "" && s != last {
				last = s
				_ = refagent.Run(ctx, parseDotenv(s), io.Discard, io.Discard)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	dir := t.TempDir()
	out, code := runCmd(t, "--kind", "agent", "--attach", "--attach-file", f, "--features", "authorization-code", "--only", "agent-resource-indicator", "--agent-timeout", "20s", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "AGENTSSO_ISSUER=") || !strings.Contains(out, "point the agent at this world") {
		t.Errorf("the variables were not printed:\n%s", out)
	}
	if st, _ := resultStatus(readReport(t, dir), "agent-resource-indicator"); st != "pass" {
		t.Errorf("agent-resource-indicator: %s", st)
	}
}

// TestAgentReportRedactsWhatTheAgentPrinted: what an agent printed
// reaches the report (the evidence of a failed run) only with every token
// and secret replaced by its label.
func TestAgentReportRedactsWhatTheAgentPrinted(t *testing.T) {
	t.Setenv("AGENTSSO_TEST_BE", "leaky-agent")
	dir := t.TempDir()
	out, code := runCmd(t, "--kind", "agent", "--agent-command", os.Args[0], "--features", "client-credentials", "--only", "agent-baseline-control", "--out", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, f := range []string{"report.json", "report.md", "report.html", "report.xml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "agentsso-canary-secret-") || strings.Contains(string(b), "sk-agentsso-model-") {
			t.Errorf("%s holds a secret the agent printed", f)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "report.json")); !strings.Contains(string(b), "the agent's client secret") {
		t.Error("the report does not name the secret the agent printed by its label")
	}
}
