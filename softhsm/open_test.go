package softhsm

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("memory-default", func(t *testing.T) {
		s, err := Open(ctx, Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Backend() != "memory" {
			t.Errorf("Backend() = %q, want memory", s.Backend())
		}
	})

	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"unknown-backend", Config{Backend: "foo"}, "keys.backend"},
		{"pkcs11-no-module", Config{Backend: "pkcs11", PKCS11: PKCS11Config{Token: "t", PIN: "1234"}}, "keys.pkcs11.module"},
		{"pkcs11-no-pin", Config{Backend: "pkcs11", PKCS11: PKCS11Config{URI: "pkcs11:token=t?module-path=/x.so"}}, "keys.pkcs11.pin"},
		{"pkcs11-conflict", Config{Backend: "pkcs11", PKCS11: PKCS11Config{URI: "pkcs11:token=a", Token: "b"}}, "keys.pkcs11.uri"},
		{"tpm-no-dir", Config{Backend: "tpm", TPM: TPMConfig{Addr: "127.0.0.1:1"}}, "keys.tpm.key_dir"},
		{"tpm-no-target", Config{Backend: "tpm", Dir: filepath.Join(t.TempDir(), "k")}, "keys.tpm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctx, tc.cfg)
			if err == nil {
				s.Close()
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Errorf("Open = %v, want a *ConfigError for %s", err, tc.field)
			}
		})
	}
}

func TestOpenTPM(t *testing.T) {
	requireSWTPM(t)
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(context.Background(), Config{Backend: "tpm", Dir: dir, TPM: TPMConfig{StateDir: filepath.Join(dir, "state")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Create(context.Background(), "acme", ES256)
	if err != nil {
		t.Fatal(err)
	}
	checkSignVerify(t, k)
}

func TestOpenPKCS11(t *testing.T) {
	_, cfg := newSoftHSM2(t)
	s, err := Open(context.Background(), Config{Backend: "pkcs11", PKCS11: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Create(context.Background(), "acme", ES256)
	if err != nil {
		t.Fatal(err)
	}
	checkSignVerify(t, k)
}
