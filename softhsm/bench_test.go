package softhsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"os/exec"
	"path/filepath"
	"testing"
)

// benchBackends opens one store per backend for a benchmark and creates
// an ES256, an RS256 and a PS256 key in each. A backend whose part is
// missing gets no store: its sub-benchmarks skip (or fail under
// AGENTSSO_TEST_STRICT=1) through requirePart.
func benchBackends(b *testing.B) []benchBackend {
	dir := b.TempDir()
	_, modErr := FindSoftHSM2Module()
	_, utilErr := exec.LookPath("softhsm2-util")
	_, swErr := exec.LookPath("swtpm")
	backends := []benchBackend{
		{name: "memory", open: func() (Store, error) { return NewMemory("") }},
		{name: "pkcs11", missing: !pkcs11Supported || modErr != nil || utilErr != nil, require: requireSoftHSM2,
			open: func() (Store, error) {
				_, cfg := newSoftHSM2(b)
				return NewPKCS11(cfg)
			}},
		{name: "tpm", missing: swErr != nil, require: requireSWTPM,
			open: func() (Store, error) {
				return NewTPM(TPMConfig{StateDir: filepath.Join(dir, "swtpm"), KeyDir: filepath.Join(dir, "tpm-keys")})
			}},
	}
	for i := range backends {
		bb := &backends[i]
		if bb.missing {
			continue
		}
		s, err := bb.open()
		if err != nil {
			b.Fatalf("%s: %v", bb.name, err)
		}
		b.Cleanup(func() { s.Close() })
		bb.keys = map[string]Key{}
		for _, alg := range []string{ES256, RS256, PS256} {
			k, err := s.Create(context.Background(), "bench", alg)
			if err != nil {
				b.Fatalf("%s: %v", bb.name, err)
			}
			bb.keys[alg] = k
		}
	}
	return backends
}

type benchBackend struct {
	name    string
	open    func() (Store, error)
	missing bool             // the part is not installed
	require func(testing.TB) // skips or fails when it is missing
	keys    map[string]Key
}

func benchOpts(alg string) crypto.SignerOpts {
	if alg == PS256 {
		return &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
	}
	return crypto.SHA256
}

// BenchmarkSign measures one signature over a SHA-256 digest through the
// crypto.Signer of each backend, from one goroutine.
//
//	go test -run '^$' -bench . -benchtime 2s ./softhsm/
func BenchmarkSign(b *testing.B) {
	digest := sha256.Sum256([]byte("header.payload"))
	for _, bb := range benchBackends(b) {
		for _, alg := range []string{ES256, RS256, PS256} {
			b.Run(bb.name+"-"+alg, func(b *testing.B) {
				if bb.missing {
					bb.require(b)
				}
				k, opts := bb.keys[alg], benchOpts(alg)
				for b.Loop() {
					if _, err := k.Signer.Sign(rand.Reader, digest[:], opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSignParallel is BenchmarkSign from GOMAXPROCS goroutines: the
// PKCS#11 session pool lets them sign at once, the TPM serializes them.
func BenchmarkSignParallel(b *testing.B) {
	digest := sha256.Sum256([]byte("header.payload"))
	for _, bb := range benchBackends(b) {
		for _, alg := range []string{ES256, RS256} {
			b.Run(bb.name+"-"+alg, func(b *testing.B) {
				if bb.missing {
					bb.require(b)
				}
				k, opts := bb.keys[alg], benchOpts(alg)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := k.Signer.Sign(rand.Reader, digest[:], opts); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
