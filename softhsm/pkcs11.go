//go:build cgo

package softhsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// pkcs11Supported reports whether this build can load PKCS#11 modules.
const pkcs11Supported = true

// PKCS#11 object layout. Each key is a token key pair:
//
//   - CKA_LABEL "agentsso/<tenant>/<alg>/<created>" on both objects: the
//     tenant, the JWS algorithm (RS256 and PS256 keys are both RSA-2048)
//     and the creation time in Unix nanoseconds, read back at open;
//   - CKA_ID the kid (softhsm.Thumbprint of the public key) as ASCII;
//   - private key: CKA_TOKEN, CKA_PRIVATE, CKA_SIGN, CKA_SENSITIVE=true,
//     CKA_EXTRACTABLE=false; public key: CKA_TOKEN, CKA_VERIFY.
//
// Objects whose label lacks the "agentsso/" prefix are left alone.
const p11LabelPrefix = "agentsso/"

// PKCS11 is the PKCS#11 backend (SoftHSM2 or any other module). Keys are
// token objects that never leave the module; signing goes through a pool
// of sessions logged in once.
//
// Keys are read from the token when the store is opened and kept in
// memory after that; another process adding keys to the same token is
// seen on the next open.
type PKCS11 struct {
	mod   *p11Module
	slot  uint
	token string
	pool  *sessionPool
	clock createdClock

	closeOnce sync.Once
	closeErr  error

	// mechs holds the mechanisms the token's slot lists, or nil when the
	// module could not list them (then every algorithm is tried).
	mechs map[uint]bool

	mu   sync.Mutex
	keys map[string][]Key // tenant -> keys, oldest first
}

var _ Store = (*PKCS11)(nil)

// NewPKCS11 opens the token cfg names (resolving cfg.URI and cfg.PINFile),
// logs in as the user and reads back the agentsso keys it holds.
//
// A module is loaded and C_Initialize'd once per process and shared by
// every store using it; it is finalized when the last such store closes.
// SoftHSM2 reads SOFTHSM2_CONF at C_Initialize, so all stores open at the
// same time on libsofthsm2 see the token directory of the first. A login
// is per process and token: a second store opened on a token this process
// is already logged in to shares that login.
func NewPKCS11(cfg PKCS11Config) (*PKCS11, error) {
	cfg, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	mod, err := acquireModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	s := &PKCS11{mod: mod, token: cfg.Token, clock: createdClock{now: time.Now}, keys: map[string][]Key{}}
	mod.objectsMu.Lock() // see p11Module.objectsMu
	err = s.open(cfg)
	mod.objectsMu.Unlock()
	if err != nil {
		if s.pool != nil {
			s.pool.close(mod.ctx)
		}
		releaseModule(mod)
		return nil, err
	}
	return s, nil
}

func (s *PKCS11) open(cfg PKCS11Config) error {
	ctx := s.mod.ctx
	slot, err := findSlot(ctx, cfg, s.mod.conf)
	if err != nil {
		return err
	}
	s.slot = slot
	if ms, err := ctx.GetMechanismList(slot); err == nil {
		s.mechs = map[uint]bool{}
		for _, m := range ms {
			s.mechs[m.Mechanism] = true
		}
	}
	n := cfg.Sessions
	if n == 0 {
		n = 4
	}
	s.pool = &sessionPool{ch: make(chan pkcs11.SessionHandle, n), done: make(chan struct{})}
	for i := range n {
		sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fmt.Errorf("softhsm: pkcs11: open session %d on token %q: %w", i+1, cfg.Token, err)
		}
		s.pool.n++
		s.pool.ch <- sh
		if i == 0 {
			// The login covers every session of this application on the token.
			err := ctx.Login(sh, pkcs11.CKU_USER, cfg.PIN)
			if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
				if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
					return cfgErr("keys.pkcs11.pin", "wrong user PIN for token %q: %w", cfg.Token, err)
				}
				return fmt.Errorf("softhsm: pkcs11: log in to token %q: %w", cfg.Token, err)
			}
		}
	}
	return s.load()
}

