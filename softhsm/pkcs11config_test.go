package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePKCS11URI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    PKCS11URI
		wantErr bool
	}{
		{in: "pkcs11:", want: PKCS11URI{}},
		{in: "pkcs11:token=agentsso", want: PKCS11URI{Token: "agentsso"}},
		{
			in:   "pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;serial=df8c60d784d7ef15?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
			want: PKCS11URI{Token: "My Token", Manufacturer: "SoftHSM project", Serial: "df8c60d784d7ef15", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINValue: "1234"},
		},
		{in: "pkcs11:token=a;model=SoftHSM%20v2?pin-source=file:/run/pin", want: PKCS11URI{Token: "a", Model: "SoftHSM v2", PINSource: "/run/pin"}},
		{in: "pkcs11:token=a?pin-source=file:///run/pin", want: PKCS11URI{Token: "a", PINSource: "/run/pin"}},
		{in: "pkcs11:token=a?pin-source=/run/pin", want: PKCS11URI{Token: "a", PINSource: "/run/pin"}},
		{in: "pkcs11:token=a;", want: PKCS11URI{Token: "a"}},
		{in: "pkcs11:token=a+b", want: PKCS11URI{Token: "a+b"}},
		{in: "token=a", wantErr: true},
		{in: "PKCS11:token=a", wantErr: true},
		{in: "pkcs11:token=a;token=b", wantErr: true},
		{in: "pkcs11:token=a;object=key", wantErr: true},
		{in: "pkcs11:token=a;id=%01", wantErr: true},
		{in: "pkcs11:slot-id=1", wantErr: true},
		{in: "pkcs11:token=a?module-name=softhsm2", wantErr: true},
		{in: "pkcs11:token=a?pin-value=1&pin-source=/f", wantErr: true},
		{in: "pkcs11:token=%zz", wantErr: true},
		{in: "pkcs11:token", wantErr: true},
		{in: "pkcs11:x-vendor=1", wantErr: true},
		{in: "pkcs11:token=a?token=b", wantErr: true},
	} {
		got, err := ParsePKCS11URI(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParsePKCS11URI(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" && !tc.wantErr {
			t.Errorf("ParsePKCS11URI(%q) (-want +got):\n%s", tc.in, d)
		}
	}
}

func TestPKCS11ConfigResolve(t *testing.T) {
	t.Parallel()
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("secret-pin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		in        PKCS11Config
		want      PKCS11Config
		wantField string // a *ConfigError for this field
	}{
		{
			name: "fields",
			in:   PKCS11Config{Module: "/m.so", Token: "t", PIN: "1234"},
			want: PKCS11Config{Module: "/m.so", Token: "t", PIN: "1234"},
		},
		{
			name: "uri",
			in:   PKCS11Config{URI: "pkcs11:token=t?module-path=/m.so&pin-value=1234", Sessions: 2},
			want: PKCS11Config{Module: "/m.so", Token: "t", PIN: "1234", Sessions: 2},
		},
		{
			name: "uri-and-equal-field",
			in:   PKCS11Config{URI: "pkcs11:token=t?module-path=/m.so", Token: "t", PIN: "1234"},
			want: PKCS11Config{Module: "/m.so", Token: "t", PIN: "1234"},
		},
		{
			name: "pin-source",
			in:   PKCS11Config{URI: "pkcs11:token=t?module-path=/m.so&pin-source=file:" + pinFile},
			want: PKCS11Config{Module: "/m.so", Token: "t", PIN: "secret-pin"},
		},
		{name: "token-conflict", in: PKCS11Config{URI: "pkcs11:token=a", Token: "b", Module: "/m.so", PIN: "1"}, wantField: "keys.pkcs11.uri"},
		{name: "module-conflict", in: PKCS11Config{URI: "pkcs11:token=a?module-path=/x.so", Module: "/m.so", PIN: "1"}, wantField: "keys.pkcs11.uri"},
		{name: "pin-conflict", in: PKCS11Config{URI: "pkcs11:token=a?module-path=/x.so&pin-value=1", PIN: "2"}, wantField: "keys.pkcs11.uri"},
		{name: "pin-and-file", in: PKCS11Config{Module: "/m.so", Token: "t", PIN: "1", PINFile: pinFile}, wantField: "keys.pkcs11.pin"},
		{name: "missing-pin-file", in: PKCS11Config{Module: "/m.so", Token: "t", PINFile: pinFile + ".nope"}, wantField: "keys.pkcs11.pin_file"},
		{name: "no-module", in: PKCS11Config{Token: "t", PIN: "1"}, wantField: "keys.pkcs11.module"},
		{name: "no-token", in: PKCS11Config{Module: "/m.so", PIN: "1"}, wantField: "keys.pkcs11.token"},
		{name: "no-pin", in: PKCS11Config{Module: "/m.so", Token: "t"}, wantField: "keys.pkcs11.pin"},
		{name: "bad-uri", in: PKCS11Config{URI: "pkcs11:object=x"}, wantField: "keys.pkcs11.uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Resolve()
			if tc.wantField != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tc.wantField {
					t.Fatalf("Resolve = %v, want a *ConfigError for %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Resolve (-want +got):\n%s", d)
			}
		})
	}
}

// TestPKCS11ConfigRedacts checks that printing a configuration never shows
// the PIN, whichever field holds it.
func TestPKCS11ConfigRedacts(t *testing.T) {
	t.Parallel()
	cfg := PKCS11Config{URI: "pkcs11:token=t?pin-value=uri-secret", PIN: "field-secret"}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg)} {
		if strings.Contains(s, "secret") {
			t.Errorf("formatted config shows a PIN: %s", s)
		}
	}
	_, err := (PKCS11Config{URI: "pkcs11:token=t?pin-value=uri-secret;bad", Module: "/m.so"}).Resolve()
	if err != nil && strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows a PIN: %v", err)
	}
}

// FuzzParsePKCS11URI checks that the parser never panics and that what it
// accepts survives Encode and a second parse unchanged.
func FuzzParsePKCS11URI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:",
		"pkcs11:token=agentsso?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
		"pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=1?pin-source=file:///run/pin",
		"pkcs11:token=a;token=b",
		"pkcs11:object=x;id=%01%02",
		"pkcs11:token=%zz?",
		"pkcs11:token=a?pin-source=file:file%3Ax",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParsePKCS11URI(s)
		if err != nil {
			return
		}
		enc := u.Encode()
		u2, err := ParsePKCS11URI(enc)
		if err != nil {
			t.Fatalf("Encode of %q = %q, which does not parse: %v", s, enc, err)
		}
		if d := cmp.Diff(u, u2); d != "" {
			t.Fatalf("round trip of %q via %q (-first +second):\n%s", s, enc, d)
		}
	})
}
