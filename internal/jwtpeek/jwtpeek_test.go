package jwtpeek

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func seg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestPeek(t *testing.T) {
	h, c := seg(`{"alg":"ES256","kid":"k1"}`), seg(`{"sub":"bot","aud":["a","b"],"exp":5}`)
	for _, tt := range []struct {
		name          string
		tok           string
		header, claim map[string]any
	}{
		{"a JWS", h + "." + c + ".sig", map[string]any{"alg": "ES256", "kid": "k1"}, map[string]any{"sub": "bot", "aud": []any{"a", "b"}, "exp": 5.0}},
		{"unsigned", h + "." + c + ".", map[string]any{"alg": "ES256", "kid": "k1"}, map[string]any{"sub": "bot", "aud": []any{"a", "b"}, "exp": 5.0}},
		{"many dots", h + "." + c + strings.Repeat(".", 1000), map[string]any{"alg": "ES256", "kid": "k1"}, map[string]any{"sub": "bot", "aud": []any{"a", "b"}, "exp": 5.0}},
		{"opaque", "0a1b2c3d4e", nil, nil},
		{"not base64url", "a+b.c/d.e", nil, nil},
		{"not an object", seg(`[1]`) + "." + seg(`"x"`) + ".s", nil, nil},
		{"empty", "", nil, nil},
	} {
		if d := cmp.Diff(tt.header, Header(tt.tok)); d != "" {
			t.Errorf("%s: Header (-want +got):\n%s", tt.name, d)
		}
		if d := cmp.Diff(tt.claim, Claims(tt.tok)); d != "" {
			t.Errorf("%s: Claims (-want +got):\n%s", tt.name, d)
		}
	}
}

// FuzzPeek: any string, however hostile, gives a map or nil, never a panic.
func FuzzPeek(f *testing.F) {
	f.Add(seg(`{"alg":"none"}`) + "." + seg(`{"sub":"x"}`) + ".")
	f.Add("...")
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		Header(tok)
		Claims(tok)
	})
}