// findSlot returns the slot holding the token labelled cfg.Token.
func findSlot(ctx *pkcs11.Ctx, cfg PKCS11Config, conf string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("softhsm: pkcs11: list slots of %s: %w", cfg.Module, err)
	}
	var seen []string
	var found []uint
	for _, sl := range slots {
		ti, err := ctx.GetTokenInfo(sl)
		if err != nil {
			continue
		}
		label := strings.TrimRight(ti.Label, " \x00")
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		seen = append(seen, strconv.Quote(label))
		if label != cfg.Token ||
			cfg.Manufacturer != "" && strings.TrimRight(ti.ManufacturerID, " \x00") != cfg.Manufacturer ||
			cfg.Model != "" && strings.TrimRight(ti.Model, " \x00") != cfg.Model ||
			cfg.Serial != "" && strings.TrimRight(ti.SerialNumber, " \x00") != cfg.Serial {
			continue
		}
		found = append(found, sl)
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		read := ""
		if conf != "" {
			read = " (this process's module read SOFTHSM2_CONF=" + conf + ")"
		}
		return 0, cfgErr("keys.pkcs11.token", "no initialized token labelled %q (with the given manufacturer/model/serial) in %s; tokens seen: [%s]. "+
			"Initialize it (softhsm2-util --init-token --free --label %q) or fix keys.pkcs11.token; "+
			"for SoftHSM2 check that SOFTHSM2_CONF names its token directory (read once per process, at the first open)%s",
			cfg.Token, cfg.Module, strings.Join(seen, ", "), cfg.Token, read)
	default:
		return 0, cfgErr("keys.pkcs11.token", "%d tokens labelled %q in %s: add keys.pkcs11.serial (serial= in the URI) to pick one", len(found), cfg.Token, cfg.Module)
	}
}

// Backend implements Store.
func (s *PKCS11) Backend() string { return "pkcs11" }

// Close implements Store. It waits for signatures in flight, closes the
// sessions (which ends the login) and finalizes the module if no other
// store uses it. Signers of this store fail after Close.
func (s *PKCS11) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.pool.close(s.mod.ctx)
		if err := releaseModule(s.mod); s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// Create implements Store.
func (s *PKCS11) Create(ctx context.Context, tenant, alg string) (Key, error) {
	if err := checkTenant(tenant); err != nil {
		return Key{}, err
	}
	mech, pubT, privT, err := p11Templates(alg)
	if err != nil {
		return Key{}, err
	}
	if !s.supports(alg) {
		return Key{}, &UnsupportedAlgError{Backend: "pkcs11", Alg: alg}
	}
	created := s.clock.next()
	label := p11LabelPrefix + tenant + "/" + alg + "/" + strconv.FormatInt(created.UnixNano(), 10)
	// A random CKA_ID until the kid is known from the public key.
	tmpID := make([]byte, 16)
	rand.Read(tmpID)
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, tmpID),
	}
	sh, err := s.pool.get(ctx)
	if err != nil {
		return Key{}, err
	}
	defer s.pool.put(sh)
	p := s.mod.ctx
	// One at a time per module: see p11Module.objectsMu.
	s.mod.objectsMu.Lock()
	defer s.mod.objectsMu.Unlock()
	pubH, privH, err := p.GenerateKeyPair(sh, mech, append(common, pubT...), append(common, privT...))
	if err != nil {
		return Key{}, fmt.Errorf("softhsm: pkcs11: generate %s key on token %q: %w", alg, s.token, err)
	}
	k, err := s.readKey(sh, privH, pubH)
	if err == nil {
		id := pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(k.KID))
		if err = p.SetAttributeValue(sh, privH, []*pkcs11.Attribute{id}); err == nil {
			err = p.SetAttributeValue(sh, pubH, []*pkcs11.Attribute{id})
		}
	}
	if err != nil {
		p.DestroyObject(sh, privH)
		p.DestroyObject(sh, pubH)
		return Key{}, fmt.Errorf("softhsm: pkcs11: new %s key on token %q: %w", alg, s.token, err)
	}
	s.mu.Lock()
	s.keys[tenant] = append(s.keys[tenant], k)
	s.mu.Unlock()
	return k, nil
}

