package main

import (
	"context"
	"testing"
	"time"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// TestLoadDPoPProofs: the load generator's proofs pass the emulator's
// checks (RFC 9449 section 4.3), each with its own jti and one key.
func TestLoadDPoPProofs(t *testing.T) {
	const htu = "http://127.0.0.1:8080/t/acme/token"
	for _, alg := range dpopLoadAlgs {
		t.Run(alg, func(t *testing.T) {
			d, err := newDPoPSigner(alg)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			seen := map[string]bool{}
			var jkt string
			for range 3 {
				raw, err := d.proof(htu, now)
				if err != nil {
					t.Fatal(err)
				}
				p, err := emulator.VerifyDPoPProof(raw, emulator.DPoPCheck{Method: "POST", URL: htu, Now: now})
				if err != nil {
					t.Fatalf("proof refused: %v", err)
				}
				if p.Alg != alg || seen[p.JTI] || (jkt != "" && p.JKT != jkt) {
					t.Fatalf("proof %+v: want alg %s, a new jti, the same key", p, alg)
				}
				seen[p.JTI], jkt = true, p.JKT
			}
		})
	}
	if _, err := newDPoPSigner("HS256"); err == nil {
		t.Error("--dpop HS256: no error")
	}
}

// TestLoadDPoPRun: load --dpop against a running emulator gets DPoP
// tokens, with no error, and refuses an unknown algorithm by name.
func TestLoadDPoPRun(t *testing.T) {
	env := emulatortest.New(t, nil)
	f := loadFlags{grant: "client_credentials", concurrency: 4, duration: 300 * time.Millisecond, maxRequests: 200, dpop: "ES256"}
	var res loadResult
	if err := hammer(context.Background(), env.Issuer("acme"), f, &res); err != nil {
		t.Fatal(err)
	}
	if res.errors != 0 || res.rate <= 0 {
		t.Errorf("%d errors, %.0f tokens/s: want DPoP tokens and no error", res.errors, res.rate)
	}
	st, err := env.Server.DPoP("acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Proofs) == 0 || st.Proofs[len(st.Proofs)-1].Result != "accepted" {
		t.Errorf("the emulator recorded %d proofs, the last %+v: want accepted proofs", len(st.Proofs), st.Proofs)
	}
	f.dpop = "none"
	if err := runLoad(context.Background(), nil, f); err == nil {
		t.Error("--dpop none: no error")
	}
}
