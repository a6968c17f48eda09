package reference_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/reference"
	"github.com/agentsso/agentsso/emulator/emulatortest"
	"github.com/agentsso/agentsso/internal/parts"
	"github.com/agentsso/agentsso/softhsm"
)

// TestDPoPKeyInHSM runs the DPoP scenarios with the harness's own DPoP
// key held by SoftHSM2: an agent proving possession of an HSM-held key.
func TestDPoPKeyInHSM(t *testing.T) {
	parts.Require(t, "SoftHSM2 and cgo", "apt-get install -y softhsm2; build with CGO_ENABLED=1", softhsm.SoftHSM2Available())
	t.Setenv("SOFTHSM2_CONF", "")
	cfg, err := softhsm.SetupSoftHSM2(t.TempDir(), "harness", "so-pin-1234", "user-pin-1234")
	if err != nil {
		t.Fatal(err)
	}
	ks, err := softhsm.NewPKCS11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	key, err := ks.Create(context.Background(), "harness", softhsm.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if key.Extractable == nil || *key.Extractable {
		t.Fatalf("the harness key must be non-extractable, got %v", key.Extractable)
	}
	env := emulatortest.New(t, nil)
	s, err := reference.Start(reference.Options{IdPURL: env.URL, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &conformance.Runner{
		IdP:       &conformance.IdP{URL: env.URL, AdminURL: env.AdminURL},
		Target:    s.Target,
		Catalogue: catalogue(t),
		Opts:      conformance.Options{Only: []string{"dpop-bound-as-bearer", "dpop-proof-checks"}, DPoPKey: key.Signer, PollBound: 5 * time.Second},
	}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Results {
		if res.Status != conformance.StatusPass {
			t.Errorf("%s with an HSM-held DPoP key: %s: %s", res.ID, res.Status, res.Reason)
		}
	}
}
