package softhsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	testSOPIN   = "so-5678"
	testUserPIN = "user-1234"
)

// newSoftHSM2 prepares a SoftHSM2 token in a fresh t.TempDir and returns
// the configuration that opens it. SoftHSM2 is configured through the
// process environment, so tests using it cannot run in parallel: the
// t.Setenv here enforces that (it panics under t.Parallel) and restores
// SOFTHSM2_CONF afterwards.
func newSoftHSM2(tb testing.TB) (dir string, cfg PKCS11Config) {
	tb.Helper()
	requireSoftHSM2(tb)
	tb.Setenv("SOFTHSM2_CONF", os.Getenv("SOFTHSM2_CONF"))
	dir = tb.TempDir()
	cfg, err := SetupSoftHSM2(dir, "agentsso-test", testSOPIN, testUserPIN)
	if err != nil {
		tb.Fatal(err)
	}
	return dir, cfg
}

func openPKCS11(tb testing.TB, cfg PKCS11Config) *PKCS11 {
	tb.Helper()
	s, err := NewPKCS11(cfg)
	if err != nil {
		tb.Fatalf("NewPKCS11: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// p11TestModule is a PKCS#11 module the PKCS#11 tests run on.
type p11TestModule struct {
	name string
	// algs are the algorithms the module supports; unsupported are those
	// Create must refuse on it with *UnsupportedAlgError.
	algs, unsupported []string
	// rsaAlg is an RSA algorithm the module supports.
	rsaAlg string
	// setup prepares a fresh token for the test and returns the
	// configuration that opens it, and reopen, which prepares the same
	// token again (for SoftHSM2: SetupSoftHSM2 on the same directory) and
	// returns its configuration.
	setup func(tb testing.TB) (cfg PKCS11Config, reopen func() (PKCS11Config, error))
}

// p11TestModules are the modules the PKCS#11 tests run on. Both are
// configured through the process environment, so these tests do not run
// in parallel (t.Setenv enforces it).
var p11TestModules = []p11TestModule{
	{
		name:        "softhsm2",
		algs:        []string{ES256, ES384, RS256, PS256},
		unsupported: []string{EdDSA, "HS256"},
		rsaAlg:      PS256,
		setup: func(tb testing.TB) (PKCS11Config, func() (PKCS11Config, error)) {
			dir, cfg := newSoftHSM2(tb)
			return cfg, func() (PKCS11Config, error) {
				// Setting up again on the same directory keeps the token.
				return SetupSoftHSM2(dir, "agentsso-test", testSOPIN, testUserPIN)
			}
		},
	},
	{
		// tpm2-pkcs11 1.9.0 has no CKM_RSA_PKCS_PSS: no PS256 (see
		// tpm2pkcs11_test.go).
		name:        "tpm2-pkcs11",
		algs:        []string{ES256, ES384, RS256},
		unsupported: []string{PS256, EdDSA, "HS256"},
		rsaAlg:      RS256,
		setup: func(tb testing.TB) (PKCS11Config, func() (PKCS11Config, error)) {
			cfg := newTPM2PKCS11(tb)
			return cfg, func() (PKCS11Config, error) { return cfg, nil }
		},
	},
}

// forEachP11Module runs f as a subtest for each module of p11TestModules.
func forEachP11Module(t *testing.T, f func(t *testing.T, m p11TestModule)) {
	for _, m := range p11TestModules {
		t.Run(m.name, func(t *testing.T) { f(t, m) })
	}
}

func TestPKCS11Store(t *testing.T) {
	forEachP11Module(t, func(t *testing.T, m p11TestModule) {
		_, reopen := m.setup(t)
		storeSuite{
			algs:            m.algs,
			unsupported:     m.unsupported,
			signAfterDelete: true,
			open: func(t *testing.T) Store {
				cfg, err := reopen()
				if err != nil {
					t.Fatal(err)
				}
				s, err := NewPKCS11(cfg) // the suite closes it
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
		}.run(t)
	})
}

// TestPKCS11Custody checks that keys are created non-extractable, as read
// back from the module.
func TestPKCS11Custody(t *testing.T) {
	forEachP11Module(t, func(t *testing.T, m p11TestModule) {
		cfg, _ := m.setup(t)
		s := openPKCS11(t, cfg)
		ctx := context.Background()
		for _, alg := range []string{ES256, RS256} {
			if _, err := s.Create(ctx, "acme", alg); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = openPKCS11(t, cfg)
		keys, err := s.List(ctx, "acme")
		if err != nil || len(keys) != 2 {
			t.Fatalf("List = %d keys, %v; want 2", len(keys), err)
		}
		for _, k := range keys {
			if k.Extractable == nil || *k.Extractable || k.NeverExtractable == nil || !*k.NeverExtractable {
				t.Errorf("%s: extractable=%v never_extractable=%v, want false/true", k.Alg, deref(k.Extractable), deref(k.NeverExtractable))
			}
		}
	})
}

func wantConfigError(t *testing.T, err error, field string) {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != field {
		t.Errorf("error = %v, want a *ConfigError for %s", err, field)
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func TestPKCS11OpenErrors(t *testing.T) {
	forEachP11Module(t, func(t *testing.T, m p11TestModule) {
		cfg, _ := m.setup(t)
		dir := t.TempDir()

		t.Run("wrong-pin", func(t *testing.T) {
			bad := cfg
			bad.PIN = "wrong-pin-9999"
			_, err := NewPKCS11(bad)
			if err == nil {
				t.Fatal("NewPKCS11 with a wrong PIN succeeded")
			}
			if strings.Contains(err.Error(), bad.PIN) {
				t.Errorf("error reveals the PIN: %v", err)
			}
			wantConfigError(t, err, "keys.pkcs11.pin")
		})
		t.Run("unknown-token", func(t *testing.T) {
			bad := cfg
			bad.Token = "no-such-token"
			_, err := NewPKCS11(bad)
			if err == nil || !strings.Contains(err.Error(), `"agentsso-test"`) {
				t.Errorf("NewPKCS11(unknown token) = %v, want an error listing the tokens seen", err)
			}
			wantConfigError(t, err, "keys.pkcs11.token")
		})
		t.Run("missing-module", func(t *testing.T) {
			bad := cfg
			bad.Module = filepath.Join(dir, "nope.so")
			_, err := NewPKCS11(bad)
			wantConfigError(t, err, "keys.pkcs11.module")
		})
		t.Run("uri-with-pin-source", func(t *testing.T) {
			pinFile := filepath.Join(dir, "pin")
			if err := os.WriteFile(pinFile, []byte(testUserPIN+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			u := PKCS11URI{Token: cfg.Token, ModulePath: cfg.Module, PINSource: pinFile}
			s := openPKCS11(t, PKCS11Config{URI: u.Encode()})
			k, err := s.Create(context.Background(), "uri", ES256)
			if err != nil {
				t.Fatal(err)
			}
			checkSignVerify(t, k)
		})
	})
}

// TestPKCS11SharedModule opens two stores on one token: the module is
// initialized once and stays usable until the last store closes.
func TestPKCS11SharedModule(t *testing.T) {
	forEachP11Module(t, func(t *testing.T, m p11TestModule) {
		cfg, _ := m.setup(t)
		a := openPKCS11(t, cfg)
		b := openPKCS11(t, cfg)
		ka, err := a.Create(context.Background(), "acme", ES256)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		kb, err := b.Create(context.Background(), "acme", ES256)
		if err != nil {
			t.Fatalf("Create on the second store after closing the first: %v", err)
		}
		checkSignVerify(t, kb)
		d := sha256.Sum256([]byte("x"))
		if _, err := ka.Signer.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
			t.Errorf("signing with a closed store's key = %v, want ErrClosed", err)
		}
		if _, err := a.Create(context.Background(), "acme", ES256); !errors.Is(err, ErrClosed) {
			t.Errorf("Create on a closed store = %v, want ErrClosed", err)
		}
	})
}

// TestPKCS11SmallPool signs from more goroutines than there are sessions.
func TestPKCS11SmallPool(t *testing.T) {
	forEachP11Module(t, func(t *testing.T, m p11TestModule) {
		cfg, _ := m.setup(t)
		cfg.Sessions = 1
		s := openPKCS11(t, cfg)
		var keys []Key
		for _, alg := range []string{ES256, m.rsaAlg} {
			k, err := s.Create(context.Background(), "acme", alg)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for range 10 {
					checkSignVerify(t, keys[g%len(keys)])
				}
			})
		}
		wg.Wait()
	})
}

// TestPKCS11ConcurrentCreate creates and deletes keys and opens stores
// from several goroutines on one token while others sign: SoftHSM2's file
// object store fails (CKR_GENERAL_ERROR) when objects are created while
// others are created or listed, unless the module serializes them.
func TestPKCS11ConcurrentCreate(t *testing.T) {
	forEachP11Module(t, func(t *testing.T, m p11TestModule) {
		if m.name != "softhsm2" {
			// tpm2-pkcs11 keeps each key loaded in the TPM, whose
			// object slots run out after about ten keys per process.
			t.Skipf("%s holds too few keys at once for 32 of them", m.name)
		}
		cfg, _ := m.setup(t)
		stores := []*PKCS11{openPKCS11(t, cfg), openPKCS11(t, cfg)}
		signer, err := stores[0].Create(context.Background(), "acme", ES256)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				s := stores[g%2]
				tenant := fmt.Sprintf("t%d", g)
				for i := range 4 {
					k, err := s.Create(context.Background(), tenant, ES256)
					if err != nil {
						t.Errorf("goroutine %d, key %d: %v", g, i, err)
						return
					}
					checkSignVerify(t, signer)
					if i == 2 { // opening a store lists the token's objects
						o, err := NewPKCS11(cfg)
						if err != nil {
							t.Errorf("goroutine %d, open: %v", g, err)
							return
						}
						o.Close()
					}
					if i%2 == 1 {
						if err := s.Delete(context.Background(), tenant, k.KID); err != nil {
							t.Errorf("goroutine %d, delete %d: %v", g, i, err)
						}
					}
				}
			})
		}
		wg.Wait()
	})
}

// TestSetupSoftHSM2RefusesSecondDir: while a store is open on libsofthsm2,
// preparing a token in another directory fails with the reason (the module
// would never see it), and works once the store is closed.
func TestSetupSoftHSM2RefusesSecondDir(t *testing.T) {
	_, cfg := newSoftHSM2(t)
	s, err := NewPKCS11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := SetupSoftHSM2(other, "second", testSOPIN, testUserPIN); err == nil || !strings.Contains(err.Error(), "close every PKCS#11 store") {
		t.Errorf("SetupSoftHSM2 on a second dir while a store is open = %v, want the refusal", err)
	}
	s.Close()
	cfg2, err := SetupSoftHSM2(other, "second", testSOPIN, testUserPIN)
	if err != nil {
		t.Fatalf("after the store closed: %v", err)
	}
	s2, err := NewPKCS11(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}
