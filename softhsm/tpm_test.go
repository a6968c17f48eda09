package softhsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTPMStore runs the store suite on an swtpm that NewTPM starts and
// stops itself: every reopen restarts swtpm on the same state directory.
func TestTPMStore(t *testing.T) {
	requireSWTPM(t)
	t.Parallel()
	dir := t.TempDir()
	cfg := TPMConfig{StateDir: filepath.Join(dir, "state"), KeyDir: filepath.Join(dir, "keys")}
	storeSuite{
		algs:            []string{ES256, ES384, RS256, PS256},
		unsupported:     []string{EdDSA, "HS256"},
		signAfterDelete: true,
		open: func(t *testing.T) Store {
			s, err := NewTPM(cfg)
			if err != nil {
				t.Fatalf("NewTPM: %v", err)
			}
			return s
		},
	}.run(t)
}

// TestTPMAttach attaches to an swtpm started separately, restarts that
// swtpm, and checks that the store never stops an swtpm it did not start.
func TestTPMAttach(t *testing.T) {
	requireSWTPM(t)
	t.Parallel()
	dir := t.TempDir()
	state, keyDir := filepath.Join(dir, "state"), filepath.Join(dir, "keys")
	ctx := context.Background()

	sw := startSWTPM(t, state)
	s, err := NewTPM(TPMConfig{Addr: sw.Addr(), KeyDir: keyDir})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Create(ctx, "acme", ES256)
	if err != nil {
		t.Fatal(err)
	}
	checkSignVerify(t, k)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sw.Exited():
		t.Fatal("closing an attached store stopped swtpm")
	case <-time.After(100 * time.Millisecond):
	}

	// Restart swtpm on the same state: the key is served again.
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	sw = startSWTPM(t, state)
	s, err = NewTPM(TPMConfig{Addr: sw.Addr(), KeyDir: keyDir, FlushTransient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := s.List(ctx, "acme")
	if err != nil || len(keys) != 1 || keys[0].KID != k.KID {
		t.Fatalf("after restarting swtpm: List = %v, %v; want kid %s", keys, err, k.KID)
	}
	checkSignVerify(t, keys[0])
}

func startSWTPM(t *testing.T, state string) *SWTPM {
	t.Helper()
	sw, err := StartSWTPM(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return sw
}

// TestTPMManyKeys uses more keys than a TPM without a resource manager has
// object slots, from several goroutines, so that keys are swapped in and
// out of the TPM between signatures.
func TestTPMManyKeys(t *testing.T) {
	requireSWTPM(t)
	t.Parallel()
	dir := t.TempDir()
	s, err := NewTPM(TPMConfig{StateDir: filepath.Join(dir, "state"), KeyDir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var keys []Key
	for i := range 6 {
		alg := ES256
		if i == 5 {
			alg = RS256
		}
		k, err := s.Create(context.Background(), "tenant-"+string(rune('a'+i%3)), alg)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 15 {
				checkSignVerify(t, keys[(g+i)%len(keys)])
			}
		})
	}
	wg.Wait()
}

// TestTPMClose checks that Close stops the swtpm NewTPM started and that
// the store's signers fail cleanly afterwards.
func TestTPMClose(t *testing.T) {
	requireSWTPM(t)
	t.Parallel()
	dir := t.TempDir()
	s, err := NewTPM(TPMConfig{StateDir: filepath.Join(dir, "state"), KeyDir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Create(context.Background(), "acme", ES256)
	if err != nil {
		t.Fatal(err)
	}
	pid := s.sw.PID()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-s.sw.Exited():
	default:
		t.Fatalf("swtpm (pid %d) still running after Close", pid)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) = %v, want ESRCH", pid, err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := k.Signer.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Errorf("Sign after Close = %v, want ErrClosed", err)
	}
}

// TestTPMForeignKeyFile checks that a key blob the TPM cannot load (here:
// the swtpm state was wiped, so the SRK changed) is reported at open,
// naming the file.
func TestTPMForeignKeyFile(t *testing.T) {
	requireSWTPM(t)
	t.Parallel()
	dir := t.TempDir()
	cfg := TPMConfig{StateDir: filepath.Join(dir, "state"), KeyDir: filepath.Join(dir, "keys")}
	s, err := NewTPM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.Create(context.Background(), "acme", ES256)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	cfg.StateDir = filepath.Join(dir, "other-state")
	_, err = NewTPM(cfg)
	if err == nil {
		t.Fatal("NewTPM with a key from another TPM succeeded")
	}
	if want := filepath.Join(cfg.KeyDir, "acme", k.KID+".json"); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the key file %s", err, want)
	}
	if _, serr := os.Stat(cfg.StateDir); serr != nil {
		t.Fatal(serr)
	}
}

func TestTPMConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		cfg   TPMConfig
		field string
	}{
		{"nothing", TPMConfig{KeyDir: dir}, "keys.tpm"},
		{"two-targets", TPMConfig{Addr: "127.0.0.1:1", Device: "/dev/tpmrm0", KeyDir: dir}, "keys.tpm"},
		{"no-key-dir", TPMConfig{Addr: "127.0.0.1:1"}, "keys.tpm.key_dir"},
		{"unreachable", TPMConfig{Addr: "unix:" + filepath.Join(dir, "none.sock"), KeyDir: dir}, "keys.tpm.addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTPM(tc.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Errorf("NewTPM = %v, want a *ConfigError for %s", err, tc.field)
			}
		})
	}
}
