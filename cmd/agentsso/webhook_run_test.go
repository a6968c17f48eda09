package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// `agentsso run` with a target whose audit sink is a webhook: --print-config
// names the URL to post to, audit-record-fields passes on the records the
// reference gateway posts there, and --parallel is checked.
func TestRunAuditWebhook(t *testing.T) {
	env := emulatortest.New(t, nil)
	s, err := reference.Start(reference.Options{IdPURL: env.URL, AuditWebhook: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tg := s.Target
	y := fmt.Sprintf("kind: gateway\nurl: %s\ntool: %s\nscope: %s\nfeatures: [%s]\nzone: %s\nupstream: %s\nupstream_audience: %s\nallowed_actor: %s\naudit:\n  webhook: %s\n  fields: {issuer: iss, idp_user_id: sub, agent_id: agent, audience: aud, token_id: jti}\n",
		tg.URL, tg.Tool, tg.Scope, strings.Join(tg.Features, ", "), tg.Zone, tg.Upstream, tg.UpstreamAudience, tg.AllowedActor, tg.Audit.Webhook)
	file := filepath.Join(t.TempDir(), "target.yaml")
	if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	idp := []string{"--idp", env.URL, "--admin-url", env.AdminURL, "--target", file}
	out, code := runCmd(t, append(idp, "--print-config")...)
	if want := "audit webhook      " + conformance.WebhookURL(tg.Audit.Webhook); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("--print-config: exit %d, want 0 and %q\n%s", code, want, out)
	}
	out, code = runCmd(t, append(idp, "--out", t.TempDir(), "--only", "audit-record-fields,jwt-alg-none", "--parallel", "2")...)
	if code != 0 || !strings.Contains(out, "PASS  audit-record-fields") {
		t.Fatalf("audit-record-fields over the webhook: exit %d\n%s", code, out)
	}
	for _, p := range []string{"0", "-3"} {
		if out, code := runCmd(t, append(idp, "--parallel", p)...); code != 2 || !strings.Contains(out, "--parallel") {
			t.Errorf("--parallel %s: exit %d, want 2 naming the flag\n%s", p, code, out)
		}
	}
}

func TestDemoParallelFlag(t *testing.T) {
	var out, errb strings.Builder
	err := runDemo(t.Context(), &out, &errb, t.TempDir(), nil, 0)
	if ee, ok := err.(exitError); !ok || ee != 2 || !strings.Contains(errb.String(), "--parallel 0") {
		t.Errorf("demo --parallel 0: %v %q, want exit 2 naming the flag", err, errb.String())
	}
}
