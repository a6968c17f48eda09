package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/emulatortest"
	"github.com/agentsso/agentsso/emulator/tlsca"
)

// TestRunMTLSTarget drives `agentsso run` against the reference gateway
// in mTLS mode, trusting the local CA of the state directory: the client
// CA is printed, mtls-binding passes, and fails with a flaw.
func TestRunMTLSTarget(t *testing.T) {
	env := emulatortest.New(t, nil)
	state := t.TempDir()
	ca, err := tlsca.LoadOrCreate(filepath.Join(state, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	start := func(flaws refgw.Flaws) string {
		s, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: t.TempDir(), Flaws: flaws, NoExchange: len(flaws) > 0, CA: ca})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if !strings.HasPrefix(s.Target.URL, "https://") || !s.Target.Has("mtls") {
			t.Fatalf("reference target %s, features %v: want https and mtls", s.Target.URL, s.Target.Features)
		}
		return targetFile(t, s)
	}
	args := []string{"--idp", env.URL, "--admin-url", env.AdminURL, "--state-dir", state, "--only", "mtls-binding"}

	out, code := runCmd(t, append(args, "--target", start(nil), "--print-config")...)
	if code != 0 || !strings.Contains(out, "client CA          "+ca.CertFile()) {
		t.Fatalf("--print-config: exit %d, want the client CA %s\n%s", code, ca.CertFile(), out)
	}
	out, code = runCmd(t, append(args, "--target", start(nil), "--out", t.TempDir())...)
	if code != 0 || !strings.Contains(out, "PASS") {
		t.Fatalf("conforming mTLS target: exit %d\n%s", code, out)
	}
	flawed := start(refgw.Flaws{refgw.FlawMTLSBindingUnchecked: true, refgw.FlawSkipIntrospection: true})
	out, code = runCmd(t, append(args, "--target", flawed, "--out", t.TempDir())...)
	if code != 1 || !strings.Contains(out, "mtls-binding") {
		t.Fatalf("flawed mTLS target: exit %d, want 1\n%s", code, out)
	}

	// mtls over plain HTTP is a usage error naming the field.
	bad := writeFile(t, "kind: resource-server\nurl: http://127.0.0.1:1/api\nfeatures: [mtls]\n")
	out, code = runCmd(t, append(args, "--target", bad)...)
	if code != 2 || !strings.Contains(out, "url") || !strings.Contains(out, "https") {
		t.Fatalf("mtls over http: exit %d, want 2 naming url\n%s", code, out)
	}
}