// p11AlgMechs are the mechanisms a token must list to create and sign
// with keys of each algorithm (Sign uses CKM_ECDSA, CKM_RSA_PKCS or
// CKM_RSA_PKCS_PSS over a digest computed outside the module).
var p11AlgMechs = map[string][]uint{
	ES256: {pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA},
	ES384: {pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA},
	RS256: {pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS},
	PS256: {pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_RSA_PKCS_PSS},
}

// supports reports whether the token lists the mechanisms alg needs
// (tpm2-pkcs11, for one, has no CKM_RSA_PKCS_PSS, so no PS256). A module
// that cannot list its mechanisms is assumed to support every algorithm.
func (s *PKCS11) supports(alg string) bool {
	if s.mechs == nil {
		return true
	}
	for _, m := range p11AlgMechs[alg] {
		if !s.mechs[m] {
			return false
		}
	}
	return true
}

// List implements Store.
func (s *PKCS11) List(_ context.Context, tenant string) ([]Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys[tenant]), nil
}

// Delete implements Store. It destroys both objects of the key pair.
func (s *PKCS11) Delete(ctx context.Context, tenant, kid string) error {
	// Lock order, as in Create: a session, then the module's objectsMu
	// (see p11Module), then s.mu.
	sh, err := s.pool.get(ctx)
	if err != nil {
		return err
	}
	defer s.pool.put(sh)
	p := s.mod.ctx
	s.mod.objectsMu.Lock()
	defer s.mod.objectsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	ks := s.keys[tenant]
	i := slices.IndexFunc(ks, func(k Key) bool { return k.KID == kid })
	if i < 0 {
		return fmt.Errorf("%w: tenant %q kid %q", ErrKeyNotFound, tenant, kid)
	}
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		objs, err := findObjects(p, sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(kid)),
		})
		if err != nil {
			return fmt.Errorf("softhsm: pkcs11: delete kid %q: %w", kid, err)
		}
		for _, o := range objs {
			if tn, _, _, ok := parseP11Label(p11Label(p, sh, o)); !ok || tn != tenant {
				continue
			}
			if err := p.DestroyObject(sh, o); err != nil {
				return fmt.Errorf("softhsm: pkcs11: delete kid %q: %w", kid, err)
			}
		}
	}
	s.keys[tenant] = slices.Delete(slices.Clone(ks), i, i+1)
	return nil
}

// load reads every agentsso key pair on the token.
func (s *PKCS11) load() error {
	sh, err := s.pool.get(context.Background())
	if err != nil {
		return err
	}
	defer s.pool.put(sh)
	objs, err := findObjects(s.mod.ctx, sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
	})
	if err != nil {
		return fmt.Errorf("softhsm: pkcs11: list keys on token %q: %w", s.token, err)
	}
	for _, o := range objs {
		if _, _, _, ok := parseP11Label(p11Label(s.mod.ctx, sh, o)); !ok {
			continue
		}
		k, err := s.readKey(sh, o, 0)
		if err != nil {
			return fmt.Errorf("softhsm: pkcs11: token %q: %w (delete the key pair, e.g. with pkcs11-tool --delete-object, to drop it)", s.token, err)
		}
		s.keys[k.Tenant] = append(s.keys[k.Tenant], k)
		s.clock.seen(k.Created)
	}
	for _, ks := range s.keys {
		sortKeys(ks)
	}
	return nil
}

