package softhsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Memory is the in-process backend. With a directory, keys are written as
// PKCS#8 PEM files (mode 0600) so that the same kids are served after a
// restart; without one they live only as long as the process.
type Memory struct {
	dir string
	now func() time.Time

	mu   sync.Mutex
	keys map[string][]Key // tenant -> keys, oldest first
}

// NewMemory returns an in-memory store. dir may be empty.
func NewMemory(dir string) (*Memory, error) {
	m := &Memory{dir: dir, now: time.Now, keys: map[string][]Key{}}
	if dir == "" {
		return m, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: memory backend directory: %w", err)
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	return m, nil
}

// Backend implements Store.
func (m *Memory) Backend() string { return "memory" }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// Create implements Store.
func (m *Memory) Create(_ context.Context, tenant, alg string) (Key, error) {
	signer, err := generate(alg)
	if err != nil {
		return Key{}, err
	}
	kid, err := Thumbprint(signer.Public())
	if err != nil {
		return Key{}, err
	}
	m.mu.Lock()
	created := m.now().UTC()
	// Creation times order keys (the newest signs), so they must differ
	// even for keys created within one clock tick.
	if ks := m.keys[tenant]; len(ks) > 0 && !created.After(ks[len(ks)-1].Created) {
		created = ks[len(ks)-1].Created.Add(time.Nanosecond)
	}
	m.mu.Unlock()
	k := Key{KeyInfo: KeyInfo{Tenant: tenant, KID: kid, Alg: alg, Backend: "memory", Created: created}, Signer: signer}
	if m.dir != "" {
		if err := m.save(k); err != nil {
			return Key{}, err
		}
	}
	m.mu.Lock()
	m.keys[tenant] = append(m.keys[tenant], k)
	m.mu.Unlock()
	return k, nil
}

// List implements Store.
func (m *Memory) List(_ context.Context, tenant string) ([]Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Key(nil), m.keys[tenant]...), nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, tenant, kid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := m.keys[tenant]
	for i, k := range ks {
		if k.KID == kid {
			m.keys[tenant] = append(ks[:i:i], ks[i+1:]...)
			if m.dir != "" {
				if err := os.Remove(m.path(tenant, kid)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
			return nil
		}
	}
	return fmt.Errorf("%w: tenant %q kid %q", ErrKeyNotFound, tenant, kid)
}

func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ES384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RS256, PS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, &UnsupportedAlgError{Backend: "memory", Alg: alg}
}

type memMeta struct {
	Alg     string    `json:"alg"`
	Created time.Time `json:"created"`
}

func (m *Memory) path(tenant, kid string) string {
	return filepath.Join(m.dir, tenant, kid+".pem")
}

func (m *Memory) save(k Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(memMeta{Alg: k.Alg, Created: k.Created})
	block := &pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"agentsso": string(meta)}, Bytes: der}
	if err := os.MkdirAll(filepath.Join(m.dir, k.Tenant), 0o700); err != nil {
		return err
	}
	return os.WriteFile(m.path(k.Tenant, k.KID), pem.EncodeToMemory(block), 0o600)
}

func (m *Memory) load() error {
	tenants, err := os.ReadDir(m.dir)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(m.dir, t.Name()))
		if err != nil {
			return err
		}
		var ks []Key
		for _, f := range files {
			if !strings.HasSuffix(f.Name(), ".pem") {
				continue
			}
			p := filepath.Join(m.dir, t.Name(), f.Name())
			k, err := readKeyFile(p)
			if err != nil {
				return fmt.Errorf("softhsm: %s: %w (delete the file to drop the key)", p, err)
			}
			k.Tenant = t.Name()
			ks = append(ks, k)
		}
		sort.Slice(ks, func(i, j int) bool {
			if ks[i].Created.Equal(ks[j].Created) {
				return ks[i].KID < ks[j].KID
			}
			return ks[i].Created.Before(ks[j].Created)
		})
		if len(ks) > 0 {
			m.keys[t.Name()] = ks
		}
	}
	return nil
}

func readKeyFile(p string) (Key, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return Key{}, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return Key{}, errors.New("not a PEM file")
	}
	var meta memMeta
	if err := json.Unmarshal([]byte(block.Headers["agentsso"]), &meta); err != nil {
		return Key{}, fmt.Errorf("missing or bad agentsso header: %w", err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, err
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return Key{}, errors.New("not a signing key")
	}
	kid, err := Thumbprint(signer.Public())
	if err != nil {
		return Key{}, err
	}
	return Key{KeyInfo: KeyInfo{KID: kid, Alg: meta.Alg, Backend: "memory", Created: meta.Created}, Signer: signer}, nil
}
