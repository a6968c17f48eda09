package refgw

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"testing"
	"time"
)

func TestPBKDF2(t *testing.T) {
	want, err := pbkdf2.Key(sha256.New, "password", []byte("salt"), 4097, 32)
	if err != nil {
		t.Fatal(err)
	}
	if got := pbkdf2SHA256(context.Background(), []byte("password"), []byte("salt"), 4097); !bytes.Equal(got, want) {
		t.Errorf("pbkdf2SHA256 = %x, want %x", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	pbkdf2SHA256(ctx, []byte("p"), []byte("s"), 1<<40)
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("a cancelled derivation ran %v", d)
	}
}

func TestInflateAll(t *testing.T) {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	_, _ = w.Write(make([]byte, 3<<20))
	_ = w.Close()
	if n := inflateAll(context.Background(), z.Bytes()); n != 3<<20 {
		t.Errorf("inflated %d bytes, want %d", n, 3<<20)
	}
	if n := inflateAll(context.Background(), []byte("not deflate")); n > 64 {
		t.Errorf("garbage inflated to %d bytes", n)
	}
}