// readKey builds a Key from a private key object and its public half
// (found by CKA_ID when pubH is 0).
func (s *PKCS11) readKey(sh pkcs11.SessionHandle, privH, pubH pkcs11.ObjectHandle) (Key, error) {
	p := s.mod.ctx
	attrs, err := p.GetAttributeValue(sh, privH, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
	})
	if err != nil {
		return Key{}, fmt.Errorf("read private key attributes: %w", err)
	}
	label, id := string(attrs[0].Value), attrs[1].Value
	tenant, alg, created, ok := parseP11Label(label)
	if !ok {
		return Key{}, fmt.Errorf("key label %q is not agentsso/<tenant>/<alg>/<unix-nanoseconds>", label)
	}
	if pubH == 0 {
		objs, err := findObjects(p, sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		if err != nil {
			return Key{}, err
		}
		if len(objs) != 1 {
			return Key{}, fmt.Errorf("key %q (CKA_ID %q) has %d public key objects, want 1", label, id, len(objs))
		}
		pubH = objs[0]
	}
	pub, err := p11Public(p, sh, pubH, bytesToUint(attrs[2].Value))
	if err != nil {
		return Key{}, fmt.Errorf("key %q: %w", label, err)
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return Key{}, err
	}
	extractable, never := bytesToBool(attrs[3].Value), bytesToBool(attrs[4].Value)
	return Key{
		KeyInfo: KeyInfo{Tenant: tenant, KID: kid, Alg: alg, Backend: "pkcs11", Created: created,
			Extractable: &extractable, NeverExtractable: &never},
		Signer: &p11Signer{s: s, priv: privH, pub: pub},
	}, nil
}

// p11Templates returns the mechanism and the public and private key
// templates for alg (CKA_TOKEN, CKA_LABEL and CKA_ID are added later).
func p11Templates(alg string) (mech []*pkcs11.Mechanism, pub, priv []*pkcs11.Attribute, err error) {
	priv = []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	pub = []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
	}
	var oid asn1.ObjectIdentifier
	switch alg {
	case ES256:
		oid = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	case ES384:
		oid = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	case RS256, PS256:
		mech = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}
		pub = append(pub,
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
		return mech, pub, priv, nil
	default:
		return nil, nil, nil, &UnsupportedAlgError{Backend: "pkcs11", Alg: alg}
	}
	params, _ := asn1.Marshal(oid)
	mech = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}
	pub = append(pub,
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
	priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
	return mech, pub, priv, nil
}

// p11Public reads the public key of a public key object.
func p11Public(p *pkcs11.Ctx, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, keyType uint) (crypto.PublicKey, error) {
	switch keyType {
	case pkcs11.CKK_EC:
		a, err := p.GetAttributeValue(sh, o, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("read EC public key: %w", err)
		}
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(a[0].Value, &oid); err != nil {
			return nil, fmt.Errorf("CKA_EC_PARAMS: %w", err)
		}
		var curve elliptic.Curve
		switch {
		case oid.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}):
			curve = elliptic.P256()
		case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 34}):
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("unsupported curve %v", oid)
		}
		// CKA_EC_POINT is a DER OCTET STRING around the point; some
		// modules return the bare point.
		point := a[1].Value
		var inner []byte
		if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
			point = inner
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("CKA_EC_POINT: %w", err)
		}
		return pub, nil
	case pkcs11.CKK_RSA:
		a, err := p.GetAttributeValue(sh, o, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return nil, fmt.Errorf("read RSA public key: %w", err)
		}
		e := new(big.Int).SetBytes(a[1].Value)
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, errors.New("RSA public exponent too large")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(a[0].Value), E: int(e.Int64())}, nil
	}
	return nil, fmt.Errorf("unsupported CKA_KEY_TYPE %#x", keyType)
}

// parseP11Label splits "agentsso/<tenant>/<alg>/<unix-nanoseconds>".
func parseP11Label(label string) (tenant, alg string, created time.Time, ok bool) {
	rest, ok := strings.CutPrefix(label, p11LabelPrefix)
	if !ok {
		return "", "", time.Time{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" {
		return "", "", time.Time{}, false
	}
	ns, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", "", time.Time{}, false
	}
	return parts[0], parts[1], time.Unix(0, ns).UTC(), true
}

