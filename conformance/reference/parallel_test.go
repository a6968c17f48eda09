package reference_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/emulatortest"
	"github.com/agentsso/agentsso/emulator/tlsca"
)

// runOpts runs the catalogue against a reference gateway set up by o,
// with the harness options opts.
func runOpts(t testing.TB, o reference.Options, opts conformance.Options) *conformance.Report {
	t.Helper()
	env := emulatortest.New(t, nil)
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.IdPURL, o.CA = env.URL, ca
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := reference.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	opts.Version, opts.PollBound, opts.ClientCA = "test", 7*time.Second, ca
	r := &conformance.Runner{IdP: &conformance.IdP{URL: env.URL, AdminURL: env.AdminURL}, Target: s.Target, Catalogue: catalogue(t), Opts: opts}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func result(t testing.TB, rep *conformance.Report, id string) conformance.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("%s did not run", id)
	return conformance.Result{}
}

// audit-record-fields reads the records the gateway posts to the
// harness's webhook exactly as it reads a JSON-lines file: it passes on
// the reference gateway and warns when the gateway writes no record.
func TestAuditWebhookSink(t *testing.T) {
	const id = "audit-record-fields"
	for _, tc := range []struct {
		flaws refgw.Flaws
		want  conformance.Status
	}{
		{nil, conformance.StatusPass},
		{refgw.Flaws{refgw.FlawNoAudit: true}, conformance.StatusWarn},
	} {
		t.Run("flaws="+tc.flaws.String(), func(t *testing.T) {
			t.Parallel()
			rep := runOpts(t, reference.Options{AuditWebhook: true, Flaws: tc.flaws}, conformance.Options{Only: []string{id}})
			if rep.Target.Features == nil || !slices.Contains(rep.Target.Features, "audit") {
				t.Fatalf("the target declares no audit sink: %v", rep.Target.Features)
			}
			got := result(t, rep, id)
			if got.Status != tc.want {
				t.Fatalf("%s with the webhook sink: %s (%s), want %s", id, got.Status, got.Reason, tc.want)
			}
			last := got.Evidence[len(got.Evidence)-1]
			if !strings.Contains(last.Note, "audit webhook http://127.0.0.1:") {
				t.Errorf("the audit evidence does not name the webhook: %q", last.Note)
			}
			if tc.want == conformance.StatusPass && !strings.HasPrefix(last.Note, "4 records") {
				// An accepted MCP call is three decisions (initialize, the
				// initialized notification, tools/call); the refused one
				// stops at initialize.
				t.Errorf("audit evidence: %s, want 4 records", last.Note)
			}
		})
	}
}

// The whole catalogue gives the same results, in the same order, one
// scenario at a time and eight at a time.
func TestParallelRunMatchesSequential(t *testing.T) {
	seq := runOpts(t, reference.Options{}, conformance.Options{Parallel: 1})
	par := runOpts(t, reference.Options{}, conformance.Options{Parallel: 8})
	t.Logf("catalogue of %d: %v one at a time, %v eight at a time", len(seq.Results), seq.Duration.Round(time.Millisecond), par.Duration.Round(time.Millisecond))
	if len(seq.Results) != len(par.Results) {
		t.Fatalf("%d results in sequence, %d in parallel", len(seq.Results), len(par.Results))
	}
	for i := range seq.Results {
		s, p := seq.Results[i], par.Results[i]
		if s.ID != p.ID || s.Status != p.Status || s.Status != conformance.StatusPass {
			t.Errorf("#%d: sequential %s %s (%s), parallel %s %s (%s)", i, s.ID, s.Status, s.Reason, p.ID, p.Status, p.Reason)
		}
	}
	if par.Results[0].ID != conformance.BaselineID {
		t.Errorf("the first result is %s, not the baseline", par.Results[0].ID)
	}
	if par.Verdict != "pass" {
		t.Errorf("parallel verdict %s: %s", par.Verdict, par.VerdictReason)
	}
}
