package refgw

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"strings"
)

// decodeUnbounded is the no-size-limit flaw: before any check, it does
// whatever decoding the token asks for, however much that costs, as
// careless JOSE libraries did. A zip: DEF payload is inflated in full
// (CVE-2024-28180); an encrypted token's PBES2 key is derived with the
// header's p2c iterations (go-jose before 3.0.1). The work stops only when
// the request's context ends (the caller gave up), so that a test run does
// not burn CPU for minutes after it.
func (g *Gateway) decodeUnbounded(ctx context.Context, tok string) {
	parts := strings.Split(tok, ".")
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return
	}
	var h struct {
		Alg string  `json:"alg"`
		Zip string  `json:"zip"`
		P2C float64 `json:"p2c"`
		P2S string  `json:"p2s"`
	}
	if json.Unmarshal(hb, &h) != nil {
		return
	}
	if h.Zip == "DEF" && len(parts) >= 2 {
		if z, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			inflateAll(ctx, z)
		}
	}
	if len(parts) == 5 && strings.HasPrefix(h.Alg, "PBES2-") && h.P2C >= 1 {
		salt, _ := base64.RawURLEncoding.DecodeString(h.P2S)
		pbkdf2SHA256(ctx, []byte(g.cfg.Audience), append(append([]byte(h.Alg), 0), salt...), int64(min(h.P2C, 1<<53)))
	}
}

// inflateAll inflates a deflate stream to the end, whatever its size,
// checking ctx between chunks; the output is thrown away.
func inflateAll(ctx context.Context, z []byte) int64 {
	r := flate.NewReader(bytes.NewReader(z))
	defer r.Close()
	buf := make([]byte, 256<<10)
	var n int64
	for ctx.Err() == nil {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF || err != nil && k == 0 {
			break
		}
	}
	return n
}

// pbkdf2SHA256 derives one 32-byte block with iter iterations (RFC 8018
// section 5.2), checking ctx every 4096 iterations.
func pbkdf2SHA256(ctx context.Context, password, salt []byte, iter int64) []byte {
	mac := hmac.New(sha256.New, password)
	var idx [4]byte
	binary.BigEndian.PutUint32(idx[:], 1)
	mac.Write(salt)
	mac.Write(idx[:])
	u := mac.Sum(nil)
	t := bytes.Clone(u)
	for i := int64(1); i < iter; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			break
		}
		mac.Reset()
		mac.Write(u)
		u = mac.Sum(u[:0])
		for j := range t {
			t[j] ^= u[j]
		}
	}
	return t
}