func p11Label(p *pkcs11.Ctx, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle) string {
	a, err := p.GetAttributeValue(sh, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
	if err != nil {
		return ""
	}
	return string(a[0].Value)
}

func findObjects(p *pkcs11.Ctx, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		objs, _, err := p.FindObjects(sh, 100)
		if err != nil {
			p.FindObjectsFinal(sh)
			return nil, err
		}
		all = append(all, objs...)
		if len(objs) < 100 {
			break
		}
	}
	return all, p.FindObjectsFinal(sh)
}

// bytesToUint decodes a CK_ULONG attribute (native byte order, which is
// little-endian on every platform agentsso targets).
func bytesToUint(b []byte) uint {
	var v uint
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint(b[i])
	}
	return v
}

func bytesToBool(b []byte) bool { return len(b) > 0 && b[0] != 0 }

// p11Signer is the crypto.Signer of a PKCS#11 private key.
type p11Signer struct {
	s    *PKCS11
	priv pkcs11.ObjectHandle
	pub  crypto.PublicKey
}

func (k *p11Signer) Public() crypto.PublicKey { return k.pub }

// Sign signs digest, which must already be hashed with opts.HashFunc().
// ECDSA signatures are returned ASN.1-encoded; *rsa.PSSOptions selects
// RSASSA-PSS (salt length: the hash size unless an explicit length is
// given), anything else RSASSA-PKCS1-v1_5.
func (k *p11Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	if h != 0 && len(digest) != h.Size() {
		return nil, fmt.Errorf("softhsm: pkcs11: digest is %d bytes, %v wants %d", len(digest), h, h.Size())
	}
	var mech *pkcs11.Mechanism
	data := digest
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			hm, mgf, ok := p11PSSHash(h)
			if !ok {
				return nil, fmt.Errorf("softhsm: pkcs11: RSA-PSS with %v is not supported (want SHA-256, SHA-384 or SHA-512)", h)
			}
			salt := h.Size()
			switch {
			case pss.SaltLength > 0:
				salt = pss.SaltLength
			case pss.SaltLength == rsa.PSSSaltLengthAuto, pss.SaltLength == rsa.PSSSaltLengthEqualsHash:
			default:
				return nil, fmt.Errorf("softhsm: pkcs11: bad PSS salt length %d", pss.SaltLength)
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hm, mgf, uint(salt)))
			break
		}
		prefix, ok := digestInfoPrefix[h]
		if !ok {
			return nil, fmt.Errorf("softhsm: pkcs11: RSA PKCS#1 v1.5 with %v is not supported (want SHA-256, SHA-384 or SHA-512)", h)
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
		data = append(slices.Clip(prefix), digest...)
	default:
		return nil, fmt.Errorf("softhsm: pkcs11: unsupported public key type %T", k.pub)
	}
	sig, err := k.s.sign(mech, k.priv, data)
	if err != nil {
		return nil, err
	}
	if _, ok := k.pub.(*ecdsa.PublicKey); ok {
		return ecdsaASN1(sig)
	}
	return sig, nil
}

func (s *PKCS11) sign(mech *pkcs11.Mechanism, key pkcs11.ObjectHandle, data []byte) ([]byte, error) {
	sh, err := s.pool.get(context.Background())
	if err != nil {
		return nil, err
	}
	defer s.pool.put(sh)
	if err := s.mod.ctx.SignInit(sh, []*pkcs11.Mechanism{mech}, key); err != nil {
		return nil, fmt.Errorf("softhsm: pkcs11: sign on token %q (was the key deleted?): %w", s.token, err)
	}
	sig, err := s.mod.ctx.Sign(sh, data)
	if err != nil {
		return nil, fmt.Errorf("softhsm: pkcs11: sign on token %q: %w", s.token, err)
	}
	return sig, nil
}

