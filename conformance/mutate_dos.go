package conformance

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
)

// Token shapes that cost a careless parser time or memory
// (jwt-oversize-dos). Each is built from a signed token after signing, so
// none of them verifies: a conforming target refuses them, quickly.

const (
	oversizeBytes = 1 << 20
	dotCount      = 100_000
	// bombBytes inflate from about a thousandth of their size: the token
	// stays under a 16 KiB cap, so a target with a sane size limit still
	// meets it.
	bombBytes = 10 << 20
	// p2cHuge is the largest p2c a 32-bit signed count holds.
	p2cHuge = 1<<31 - 1
)

// splitToken returns the decoded header (nil if it does not decode) and
// the segments.
func splitToken(t string) (map[string]any, []string) {
	parts := strings.Split(t, ".")
	var h map[string]any
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil {
		_ = json.Unmarshal(b, &h)
	}
	if h == nil {
		h = map[string]any{"alg": "ES256", "typ": "at+jwt"}
	}
	return h, parts
}

// oversizeToken pads the claims with a filler member until the token is
// 1 MiB.
func oversizeToken(t string) string {
	_, parts := splitToken(t)
	if len(parts) != 3 {
		return t + strings.Repeat("A", oversizeBytes-len(t))
	}
	var claims map[string]any
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || json.Unmarshal(b, &claims) != nil {
		claims = map[string]any{}
	}
	claims["pad"] = ""
	base, _ := json.Marshal(claims)
	// Every 3 bytes of JSON are 4 of base64url.
	room := oversizeBytes - len(parts[0]) - len(parts[2]) - 2
	claims["pad"] = strings.Repeat("A", room*3/4-len(base))
	b, _ := json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func manyDots(t string) string { return t + strings.Repeat(".", dotCount) }

// deepHeader adds a member nested depth arrays deep to the header: a
// recursive JSON parser runs out of stack on it; the header is parsed
// before any signature is checked.
func deepHeader(depth int) func(string) string {
	return func(t string) string {
		h, parts := splitToken(t)
		b, _ := json.Marshal(h)
		var deep bytes.Buffer
		deep.Write(b[:len(b)-1])
		deep.WriteString(`,"x-deep":`)
		deep.WriteString(strings.Repeat("[", depth))
		deep.WriteString(strings.Repeat("]", depth))
		deep.WriteByte('}')
		out := base64.RawURLEncoding.EncodeToString(deep.Bytes())
		if len(parts) > 1 {
			out += "." + strings.Join(parts[1:], ".")
		}
		return out
	}
}

// p2cJWE is a five-part JWE whose PBES2 key derivation asks for 2^31-1
// iterations (the "billion hashes" of go-jose before 3.0.1): minutes of
// CPU for a target that runs them before refusing.
func p2cJWE(t string) string {
	h, _ := splitToken(t)
	seed := sha256.Sum256([]byte(t))
	hdr := map[string]any{"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2c": p2cHuge,
		"p2s": base64.RawURLEncoding.EncodeToString(seed[:16]), "cty": "JWT"}
	if kid, ok := h["kid"]; ok {
		hdr["kid"] = kid
	}
	b, _ := json.Marshal(hdr)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(b) + "." + enc(seed[:24]) + "." + enc(seed[:12]) + "." + enc([]byte(t)) + "." + enc(seed[16:32])
}

// zipBomb is a JWS-shaped token whose header says zip: DEF over a payload
// of 10 MiB of zeros, deflated to about 10 KiB (CVE-2024-28180 is the JWE
// form; a target inflating before it verifies pays the same).
func zipBomb(t string) string {
	h, parts := splitToken(t)
	h["zip"] = "DEF"
	b, _ := json.Marshal(h)
	sig := ""
	if len(parts) == 3 {
		sig = parts[2]
	}
	return base64.RawURLEncoding.EncodeToString(b) + "." + bombPayload() + "." + sig
}

// bombPayload is the deflated zeros, base64url, built once (about 30 ms).
var bombPayload = sync.OnceValue(func() string {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	zero := make([]byte, 64<<10)
	for n := 0; n < bombBytes; n += len(zero) {
		_, _ = w.Write(zero)
	}
	_ = w.Close()
	return base64.RawURLEncoding.EncodeToString(z.Bytes())
})
