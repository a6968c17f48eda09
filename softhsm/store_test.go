package softhsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// signJWT signs a small JWT with k through go-jose's OpaqueSigner adapter,
// the way the emulator does.
func signJWT(k Key, subject string) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: cryptosigner.Opaque(k.Signer)},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.KID))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   "https://127.0.0.1/t/" + k.Tenant,
		Subject:  subject,
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
}

// verifyJWT checks raw against the public JWKS of keys, with an
// algorithm allow-list of alg, and returns its subject.
func verifyJWT(raw, alg string, keys []Key) (string, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return "", err
	}
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.PublicJWK())
	}
	var c jwt.Claims
	if err := tok.Claims(&set, &c); err != nil {
		return "", err
	}
	return c.Subject, nil
}

// checkSignVerify signs a JWT with k and verifies it against k's JWK. For
// PS256 it also checks RFC 7518's salt length (the hash length) strictly.
func checkSignVerify(t testing.TB, k Key) {
	t.Helper()
	raw, err := signJWT(k, "agent-"+k.KID)
	if err != nil {
		t.Fatalf("%s %s: sign JWT: %v", k.Alg, k.KID, err)
	}
	sub, err := verifyJWT(raw, k.Alg, []Key{k})
	if err != nil {
		t.Fatalf("%s %s: verify JWT: %v", k.Alg, k.KID, err)
	}
	if sub != "agent-"+k.KID {
		t.Fatalf("%s: subject = %q", k.Alg, sub)
	}
	if k.Alg == PS256 {
		d := sha256.Sum256([]byte("salt length"))
		sig, err := k.Signer.Sign(rand.Reader, d[:], &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatalf("PS256 sign: %v", err)
		}
		pub := k.Signer.Public().(*rsa.PublicKey)
		if err := rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
			t.Fatalf("PS256 signature does not verify with salt length = hash length (RFC 7518 section 3.5): %v", err)
		}
	}
}

// cmpInfo compares keys by KeyInfo (signers are compared by behaviour).
var cmpInfo = cmp.Options{
	cmp.Transformer("info", func(k Key) KeyInfo { return k.KeyInfo }),
	cmpopts.EquateEmpty(),
}

// storeSuite runs the checks every backend must pass.
type storeSuite struct {
	algs        []string
	unsupported []string
	// open returns a store on the same persistent state each time it is
	// called within one test. The suite closes the stores.
	open func(t *testing.T) Store
	// signAfterDelete is true when a deleted key's signer must fail.
	signAfterDelete bool
	// anyOrder skips the check that List is in creation order across
	// reopening (the memory backend keeps seconds only and breaks ties
	// by kid when it reloads).
	anyOrder bool
}

func (s storeSuite) run(t *testing.T) {
	ctx := context.Background()
	cmpInfo := cmpInfo
	if s.anyOrder {
		cmpInfo = append(cmpInfo, cmpopts.SortSlices(func(a, b Key) bool { return a.KID < b.KID }))
	}
	st := s.open(t)
	defer func() { st.Close() }()
	const tenant = "acme"

	var created []Key
	t.Run("create-sign-verify", func(t *testing.T) {
		for _, alg := range s.algs {
			k, err := st.Create(ctx, tenant, alg)
			if err != nil {
				t.Fatalf("Create(%s): %v", alg, err)
			}
			kid, err := Thumbprint(k.Signer.Public())
			if err != nil {
				t.Fatal(err)
			}
			if k.KID != kid || k.Alg != alg || k.Tenant != tenant || k.Backend != st.Backend() || k.Created.IsZero() {
				t.Errorf("Create(%s) = %+v, want kid %s alg %s tenant %s backend %s", alg, k.KeyInfo, kid, alg, tenant, st.Backend())
			}
			checkSignVerify(t, k)
			created = append(created, k)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("list", func(t *testing.T) {
		got, err := st.List(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(created, got, cmpInfo); d != "" {
			t.Errorf("List (-want +got):\n%s", d)
		}
		other, err := st.List(ctx, "other-tenant")
		if err != nil || len(other) != 0 {
			t.Errorf("List(other-tenant) = %v, %v; want no keys", other, err)
		}
	})

	t.Run("reopen", func(t *testing.T) {
		before, _ := st.List(ctx, tenant)
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		st = s.open(t)
		after, err := st.List(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(before, after, cmpInfo); d != "" {
			t.Fatalf("keys after reopening (-before +after):\n%s", d)
		}
		for _, k := range after {
			checkSignVerify(t, k)
		}
		// A JWT signed before the restart still verifies with the
		// reopened store's public keys, and vice versa.
		raw, err := signJWT(after[0], "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifyJWT(raw, after[0].Alg, before); err != nil {
			t.Errorf("JWT signed after reopening does not verify with the keys from before: %v", err)
		}
	})

	t.Run("concurrent-sign", func(t *testing.T) {
		keys, _ := st.List(ctx, tenant)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 6 {
			wg.Go(func() {
				for i := range 12 {
					k := keys[(g+i)%len(keys)]
					raw, err := signJWT(k, fmt.Sprintf("g%d-%d", g, i))
					if err == nil {
						_, err = verifyJWT(raw, k.Alg, keys)
					}
					if err != nil {
						errs <- fmt.Errorf("goroutine %d, %s: %w", g, k.Alg, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		keys, _ := st.List(ctx, tenant)
		victim := keys[0]
		if err := st.Delete(ctx, tenant, victim.KID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := st.Delete(ctx, tenant, victim.KID); !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("second Delete = %v, want ErrKeyNotFound", err)
		}
		if err := st.Delete(ctx, "other-tenant", keys[1].KID); !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("Delete from another tenant = %v, want ErrKeyNotFound", err)
		}
		if s.signAfterDelete {
			d := sha256.Sum256([]byte("x"))
			if _, err := victim.Signer.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
				t.Errorf("deleted key %s still signs", victim.KID)
			}
		}
		// The other keys still sign, and the deletion survives a reopen.
		checkSignVerify(t, keys[1])
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st = s.open(t)
		got, _ := st.List(ctx, tenant)
		if d := cmp.Diff(keys[1:], got, cmpInfo); d != "" {
			t.Errorf("keys after delete and reopen (-want +got):\n%s", d)
		}
	})

	t.Run("unsupported-alg", func(t *testing.T) {
		for _, alg := range s.unsupported {
			_, err := st.Create(ctx, tenant, alg)
			var ue *UnsupportedAlgError
			if !errors.As(err, &ue) || ue.Alg != alg || ue.Backend != st.Backend() {
				t.Errorf("Create(%s) = %v, want *UnsupportedAlgError{%s, %s}", alg, err, st.Backend(), alg)
			}
		}
	})

	t.Run("bad-tenant", func(t *testing.T) {
		if st.Backend() == "memory" {
			t.Skip("the memory backend does not restrict tenant names")
		}
		for _, tn := range []string{"", "..", "a/b"} {
			if _, err := st.Create(ctx, tn, ES256); err == nil {
				t.Errorf("Create(tenant %q) succeeded", tn)
			}
		}
	})
}

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storeSuite{
		algs:     []string{ES256, ES384, RS256, PS256},
		anyOrder: true,
		open: func(t *testing.T) Store {
			m, err := NewMemory(dir)
			if err != nil {
				t.Fatal(err)
			}
			return m
		},
	}.run(t)
}
