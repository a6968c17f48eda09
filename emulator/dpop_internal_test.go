package emulator

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestNormalizeHTU(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://AS.Example/t/acme/token", "https://as.example/t/acme/token"},
		{"HTTPS://as.example:443/t/acme/token?x=1#f", "https://as.example/t/acme/token"},
		{"http://127.0.0.1:80/token", "http://127.0.0.1/token"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/"},
		{"https://[::1]:8443/token", "https://[::1]:8443/token"},
		{"https://as.example/t/acme/%74oken", "https://as.example/t/acme/%74oken"},
	}
	for _, tt := range tests {
		got, err := normalizeHTU(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("normalizeHTU(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"/token", "ftp://as.example/token", "https://user@as.example/token", "https:///token", "%zz"} {
		if got, err := normalizeHTU(bad); err == nil {
			t.Errorf("normalizeHTU(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDPoPReplayCache: a jti is refused while its proof could still be
// accepted, and forgotten once the proof's iat has left the window.
func TestDPoPReplayCache(t *testing.T) {
	var d dpopState
	now := time.Unix(1_700_000_000, 0)
	if err := d.useJTI("a", now, now); err != nil {
		t.Fatal(err)
	}
	if err := d.useJTI("a", now, now.Add(DPoPWindow)); !errors.Is(err, ErrDPoPReplay) {
		t.Fatalf("replay: %v, want ErrDPoPReplay", err)
	}
	// Fill past a sweep, later than the first entry's expiry.
	later := now.Add(2*DPoPWindow + time.Second)
	for i := range 5000 {
		if err := d.useJTI(fmt.Sprint("j", i), later, later); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.useJTI("a", later, later); err != nil {
		t.Errorf("after the window and a sweep: %v, want the jti forgotten", err)
	}
	if n := len(d.seen); n > 5001 {
		t.Errorf("%d entries, want the expired ones swept", n)
	}
}

// TestDPoPNonceRotation: current and previous nonces are accepted, and
// both are replaced after a long pause.
func TestDPoPNonceRotation(t *testing.T) {
	var d dpopState
	now := time.Unix(1_700_000_000, 0)
	n1 := d.nonce(now)
	n2 := d.nonce(now.Add(DPoPNonceRotation))
	if n1 == n2 {
		t.Fatal("the nonce did not rotate")
	}
	for _, n := range []string{n1, n2} {
		if err := d.checkNonce(n, now.Add(DPoPNonceRotation)); err != nil {
			t.Errorf("nonce %q: %v", n, err)
		}
	}
	if err := d.checkNonce(n2, now.Add(4*DPoPNonceRotation)); !errors.Is(err, ErrDPoPNonce) {
		t.Errorf("after a long pause: %v, want ErrDPoPNonce", err)
	}
	if err := d.checkNonce("", now); !errors.Is(err, ErrDPoPNonce) {
		t.Errorf("no nonce: %v, want ErrDPoPNonce", err)
	}
}
