package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// es256Proof makes a DPoP proof for POST u at now, signed by signer, with
// key's public JWK in the header.
func es256Proof(t *testing.T, signer, key *ecdsa.PrivateKey, u string, now time.Time, jti string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", jose.JSONWebKey{Key: key.Public()})
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: signer}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"jti": jti, "htm": "POST", "htu": u, "iat": now.Unix()})
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withSig replaces a compact JWS's signature.
func withSig(proof string, sig []byte) string {
	return proof[:strings.LastIndexByte(proof, '.')+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func sigOf(proof string) []byte {
	b, _ := base64.RawURLEncoding.DecodeString(proof[strings.LastIndexByte(proof, '.')+1:])
	return b
}

// TestDPoPSignatureChecks: a key whose proofs keep verifying (its header
// and key cached) still has every bad signature refused: a flipped bit,
// another key's signature, zero (CVE-2022-21449) or out-of-range r and s,
// a signature moved to another payload.
func TestDPoPSignatureChecks(t *testing.T) {
	const u = "https://as.example/t/acme/token"
	now := time.Unix(1_750_000_000, 0)
	chk := DPoPCheck{Method: "POST", URL: u, Now: now}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	for i := range 6 {
		p := es256Proof(t, k, k, u, now, "warm-"+itoaTest(i))
		if _, err := VerifyDPoPProof(p, chk); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
	}

	good := es256Proof(t, k, k, u, now, "good")
	if _, err := VerifyDPoPProof(good, chk); err != nil {
		t.Fatalf("a good proof: %v", err)
	}
	sig := sigOf(good)
	n := elliptic.P256().Params().N
	highS := append([]byte(nil), sig...)
	new(big.Int).Sub(n, new(big.Int).SetBytes(sig[32:])).FillBytes(highS[32:])
	if _, err := VerifyDPoPProof(withSig(good, highS), chk); err != nil {
		t.Errorf("n - s (crypto/ecdsa accepts it): %v", err)
	}
	flipped := append([]byte(nil), sig...)
	flipped[40] ^= 0x10
	rN := append([]byte(nil), sig...)
	n.FillBytes(rN[:32])
	for name, p := range map[string]string{
		"flipped bit":                  withSig(good, flipped),
		"another key's signature":      withSig(good, sigOf(es256Proof(t, other, k, u, now, "good"))),
		"signature of another proof":   withSig(good, sigOf(es256Proof(t, k, k, u, now, "other"))),
		"r and s zero":                 withSig(good, make([]byte, 64)),
		"r = n":                        withSig(good, rN),
		"short signature":              withSig(good, sig[:63]),
		"another key's proof, k's jwk": es256Proof(t, other, k, u, now, "forged"),
	} {
		if _, err := VerifyDPoPProof(p, chk); !errors.Is(err, ErrDPoPSignature) {
			t.Errorf("%s: %v, want ErrDPoPSignature", name, err)
		}
	}
}

func itoaTest(i int) string { return big.NewInt(int64(i)).String() }
