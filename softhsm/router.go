package softhsm

import (
	"context"
	"errors"
	"sort"
	"strings"
)

// Router sends each tenant's keys to the store configured for it, and
// every other tenant's to Default. It is how one emulator keeps one
// tenant's keys in a TPM and another's in an HSM.
type Router struct {
	Default  Store
	ByTenant map[string]Store
}

var _ Store = (*Router)(nil)

func (r *Router) store(tenant string) Store {
	if s, ok := r.ByTenant[tenant]; ok {
		return s
	}
	return r.Default
}

// Create implements Store.
func (r *Router) Create(ctx context.Context, tenant, alg string) (Key, error) {
	return r.store(tenant).Create(ctx, tenant, alg)
}

// List implements Store.
func (r *Router) List(ctx context.Context, tenant string) ([]Key, error) {
	return r.store(tenant).List(ctx, tenant)
}

// Delete implements Store.
func (r *Router) Delete(ctx context.Context, tenant, kid string) error {
	return r.store(tenant).Delete(ctx, tenant, kid)
}

// Backend names every backend in use, e.g. "pkcs11+tpm".
func (r *Router) Backend() string {
	seen := map[string]bool{r.Default.Backend(): true}
	for _, s := range r.ByTenant {
		seen[s.Backend()] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "+")
}

// BackendOf names the backend a tenant's keys live in.
func (r *Router) BackendOf(tenant string) string { return r.store(tenant).Backend() }

// Close closes every distinct store once.
func (r *Router) Close() error {
	done := map[Store]bool{}
	var errs []error
	for _, s := range append([]Store{r.Default}, values(r.ByTenant)...) {
		if s == nil || done[s] {
			continue
		}
		done[s] = true
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func values(m map[string]Store) []Store {
	out := make([]Store, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	return out
}
