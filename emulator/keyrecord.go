package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// kidRecord remembers, in {state_dir}/kids.json, the kids each tenant
// served. A start that finds none of a tenant's keys in its backend (a
// SoftHSM2 token re-initialised, a TPM cleared, a key deleted by hand)
// then refuses, instead of quietly minting a new signing identity that
// every configured target would reject.
type kidRecord struct {
	mu sync.Mutex
}

func (s *Server) kidsPath() string {
	if s.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(s.cfg.StateDir, "kids.json")
}

func (s *Server) readKids() (map[string][]string, error) {
	p := s.kidsPath()
	m := map[string][]string{}
	if p == "" {
		return m, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it: the next start records the kids again)", p, err)
	}
	return m, nil
}

// recordedKids are the kids a tenant served before, if any.
func (s *Server) recordedKids(tenant string) ([]string, error) {
	s.kidRec.mu.Lock()
	defer s.kidRec.mu.Unlock()
	m, err := s.readKids()
	return m[tenant], err
}

// kidsOf lists the kids of keys; the caller holds the tenant's keyMu.
func kidsOf(keys []*signingKey) []string {
	kids := make([]string, 0, len(keys))
	for _, k := range keys {
		kids = append(kids, k.KID)
	}
	return kids
}

// recordKids writes the kids a tenant serves now.
func (s *Server) recordKids(tenant string, kids []string) {
	p := s.kidsPath()
	if p == "" {
		return
	}
	s.kidRec.mu.Lock()
	defer s.kidRec.mu.Unlock()
	m, err := s.readKids()
	if err != nil || slices.Equal(m[tenant], kids) {
		return
	}
	m[tenant] = kids
	b, _ := json.MarshalIndent(m, "", "  ")
	tmp := p + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		_ = os.Rename(tmp, p)
	}
}

// keysGoneError says that a tenant's recorded keys are missing from its
// backend, and how to go on.
func keysGoneError(tenant, backend string, kids []string, path string) error {
	return fmt.Errorf("emulator: tenant %s served kid(s) %v, and the %s key backend now holds none of its keys: "+
		"restore the token, TPM state or key files, or remove %q from %s to start with a new key (targets configured with the old JWKS will reject its tokens)",
		tenant, kids, backend, tenant, path)
}