func p11PSSHash(h crypto.Hash) (hashMech, mgf uint, ok bool) {
	switch h {
	case crypto.SHA256:
		return pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, true
	case crypto.SHA384:
		return pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384, true
	case crypto.SHA512:
		return pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512, true
	}
	return 0, 0, false
}

// sessionPool hands out logged-in sessions, one goroutine at a time each.
type sessionPool struct {
	ch   chan pkcs11.SessionHandle
	done chan struct{}
	n    int // sessions opened
	once sync.Once
}

func (p *sessionPool) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case <-p.done:
		return 0, errStoreClosed("pkcs11")
	default:
	}
	select {
	case sh := <-p.ch:
		return sh, nil
	case <-p.done:
		return 0, errStoreClosed("pkcs11")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *sessionPool) put(sh pkcs11.SessionHandle) { p.ch <- sh }

// close waits for every session to come back and closes it.
func (p *sessionPool) close(ctx *pkcs11.Ctx) error {
	var err error
	p.once.Do(func() {
		close(p.done)
		for range p.n {
			if cerr := ctx.CloseSession(<-p.ch); cerr != nil && err == nil {
				err = fmt.Errorf("softhsm: pkcs11: close session: %w", cerr)
			}
		}
	})
	return err
}

// p11Module is a loaded, initialized PKCS#11 library shared by the stores
// of this process.
type p11Module struct {
	path string
	ctx  *pkcs11.Ctx
	refs int
	// owned is false when something else in the process had already
	// initialized the library: then agentsso never finalizes it.
	owned bool
	// conf is SOFTHSM2_CONF when the module was initialized: what
	// libsofthsm2 read, and keeps until it is finalized.
	conf string
	// objectsMu serializes, across every store on the module, what
	// creates, destroys or searches objects (Create, Delete, opening a
	// store): SoftHSM2 2.6's file object store fails now and then
	// (CKR_GENERAL_ERROR) when one thread creates objects while another
	// creates or lists them (SoftHSMv2 issues 573 and 688). These are rare
	// enough that one at a time costs nothing; signing with a key already
	// found, the hot path, is not serialized.
	objectsMu sync.Mutex
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*p11Module{}
)

func acquireModule(path string) (*p11Module, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m := modules[path]
	if m == nil {
		ctx := pkcs11.New(path)
		if ctx == nil {
			return nil, cfgErr("keys.pkcs11.module", "cannot load PKCS#11 module %q: check the path; for SoftHSM2 install the softhsm2 package", path)
		}
		m = &p11Module{path: path, ctx: ctx}
		modules[path] = m
	}
	if m.refs == 0 {
		m.conf = os.Getenv("SOFTHSM2_CONF")
		err := m.ctx.Initialize()
		switch {
		case err == nil:
			m.owned = true
		case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
			m.owned = false
		default:
			return nil, fmt.Errorf("softhsm: pkcs11: initialize module %q: %w", path, err)
		}
	}
	m.refs++
	return m, nil
}

// openModuleConf returns the SOFTHSM2_CONF the module at path read when
// it was initialized, if a store has it open now.
func openModuleConf(path string) (conf string, open bool) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m := modules[path]
	if m == nil || m.refs == 0 {
		return "", false
	}
	return m.conf, true
}

// releaseModule finalizes the module when its last store closes. The
// library stays loaded (dlclose'ing and reloading libraries that link
// OpenSSL is not reliably safe) and is initialized again on next use.
func releaseModule(m *p11Module) error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 || !m.owned {
		return nil
	}
	if err := m.ctx.Finalize(); err != nil {
		return fmt.Errorf("softhsm: pkcs11: finalize module %q: %w", m.path, err)
	}
	return nil
}

// digestInfoPrefix holds the DER DigestInfo headers of PKCS#1 v1.5
// signatures (RFC 8017 section 9.2, note 1).
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}
