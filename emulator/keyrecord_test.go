package emulator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/emulator"
)

// TestKeysGoneRefusesToStart: with a state directory, a tenant whose keys
// have vanished from the backend is refused at start, naming the fix,
// rather than given a new signing identity.
func TestKeysGoneRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := emulator.DefaultConfig()
	cfg.StateDir = dir
	cfg.Keys.Backend = "memory"
	s, err := emulator.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := s.ActiveKID("acme")
	if _, err := emulator.New(context.Background(), cfg); err != nil {
		t.Fatalf("a restart with the keys in place must work: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "keys", "memory", "acme")); err != nil {
		t.Fatal(err)
	}
	_, err = emulator.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), kid) || !strings.Contains(err.Error(), "kids.json") {
		t.Fatalf("error %v: want a refusal naming kid %s and kids.json", err, kid)
	}
}
