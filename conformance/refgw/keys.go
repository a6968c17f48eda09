package refgw

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// minRefetchInterval rate-limits JWKS fetches caused by unknown kids,
	// which any client can trigger.
	minRefetchInterval = 5 * time.Second
	jwksFetchTimeout   = 5 * time.Second
	maxJWKSBytes       = 1 << 20
	maxJWKSKeys        = 100
	minRSABits         = 2048
)

// verificationKey is one public signing key of the issuer.
type verificationKey struct {
	kid string
	alg string // the JWK's alg member, if any
	key any    // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	raw []byte // the JWK as served, for the hs256-confusion flaw only
}

// keySet caches the keys of one JWKS URL.
type keySet struct {
	url     string
	client  *http.Client
	now     func() time.Time
	refresh time.Duration
	// Flaws: never refetch once loaded; never drop a key on refetch.
	noRefetch, keepRemoved bool

	fetchMu sync.Mutex // one fetch at a time

	mu        sync.Mutex
	keys      []verificationKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last attempt, successful or not
	loaded    bool
}

func newKeySet(url string, client *http.Client, now func() time.Time, refresh time.Duration) *keySet {
	return &keySet{url: url, client: client, now: now, refresh: refresh}
}

// candidates returns the keys that may have signed a token with this kid:
// the keys with that kid, or every key when kid is empty. An unknown kid,
// or keys older than the refresh interval, cause one refetch, at most once
// every minRefetchInterval.
func (ks *keySet) candidates(ctx context.Context, kid string) ([]verificationKey, error) {
	keys, needFetch := ks.lookup(kid)
	if needFetch {
		if err := ks.fetch(ctx); err == nil {
			keys, _ = ks.lookup(kid)
		} else if len(keys) == 0 {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, errUnknownKey
	}
	return keys, nil
}

// lookup returns the matching keys and whether a fetch is due and allowed.
func (ks *keySet) lookup(kid string) ([]verificationKey, bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	var out []verificationKey
	for _, k := range ks.keys {
		if kid == "" || k.kid == kid {
			out = append(out, k)
		}
	}
	now := ks.now()
	stale := !ks.loaded || now.Sub(ks.fetched) >= ks.refresh
	allowed := ks.attempted.IsZero() || now.Sub(ks.attempted) >= minRefetchInterval || now.Before(ks.attempted)
	if ks.noRefetch && ks.loaded {
		allowed = false
	}
	return out, allowed && (stale || len(out) == 0)
}

func (ks *keySet) fetch(ctx context.Context) error {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	ks.mu.Lock()
	// Another request may have fetched while this one waited.
	if !ks.attempted.IsZero() && ks.now().Sub(ks.attempted) < minRefetchInterval && !ks.now().Before(ks.attempted) {
		ks.mu.Unlock()
		return nil
	}
	ks.attempted = ks.now()
	ks.mu.Unlock()

	keys, err := fetchJWKS(ctx, ks.client, ks.url)
	if err != nil {
		return err
	}
	ks.mu.Lock()
	if ks.keepRemoved {
		keys = mergeKeys(keys, ks.keys)
	}
	// The set is replaced whole: a key the issuer withdrew is gone.
	ks.keys, ks.fetched, ks.loaded = keys, ks.now(), true
	ks.mu.Unlock()
	return nil
}

// mergeKeys is the keep-removed-keys flaw: the fetched keys plus every
// old key that is not among them.
func mergeKeys(fetched, old []verificationKey) []verificationKey {
	out := append([]verificationKey(nil), fetched...)
	for _, o := range old {
		found := false
		for _, n := range fetched {
			if n.kid == o.kid && sameKey(n.key, o.key) {
				found = true
				break
			}
		}
		if !found && len(out) < maxJWKSKeys {
			out = append(out, o)
		}
	}
	return out
}

func sameKey(a, b any) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// fetchJWKS gets and parses an RFC 7517 JWK Set. Keys that are not public
// asymmetric signing keys (private, symmetric, use other than sig, RSA
// under 2048 bits, unknown types) are left out.
func fetchJWKS(ctx context.Context, client *http.Client, url string) ([]verificationKey, error) {
	body, err := fetchDocument(ctx, client, url, "application/json")
	if err != nil {
		return nil, err
	}
	return parseJWKS(body)
}

func parseJWKS(body []byte) ([]verificationKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("refgw: JWKS: %w", err)
	}
	var out []verificationKey
	for _, raw := range doc.Keys {
		if len(out) == maxJWKSKeys {
			break
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if pk, ok := k.Key.(*rsa.PublicKey); ok && pk.N.BitLen() < minRSABits {
			continue
		}
		out = append(out, verificationKey{kid: k.KeyID, alg: k.Algorithm, key: k.Key, raw: append([]byte(nil), raw...)})
	}
	return out, nil
}

// fetchDocument GETs url with a timeout and a size limit and returns the
// body of a 200 answer.
func fetchDocument(ctx context.Context, client *http.Client, url, accept string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("refgw: GET %s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("refgw: document too large")
	}
	return body, nil
}

// algMatchesKey reports whether a JWS alg can be used with key: the alg
// decides the key type and, for ECDSA, the curve (RFC 7518 section 3.4),
// so a key of one type can never verify a signature of another.
func algMatchesKey(alg string, key any) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case string(jose.ES256):
			return k.Curve == elliptic.P256()
		case string(jose.ES384):
			return k.Curve == elliptic.P384()
		}
	case *rsa.PublicKey:
		return (alg == string(jose.RS256) || alg == string(jose.PS256)) && k.N.BitLen() >= minRSABits
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// tenantKeySet is the accept-any-tenant-key flaw: a key set per issuer,
// at {iss}/jwks, chosen by the (unverified) token.
func (g *Gateway) tenantKeySet(iss string) *keySet {
	g.tenantMu.Lock()
	defer g.tenantMu.Unlock()
	if ks, ok := g.tenants[iss]; ok {
		return ks
	}
	if g.tenants == nil || len(g.tenants) >= maxTenantSets {
		g.tenants = map[string]*keySet{}
	}
	ks := newKeySet(strings.TrimRight(iss, "/")+"/jwks", g.client, g.now, DefaultJWKSRefresh)
	g.tenants[iss] = ks
	return ks
}
