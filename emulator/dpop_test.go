package emulator_test

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

const dpopTestURL = "https://as.example/t/acme/token"

var dpopTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestVerifyDPoPProof: a proof by every allowed algorithm verifies and
// yields its claims and its key's RFC 7638 thumbprint.
func TestVerifyDPoPProof(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			k := emulatortest.NewDPoPKey(t, alg)
			raw := k.Proof(t, "POST", dpopTestURL, dpopTestNow, &emulatortest.DPoPOptions{Claims: map[string]any{"jti": "j-1", "nonce": "n-1"}})
			got, err := emulator.VerifyDPoPProof(raw, emulator.DPoPCheck{Method: "POST", URL: dpopTestURL, Now: dpopTestNow})
			if err != nil {
				t.Fatal(err)
			}
			want := &emulator.DPoPProof{JTI: "j-1", HTM: "POST", HTU: dpopTestURL, IAT: dpopTestNow, Nonce: "n-1", Alg: string(alg), JKT: k.JKT()}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(emulator.DPoPProof{}, "JWK"), cmp.Comparer(time.Time.Equal)); diff != "" {
				t.Errorf("proof (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifyDPoPProofRefused is RFC 9449 section 4.3, one bad proof per
// check, each refused with its sentinel.
func TestVerifyDPoPProofRefused(t *testing.T) {
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	other := emulatortest.NewDPoPKey(t, jose.ES256)
	p384 := emulatortest.NewDPoPKey(t, jose.ES384)
	const tok = "the-access-token"
	proof := func(h, c map[string]any) func(*testing.T) string {
		return func(t *testing.T) string {
			return k.Proof(t, "POST", dpopTestURL, dpopTestNow, &emulatortest.DPoPOptions{Header: h, Claims: c})
		}
	}
	tests := []struct {
		name  string
		proof func(*testing.T) string
		chk   func(*emulator.DPoPCheck)
		want  error
	}{
		{"empty", func(*testing.T) string { return "" }, nil, emulator.ErrDPoPMalformed},
		{"not a JWS", func(*testing.T) string { return "a.b" }, nil, emulator.ErrDPoPMalformed},
		{"header not base64", func(*testing.T) string { return "!!.e30.sig" }, nil, emulator.ErrDPoPMalformed},
		{"header not JSON", func(*testing.T) string { return b64("nope") + ".e30.c2ln" }, nil, emulator.ErrDPoPMalformed},
		{"too large", func(*testing.T) string { return strings.Repeat("a", 9000) + ".b.c" }, nil, emulator.ErrDPoPMalformed},
		{"missing typ", proof(map[string]any{"typ": nil}, nil), nil, emulator.ErrDPoPTyp},
		{"typ JWT", proof(map[string]any{"typ": "JWT"}, nil), nil, emulator.ErrDPoPTyp},
		{"typ not a string", proof(map[string]any{"typ": 1}, nil), nil, emulator.ErrDPoPTyp},
		{"alg none", func(t *testing.T) string { return unsigned(t, k, "none") }, nil, emulator.ErrDPoPAlg},
		{"alg HS256", func(t *testing.T) string { return hmacProof(t, k) }, nil, emulator.ErrDPoPAlg},
		{"alg ES512", func(t *testing.T) string { return unsigned(t, k, "ES512") }, nil, emulator.ErrDPoPAlg},
		{"crit", proof(map[string]any{"crit": []string{"exp"}, "exp": 1}, nil), nil, emulator.ErrDPoPMalformed},
		{"no jwk", proof(map[string]any{"jwk": nil}, nil), nil, emulator.ErrDPoPKey},
		{"private key in jwk", proof(map[string]any{"jwk": k.PrivateJWK()}, nil), nil, emulator.ErrDPoPKey},
		{"symmetric jwk", proof(map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}, nil), nil, emulator.ErrDPoPKey},
		{"jwk of another curve", proof(map[string]any{"jwk": p384.PublicJWK()}, nil), nil, emulator.ErrDPoPKey},
		{"jwk not the signer", proof(map[string]any{"jwk": other.PublicJWK()}, nil), nil, emulator.ErrDPoPSignature},
		{"signature altered", func(t *testing.T) string { return flipSig(k.Proof(t, "POST", dpopTestURL, dpopTestNow, nil)) }, nil, emulator.ErrDPoPSignature},
		{"missing jti", proof(nil, map[string]any{"jti": nil}), nil, emulator.ErrDPoPClaims},
		{"empty jti", proof(nil, map[string]any{"jti": ""}), nil, emulator.ErrDPoPClaims},
		{"long jti", proof(nil, map[string]any{"jti": strings.Repeat("j", 300)}), nil, emulator.ErrDPoPClaims},
		{"missing htm", proof(nil, map[string]any{"htm": nil}), nil, emulator.ErrDPoPClaims},
		{"missing htu", proof(nil, map[string]any{"htu": nil}), nil, emulator.ErrDPoPClaims},
		{"missing iat", proof(nil, map[string]any{"iat": nil}), nil, emulator.ErrDPoPClaims},
		{"iat a string", proof(nil, map[string]any{"iat": "1700000000"}), nil, emulator.ErrDPoPClaims},
		{"nonce a number", proof(nil, map[string]any{"nonce": 7}), nil, emulator.ErrDPoPClaims},
		{"wrong htm", proof(nil, map[string]any{"htm": "GET"}), nil, emulator.ErrDPoPMethod},
		{"htm lowercase", proof(nil, map[string]any{"htm": "post"}), nil, emulator.ErrDPoPMethod},
		{"wrong htu path", proof(nil, map[string]any{"htu": "https://as.example/t/acme/userinfo"}), nil, emulator.ErrDPoPURL},
		{"wrong htu host", proof(nil, map[string]any{"htu": "https://evil.example/t/acme/token"}), nil, emulator.ErrDPoPURL},
		{"wrong htu scheme", proof(nil, map[string]any{"htu": "http://as.example/t/acme/token"}), nil, emulator.ErrDPoPURL},
		{"relative htu", proof(nil, map[string]any{"htu": "/t/acme/token"}), nil, emulator.ErrDPoPURL},
		{"stale iat", proof(nil, map[string]any{"iat": dpopTestNow.Add(-61 * time.Second).Unix()}), nil, emulator.ErrDPoPIat},
		{"future iat", proof(nil, map[string]any{"iat": dpopTestNow.Add(61 * time.Second).Unix()}), nil, emulator.ErrDPoPIat},
		{"missing ath", proof(nil, nil), func(c *emulator.DPoPCheck) { c.AccessToken = tok }, emulator.ErrDPoPAth},
		{"wrong ath", proof(nil, map[string]any{"ath": emulatortest.ATH("another token")}), func(c *emulator.DPoPCheck) { c.AccessToken = tok }, emulator.ErrDPoPAth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chk := emulator.DPoPCheck{Method: "POST", URL: dpopTestURL, Now: dpopTestNow}
			if tt.chk != nil {
				tt.chk(&chk)
			}
			_, err := emulator.VerifyDPoPProof(tt.proof(t), chk)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestVerifyDPoPProofAccepted: what RFC 9449 lets vary.
func TestVerifyDPoPProofAccepted(t *testing.T) {
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	const tok = "the-access-token"
	tests := []struct {
		name   string
		header map[string]any
		claims map[string]any
		chk    func(*emulator.DPoPCheck)
	}{
		{"htu with query and fragment", nil, map[string]any{"htu": dpopTestURL + "?a=b#frag"}, nil},
		{"htu host in capitals, default port", nil, map[string]any{"htu": "HTTPS://AS.EXAMPLE:443/t/acme/token"}, nil},
		{"typ application/dpop+jwt", map[string]any{"typ": "application/dpop+jwt"}, nil, nil},
		{"iat at the window's edge", nil, map[string]any{"iat": dpopTestNow.Add(-60 * time.Second).Unix()}, nil},
		{"iat with a fraction", nil, map[string]any{"iat": float64(dpopTestNow.Unix()) + 0.5}, nil},
		{"ath", nil, map[string]any{"ath": emulatortest.ATH(tok)}, func(c *emulator.DPoPCheck) { c.AccessToken = tok }},
		{"wider window", nil, map[string]any{"iat": dpopTestNow.Add(-5 * time.Minute).Unix()}, func(c *emulator.DPoPCheck) { c.Window = 10 * time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chk := emulator.DPoPCheck{Method: "POST", URL: dpopTestURL, Now: dpopTestNow}
			if tt.chk != nil {
				tt.chk(&chk)
			}
			raw := k.Proof(t, "POST", dpopTestURL, dpopTestNow, &emulatortest.DPoPOptions{Header: tt.header, Claims: tt.claims})
			if _, err := emulator.VerifyDPoPProof(raw, chk); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// FuzzDPoPProof: the verifier never panics on untrusted input, and what
// it accepts is a proof for the request it was checked against.
func FuzzDPoPProof(f *testing.F) {
	k := emulatortest.NewDPoPKey(f, jose.ES256)
	now := time.Unix(1_700_000_000, 0)
	f.Add(k.Proof(f, "POST", dpopTestURL, now, nil))
	f.Add(k.Proof(f, "POST", dpopTestURL, now, &emulatortest.DPoPOptions{Header: map[string]any{"jwk": k.PrivateJWK()}}))
	f.Add(k.Proof(f, "POST", dpopTestURL, now, &emulatortest.DPoPOptions{Claims: map[string]any{"iat": 1e300, "jti": 5}}))
	f.Add(b64(`{"typ":"dpop+jwt","alg":"none","jwk":{}}`) + "." + b64(`{}`) + ".")
	f.Add(b64(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"","y":""}}`) + ".e30.AA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := emulator.VerifyDPoPProof(raw, emulator.DPoPCheck{Method: "POST", URL: dpopTestURL, Now: now})
		if err != nil {
			return
		}
		if p == nil || p.JKT == "" || p.JTI == "" || p.HTM != "POST" {
			t.Fatalf("accepted an incomplete proof %+v", p)
		}
		if d := p.IAT.Sub(now); d > emulator.DPoPWindow || d < -emulator.DPoPWindow {
			t.Fatalf("accepted iat %s", p.IAT)
		}
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// unsigned is a proof with alg set to alg and no valid signature.
func unsigned(t *testing.T, k *emulatortest.DPoPKey, alg string) string {
	t.Helper()
	jwk, err := k.PublicJWK().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	h := `{"typ":"dpop+jwt","alg":"` + alg + `","jwk":` + string(jwk) + `}`
	c := `{"jti":"x","htm":"POST","htu":"` + dpopTestURL + `","iat":` + strconv.FormatInt(dpopTestNow.Unix(), 10) + `}`
	return b64(h) + "." + b64(c) + "."
}

// hmacProof is a proof MACed with HS256, embedding an EC public key.
func hmacProof(t *testing.T, k *emulatortest.DPoPKey) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
		(&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", k.PublicJWK()))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(`{"jti":"x","htm":"POST","htu":"` + dpopTestURL + `","iat":` + strconv.FormatInt(dpopTestNow.Unix(), 10) + `}`))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func flipSig(s string) string {
	i := strings.LastIndexByte(s, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(s[i+1:])
	sig[len(sig)/2] ^= 1
	return s[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}
