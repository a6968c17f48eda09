package reference_test

import (
	"context"
	"io/fs"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/emulatortest"
	"github.com/agentsso/agentsso/emulator/tlsca"
	"github.com/agentsso/agentsso/scenarios"
)

func catalogue(t testing.TB) *conformance.CatalogueSet {
	cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func run(t testing.TB, flaws refgw.Flaws, only ...string) *conformance.Report {
	t.Helper()
	env := emulatortest.New(t, nil)
	noExchange := len(flaws) > 0 && !flaws[refgw.FlawPassthrough]
	// The gateway serves HTTPS and checks client certificates of this CA
	// (mtls), which also issues the harness's.
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: t.TempDir(), Flaws: flaws, NoExchange: noExchange, CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &conformance.Runner{
		IdP:       &conformance.IdP{URL: env.URL, AdminURL: env.AdminURL},
		Target:    s.Target,
		Catalogue: catalogue(t),
		Opts:      conformance.Options{Only: only, Version: "test", PollBound: 7 * time.Second, ClientCA: ca},
	}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestReferencePasses: every scenario passes against the reference
// gateway with all its checks on.
func TestReferencePasses(t *testing.T) {
	rep := run(t, nil)
	for _, r := range rep.Results {
		if r.Status != conformance.StatusPass {
			t.Errorf("%s: %s: %s", r.ID, r.Status, r.Reason)
			for _, e := range r.Evidence {
				if e.Verdict != "ok" {
					t.Logf("  %s: %s; expected %s; got %+v; note %s", e.Step, e.Verdict, e.Expected, e.Response, e.Note)
				}
			}
		}
	}
	if rep.Verdict != "pass" || rep.ExitCode() != 0 {
		t.Errorf("verdict %s: %s", rep.Verdict, rep.VerdictReason)
	}
}

// negativeControls maps each scenario to the reference gateway flaws
// that must each make it fail: the proof that the scenario can fail.
var negativeControls = map[string][]string{
	"jwt-alg-none":               {refgw.FlawAcceptAlgNone},
	"jwt-alg-confusion-hs256":    {refgw.FlawHS256Confusion},
	"jwt-bad-signature":          {refgw.FlawSkipSignature},
	"jwt-temporal":               {refgw.FlawSkipExpiry, refgw.FlawSkipNbf},
	"iss-mismatch":               {refgw.FlawSkipIssuer},
	"tenant-issuer-confusion":    {refgw.FlawAcceptAnyTenantKey},
	"aud-wrong-resource":         {refgw.FlawSkipAudience},
	"aud-malformed":              {refgw.FlawSkipAudience},
	"token-kind-confusion":       {refgw.FlawSkipTyp},
	"scope-insufficient":         {refgw.FlawSkipScope},
	"revoked-token-rejected":     {refgw.FlawSkipIntrospection},
	"context-binding-replay":     {refgw.FlawSkipContext},
	"dpop-bound-as-bearer":       {refgw.FlawDPoPAsBearer},
	"dpop-proof-checks":          {refgw.FlawSkipDPoPProofChecks},
	"token-passthrough":          {refgw.FlawPassthrough},
	"jwt-header-key-injection":   {refgw.FlawTrustHeaderKeys},
	"audit-record-fields":        {refgw.FlawNoAudit},
	"jwt-key-rotation":           {refgw.FlawNoKeyRefetch, refgw.FlawKeepRemovedKeys},
	"bearer-hygiene":             {refgw.FlawQueryToken},
	"jwt-structure-confusion":    {refgw.FlawIgnoreCrit},
	"scope-overbroad-or-foreign": {refgw.FlawLooseScope},
	"long-lived-token-policy":    {refgw.FlawNoLifetimeLimit},
	"act-current-actor":          {refgw.FlawAnyActor},
	"introspection-checks":       {refgw.FlawIntrospectionFailOpen},
	"state-handle-hijack":        {refgw.FlawUnboundSession},
	"rs-resource-metadata":       {refgw.FlawNoResourceMetadata},
	"rs-baseline-control":        {refgw.FlawNoResourceMetadata},
	"jwt-oversize-dos":           {refgw.FlawNoSizeLimit},
	"sub-identity-confusion":     {refgw.FlawIdentityBySubOnly, refgw.FlawIdentityByEmail},
	"mtls-binding":               {refgw.FlawMTLSBindingUnchecked, refgw.FlawMTLSTrustsCertHeader, refgw.FlawTrustsForwardedFor},
}

// TestNegativeControls: each scenario fails (or warns, for a SHOULD)
// against the reference gateway with the matching check turned off.
func TestNegativeControls(t *testing.T) {
	for _, s := range catalogue(t).Scenarios {
		if s.Agent != nil {
			continue // agent scenarios: conformance/refagent's TestAgentNegativeControls
		}
		flaws, ok := negativeControls[s.ID]
		if !ok {
			t.Errorf("%s has no negative control: add the flaw that must make it fail", s.ID)
			continue
		}
		for _, flaw := range flaws {
			t.Run(s.ID+"/"+flaw, func(t *testing.T) {
				t.Parallel()
				// Introspection at the emulator is a second line of defence
				// that would hide a local check turned off; only the
				// revocation scenario keeps it.
				flaws := refgw.Flaws{flaw: true}
				if s.ID != "revoked-token-rejected" && s.ID != "introspection-checks" {
					flaws[refgw.FlawSkipIntrospection] = true
				}
				rep := run(t, flaws, s.ID)
				var got *conformance.Result
				for i := range rep.Results {
					if rep.Results[i].ID == s.ID {
						got = &rep.Results[i]
					}
				}
				if got == nil {
					t.Fatalf("%s did not run", s.ID)
				}
				want := conformance.StatusFail
				if s.Severity == conformance.SHOULD || s.ID == conformance.BaselineID {
					want = conformance.StatusWarn
				}
				if got.Status != want {
					t.Fatalf("with flaw %s, %s is %s (%s), want %s", flaw, s.ID, got.Status, got.Reason, want)
				}
			})
		}
	}
}
