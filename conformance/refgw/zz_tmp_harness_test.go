package refgw_test

import (
	"context"
	"io/fs"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/emulatortest"
	"github.com/agentsso/agentsso/scenarios"
)

func TestTmpHarness(t *testing.T) {
	for _, flaws := range []refgw.Flaws{nil, {refgw.FlawNoKeyRefetch: true, refgw.FlawSkipIntrospection: true}, {refgw.FlawKeepRemovedKeys: true, refgw.FlawSkipIntrospection: true}} {
		cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
		if err != nil {
			t.Fatal(err)
		}
		env := emulatortest.New(t, nil)
		s, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: t.TempDir(), Flaws: flaws, NoExchange: len(flaws) > 0})
		if err != nil {
			t.Fatal(err)
		}
		r := &conformance.Runner{IdP: &conformance.IdP{URL: env.URL, AdminURL: env.AdminURL}, Target: s.Target, Catalogue: cs,
			Opts: conformance.Options{Only: []string{"jwt-key-rotation"}, Version: "test", PollBound: 10 * time.Second}}
		rep, err := r.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range rep.Results {
			t.Logf("flaws %v: %s %s: %s", flaws, res.ID, res.Status, res.Reason)
		}
		s.Close()
	}
}
