package emulator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/softhsm"
)

// KeyStatus describes one signing key of a tenant.
type KeyStatus struct {
	KID     string    `json:"kid"`
	Alg     string    `json:"alg"`
	Backend string    `json:"backend"`
	Created time.Time `json:"created"`
	// Published: the key is in the tenant's JWKS (neither hidden nor
	// withdrawn).
	Published bool `json:"published"`
	// Hidden: left out of the JWKS by PublishKey(false); tokens it signed
	// still verify at the emulator.
	Hidden bool `json:"hidden"`
	// Withdrawn: left out of the JWKS, never used to sign again, and every
	// token it signed is inactive.
	Withdrawn bool `json:"withdrawn"`
	// Active: the key that signs new tokens (the newest not withdrawn).
	Active bool `json:"active"`
	// Extractable and NeverExtractable as the key custody backend reports
	// them (PKCS#11 only).
	Extractable      *bool `json:"extractable,omitempty"`
	NeverExtractable *bool `json:"never_extractable,omitempty"`
}

// Keys lists a tenant's signing keys, oldest first.
func (s *Server) Keys(tenant string) ([]KeyStatus, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return nil, err
	}
	return t.keyStatus(), nil
}

func (t *tenant) keyStatus() []KeyStatus {
	active := ""
	if k, err := t.activeKey(); err == nil {
		active = k.KID
	}
	t.keyMu.RLock()
	defer t.keyMu.RUnlock()
	out := make([]KeyStatus, 0, len(t.keys))
	for _, k := range t.keys {
		w := t.rev.kidWithdrawn(k.KID)
		out = append(out, KeyStatus{
			KID: k.KID, Alg: k.Alg, Backend: k.Backend, Created: k.Created,
			Published: !w && !t.hidden[k.KID], Hidden: t.hidden[k.KID], Withdrawn: w, Active: k.KID == active,
			Extractable: k.Extractable, NeverExtractable: k.NeverExtractable,
		})
	}
	return out
}

func (t *tenant) keyStatusOf(kid string) KeyStatus {
	for _, k := range t.keyStatus() {
		if k.KID == kid {
			return k
		}
	}
	return KeyStatus{KID: kid}
}

func noKey(tenant, kid string) error {
	return &NotFoundError{Kind: "key", Name: kid, Tenant: tenant, Hint: "GET /admin/v1/tenants/" + tenant + "/keys lists them"}
}

// RotateKey creates a new key in the tenant's algorithm through the key
// store. It becomes the active key at once; older keys stay published, so
// tokens they signed still verify.
func (s *Server) RotateKey(ctx context.Context, tenant string) (KeyStatus, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return KeyStatus{}, err
	}
	t.mu.RLock()
	alg := t.cfg.Alg
	t.mu.RUnlock()
	k, err := s.keys.Create(ctx, t.name, alg)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("create a %s key in the %s key store: %w", alg, s.keys.Backend(), err)
	}
	sk, err := newSigningKey(k)
	if err != nil {
		return KeyStatus{}, err
	}
	t.keyMu.Lock()
	t.keys = append(t.keys, sk)
	kids := kidsOf(t.keys)
	t.keyMu.Unlock()
	t.invalidateJWKS()
	s.recordKids(t.name, kids)
	s.adminEvent(t, audit.Event{Endpoint: "admin.key.rotate", Extra: map[string]any{"kid": k.KID}})
	return t.keyStatusOf(k.KID), nil
}

// WithdrawKey withdraws a kid: it leaves the JWKS, never signs again, and
// every token it signed is inactive at the emulator. If it was the active
// key, the newest remaining key takes over (rotate first to have one). A
// reset makes it usable again.
func (s *Server) WithdrawKey(tenant, kid string) (KeyStatus, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return KeyStatus{}, err
	}
	if t.key(kid) == nil {
		return KeyStatus{}, noKey(tenant, kid)
	}
	t.rev.withdrawKID(kid)
	t.invalidateJWKS()
	s.adminEvent(t, audit.Event{Endpoint: "admin.key.withdraw", Extra: map[string]any{"kid": kid}})
	return t.keyStatusOf(kid), nil
}

// PublishKey shows (true) or hides (false) a key in the tenant's JWKS
// without withdrawing it: tokens it signed still verify at the emulator,
// but a relying party that fetches the JWKS cannot find the kid.
func (s *Server) PublishKey(tenant, kid string, published bool) (KeyStatus, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return KeyStatus{}, err
	}
	if t.key(kid) == nil {
		return KeyStatus{}, noKey(tenant, kid)
	}
	t.keyMu.Lock()
	if t.hidden == nil {
		t.hidden = map[string]bool{}
	}
	if published {
		delete(t.hidden, kid)
	} else {
		t.hidden[kid] = true
	}
	t.keyMu.Unlock()
	t.invalidateJWKS()
	s.adminEvent(t, audit.Event{Endpoint: "admin.key.publish", Extra: map[string]any{"kid": kid, "published": published}})
	return t.keyStatusOf(kid), nil
}

// DeleteKey destroys a key in the key store and forgets it: tokens it
// signed no longer verify (their kid is unknown). The tenant's only key
// cannot be deleted (ErrConflict): rotate first.
func (s *Server) DeleteKey(ctx context.Context, tenant, kid string) error {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return err
	}
	t.keyMu.Lock()
	defer t.keyMu.Unlock()
	i := slices.IndexFunc(t.keys, func(k *signingKey) bool { return k.KID == kid })
	if i < 0 {
		return noKey(tenant, kid)
	}
	if len(t.keys) == 1 {
		return fmt.Errorf("key %s is the only key of tenant %s and %w: rotate first (POST .../keys/rotate)", kid, tenant, ErrConflict)
	}
	if err := s.keys.Delete(ctx, t.name, kid); err != nil && !errors.Is(err, softhsm.ErrKeyNotFound) {
		return fmt.Errorf("delete key %s from the %s key store: %w", kid, s.keys.Backend(), err)
	}
	t.keys = slices.Delete(slices.Clone(t.keys), i, i+1)
	delete(t.hidden, kid)
	t.invalidateJWKS()
	s.recordKids(t.name, kidsOf(t.keys))
	s.adminEvent(t, audit.Event{Endpoint: "admin.key.delete", Extra: map[string]any{"kid": kid}})
	return nil
}
