package agentlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/agentsso/agentsso/softhsm"
)

// agentHSM is the one SoftHSM2 token that holds the agents' keys of every
// world alive in this process.
//
// One token, not one per world: libsofthsm2 reads SOFTHSM2_CONF once, when
// the module is initialized, and does not see tokens initialized after
// that. Worlds built in parallel, each with a token directory of its own,
// raced on that process-wide variable, and a world could find the module
// looking at another world's directory. Each world now creates its key in
// the shared token (found by its kid), and the token lives while at least
// one world uses it.
var agentHSM struct {
	mu    sync.Mutex
	refs  int
	dir   string
	conf  string // the SOFTHSM2_CONF an agent process needs
	cfg   softhsm.PKCS11Config
	store *softhsm.PKCS11
}

// hsmLease is a world's hold on the shared token.
type hsmLease struct {
	once sync.Once
}

// acquireAgentHSM opens the shared token, creating it on first use.
func acquireAgentHSM() (*softhsm.PKCS11, softhsm.PKCS11Config, string, *hsmLease, error) {
	h := &agentHSM
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refs == 0 {
		dir, err := os.MkdirTemp("", "agentsso-agent-hsm-")
		if err != nil {
			return nil, softhsm.PKCS11Config{}, "", nil, err
		}
		cfg, err := softhsm.SetupSoftHSM2(dir, "agentsso-agent", randomString(9), randomString(9))
		if err != nil {
			os.RemoveAll(dir)
			return nil, softhsm.PKCS11Config{}, "", nil, fmt.Errorf("agentlab: a SoftHSM2 token for the agents' keys: %w", err)
		}
		store, err := softhsm.NewPKCS11(cfg)
		if err != nil {
			os.RemoveAll(dir)
			return nil, softhsm.PKCS11Config{}, "", nil, fmt.Errorf("agentlab: opening the agents' SoftHSM2 token (is another SoftHSM2 token directory already open in this process?): %w", err)
		}
		h.dir, h.conf, h.cfg, h.store = dir, filepath.Join(dir, "softhsm2.conf"), cfg, store
	}
	h.refs++
	return h.store, h.cfg, h.conf, &hsmLease{}, nil
}

// Close releases the world's hold; the last one closes the token and
// removes its files.
func (l *hsmLease) Close() error {
	var err error
	l.once.Do(func() {
		h := &agentHSM
		h.mu.Lock()
		defer h.mu.Unlock()
		h.refs--
		if h.refs > 0 {
			return
		}
		err = errors.Join(h.store.Close(), os.RemoveAll(h.dir))
		h.store, h.dir, h.conf = nil, "", ""
	})
	return err
}
