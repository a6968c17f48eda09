package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// targetFile writes a target file for a reference gateway.
func targetFile(t *testing.T, s *reference.Setup) string {
	t.Helper()
	tg := s.Target
	y := fmt.Sprintf("name: ref\nkind: gateway\nurl: %s\ntool: %s\naudience: %s\ntenant: acme\nscope: %s\nfeatures: [%s]\nzone: %s\nupstream: %s\nupstream_audience: %s\nallowed_actor: %s\n",
		tg.URL, tg.Tool, tg.Audience, tg.Scope, strings.Join(tg.Features, ", "), tg.Zone, tg.Upstream, tg.UpstreamAudience, tg.AllowedActor)
	if tg.Audit != nil {
		y += "audit:\n  file: " + tg.Audit.File + "\n  fields:\n"
		for k, v := range tg.Audit.Fields {
			y += "    " + k + ": " + v + "\n"
		}
	}
	p := filepath.Join(t.TempDir(), "target.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRunCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var ee exitError
	switch {
	case err == nil:
		return out.String() + errb.String(), 0
	case errors.As(err, &ee):
		return out.String() + errb.String(), int(ee)
	}
	t.Fatalf("run: %v\n%s%s", err, out.String(), errb.String())
	return "", -1
}

// TestRunExitStatus drives `agentsso run` against the reference gateway
// with an emulator that runs already: 0 when it conforms, 1 when a MUST
// fails, 0 again when that failure is listed as expected, 1 when a listed
// failure passes, 2 for bad input.
func TestRunExitStatus(t *testing.T) {
	env := emulatortest.New(t, nil)
	idp := []string{"--idp", env.URL, "--admin-url", env.AdminURL}
	start := func(flaws refgw.Flaws) string {
		s, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: t.TempDir(), Flaws: flaws, NoExchange: len(flaws) > 0})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return targetFile(t, s)
	}
	goodSetup, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { goodSetup.Close() })
	good := targetFile(t, goodSetup)
	// The same target described by flags alone.
	tg := goodSetup.Target
	out, code := runCmd(t, append(idp, "--target-url", tg.URL, "--kind", "gateway", "--tool", tg.Tool, "--audience", tg.Audience,
		"--scope", tg.Scope, "--upstream", tg.Upstream, "--out", t.TempDir(), "--only", "jwt-alg-none")...)
	if code != 0 {
		t.Fatalf("target by flags: exit %d\n%s", code, out)
	}
	out, code = runCmd(t, append(idp, "--target", good, "--out", t.TempDir(), "--only", "w1")...)
	if code != 0 || !strings.Contains(out, "PASS") {
		t.Fatalf("conforming target: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "issuer             "+env.URL+"/t/acme") {
		t.Fatalf("run did not print the target's configuration first:\n%s", out)
	}

	flawed := start(refgw.Flaws{refgw.FlawSkipAudience: true, refgw.FlawSkipIntrospection: true})
	dir := t.TempDir()
	out, code = runCmd(t, append(idp, "--target", flawed, "--out", dir, "--only", "aud-wrong-resource")...)
	if code != 1 || !strings.Contains(out, "aud-wrong-resource") {
		t.Fatalf("flawed target: exit %d, want 1\n%s", code, out)
	}
	for _, f := range []string{"report.json", "report.xml", "report.md", "report.html"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	exp := filepath.Join(t.TempDir(), "expected.yaml")
	os.WriteFile(exp, []byte("aud-wrong-resource: known gap, tracked in GW-123\n"), 0o600)
	out, code = runCmd(t, append(idp, "--target", flawed, "--out", t.TempDir(), "--only", "aud-wrong-resource", "--expected-failures", exp)...)
	if code != 0 {
		t.Fatalf("expected failure listed: exit %d, want 0\n%s", code, out)
	}
	out, code = runCmd(t, append(idp, "--target", good, "--out", t.TempDir(), "--only", "aud-wrong-resource", "--expected-failures", exp)...)
	if code != 1 || !strings.Contains(out, "stale") {
		t.Fatalf("stale expected failure: exit %d, want 1 naming it stale\n%s", code, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("kind: toaster\nurl: http://127.0.0.1:1/\n"), 0o600)
	for name, args := range map[string][]string{
		"bad target":        append(idp, "--target", bad),
		"no target":         idp,
		"idp without admin": {"--idp", env.URL, "--target", good},
		"unknown expected":  append(idp, "--target", good, "--expected-failures", writeFile(t, "nope-scenario: x\n")),
	} {
		out, code := runCmd(t, args...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2\n%s", name, code, out)
		}
	}
}

func writeFile(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
