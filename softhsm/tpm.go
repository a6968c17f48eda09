package softhsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// TPMConfig selects the TPM 2.0 that holds the keys. Exactly one of Addr,
// Device and StateDir is set.
type TPMConfig struct {
	// Addr attaches to a running TPM's command port: "host:port" (TCP, as
	// swtpm --server type=tcp) or "unix:/path" (swtpm --server
	// type=unixio). swtpm serves one connection at a time, so nothing else
	// may be attached while the store is open.
	Addr string `mapstructure:"addr" json:"addr,omitempty"`
	// Device attaches to a TPM character device, e.g. /dev/tpmrm0 (the
	// kernel resource manager; prefer it to /dev/tpm0).
	Device string `mapstructure:"device" json:"device,omitempty"`
	// StateDir makes agentsso start swtpm itself (see StartSWTPM) with
	// this --tpmstate directory, and stop it on Close. Keys survive a
	// restart as long as the same StateDir and KeyDir are used.
	StateDir string `mapstructure:"state_dir" json:"state_dir,omitempty"`
	// KeyDir holds the keys' TPM2_Create blobs, one directory per tenant.
	// The blobs are wrapped by the TPM's storage key and useless without
	// that TPM. Required (Open defaults it from Config.Dir).
	KeyDir string `mapstructure:"key_dir" json:"key_dir,omitempty"`
	// FlushTransient flushes every transient object and session left in
	// the TPM when the store opens (set it for an swtpm only agentsso
	// uses; it is implied with StateDir). Never set it for a shared TPM.
	FlushTransient bool `mapstructure:"flush_transient" json:"flush_transient,omitempty"`
	// Timeout bounds each TPM command; 0 means 30s.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout,omitempty"`
}

// TPM is the TPM 2.0 backend, speaking raw TPM commands through go-tpm (no
// TSS, no resource manager needed).
//
// Keys are created with TPM2_Create under an ECC P-256 storage root key
// (the TCG template, re-created with TPM2_CreatePrimary at every open, so
// it is the same key as long as the owner seed is). Their public and
// private blobs are written to KeyDir/<tenant>/<kid>.json and loaded again
// under the SRK at open: a restarted TPM serves the same kids. The
// private blob is encrypted by the SRK and cannot be used elsewhere.
//
// All TPM access is serialized. The SRK stays loaded; so does the key that
// signed last, and signing with another key flushes it and loads the
// other (at most two transient objects, within any TPM's limits).
type TPM struct {
	cfg     TPMConfig
	sw      *SWTPM // started by NewTPM, stopped by Close
	dev     transport.TPMCloser
	timeout time.Duration

	mu     sync.Mutex // guards everything below and every TPM command
	closed bool
	clock  createdClock
	srk    tpm2.NamedHandle
	hot    *tpmKey // loaded key, or nil
	keys   map[string][]Key
}

var _ Store = (*TPM)(nil)

// tpmKey is one key's blobs and, while it is the hot key, its handle.
type tpmKey struct {
	tenant, kid, alg string
	pub              crypto.PublicKey
	public           tpm2.TPM2BPublic
	private          tpm2.TPM2BPrivate
	name             tpm2.TPM2BName
	handle           tpm2.TPMHandle // valid while t.hot == this key
	deleted          bool
}

// tpmKeyFile is the JSON form of a key under KeyDir.
type tpmKeyFile struct {
	Version int       `json:"version"`
	Tenant  string    `json:"tenant"`
	KID     string    `json:"kid"`
	Alg     string    `json:"alg"`
	Created time.Time `json:"created"`
	// Parent names the key the blobs are wrapped by.
	Parent string `json:"parent"`
	// Public and Private are the marshalled TPM2B_PUBLIC and TPM2B_PRIVATE
	// returned by TPM2_Create.
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
}

const tpmParentECCSRK = "owner/ecc-srk-template"

// NewTPM opens the TPM cfg names (starting swtpm when cfg.StateDir is
// set), re-creates the SRK and loads the keys under cfg.KeyDir.
func NewTPM(cfg TPMConfig) (*TPM, error) {
	n := 0
	for _, v := range []string{cfg.Addr, cfg.Device, cfg.StateDir} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, cfgErr("keys.tpm", "set one of addr (a running TPM's command port), device (e.g. /dev/tpmrm0) or state_dir (agentsso starts swtpm)")
	case n > 1:
		return nil, cfgErr("keys.tpm", "addr %q, device %q and state_dir %q are exclusive: set only one", cfg.Addr, cfg.Device, cfg.StateDir)
	case cfg.KeyDir == "":
		return nil, cfgErr("keys.tpm.key_dir", "required (directory for the keys' TPM-wrapped blobs; keys.dir sets it too)")
	case cfg.Timeout < 0:
		return nil, cfgErr("keys.tpm.timeout", "%v is negative", cfg.Timeout)
	}
	if err := os.MkdirAll(cfg.KeyDir, 0o700); err != nil {
		return nil, cfgErr("keys.tpm.key_dir", "%w", err)
	}
	t := &TPM{cfg: cfg, timeout: cfg.Timeout, clock: createdClock{now: time.Now}, keys: map[string][]Key{}}
	if t.timeout == 0 {
		t.timeout = 30 * time.Second
	}
	var err error
	switch {
	case cfg.StateDir != "":
		t.sw, err = StartSWTPM(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		t.cfg.FlushTransient = true
		t.dev, err = dialTPM(t.sw.Addr(), t.timeout)
	case cfg.Addr != "":
		t.dev, err = dialTPM(cfg.Addr, t.timeout)
	default:
		t.dev, err = linuxtpm.Open(cfg.Device)
		if err != nil {
			err = cfgErr("keys.tpm.device", "%w (is the TPM enabled and readable by this user? use /dev/tpmrm0 when it exists)", err)
		}
	}
	if err == nil {
		err = t.start()
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// start flushes leftovers if allowed, creates the SRK and loads the keys.
func (t *TPM) start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg.FlushTransient {
		if err := t.flushTransient(); err != nil {
			return err
		}
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t.dev)
	if err != nil {
		return fmt.Errorf("softhsm: tpm: create the storage root key: %w%s", err, objectMemoryHint(err))
	}
	t.srk = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	return t.loadAll()
}

// flushTransient flushes transient objects and loaded sessions.
func (t *TPM) flushTransient() error {
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      uint32(ht) << 24,
			PropertyCount: 64,
		}.Execute(t.dev)
		if err != nil {
			return fmt.Errorf("softhsm: tpm: list handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("softhsm: tpm: list handles: %w", err)
		}
		for _, h := range hs.Handle {
			if tpm2.TPMHT(h>>24) != ht {
				continue
			}
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.dev); err != nil {
				return fmt.Errorf("softhsm: tpm: flush handle %#x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

// loadAll reads every key file and checks that it loads under the SRK.
func (t *TPM) loadAll() error {
	tenants, err := os.ReadDir(t.cfg.KeyDir)
	if err != nil {
		return cfgErr("keys.tpm.key_dir", "%w", err)
	}
	for _, d := range tenants {
		if !d.IsDir() || checkTenant(d.Name()) != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(t.cfg.KeyDir, d.Name()))
		if err != nil {
			return cfgErr("keys.tpm.key_dir", "%w", err)
		}
		var ks []Key
		for _, f := range files {
			if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") {
				continue
			}
			p := filepath.Join(t.cfg.KeyDir, d.Name(), f.Name())
			k, err := t.readKeyFile(p, d.Name())
			if err != nil {
				return fmt.Errorf("softhsm: tpm: %s: %w", p, err)
			}
			ks = append(ks, k)
			t.clock.seen(k.Created)
		}
		if len(ks) > 0 {
			sortKeys(ks)
			t.keys[d.Name()] = ks
		}
	}
	return nil
}

func (t *TPM) readKeyFile(p, tenant string) (Key, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return Key{}, err
	}
	var f tpmKeyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Key{}, fmt.Errorf("not an agentsso TPM key file: %w (delete it to drop the key)", err)
	}
	if f.Version != 1 || f.Parent != tpmParentECCSRK {
		return Key{}, fmt.Errorf("unsupported key file version %d / parent %q (want 1 / %q)", f.Version, f.Parent, tpmParentECCSRK)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](f.Public)
	if err != nil {
		return Key{}, fmt.Errorf("public blob: %w (delete the file to drop the key)", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](f.Private)
	if err != nil {
		return Key{}, fmt.Errorf("private blob: %w (delete the file to drop the key)", err)
	}
	k, info, err := newTPMKey(tenant, f.Alg, f.Created, *pub, *priv)
	if err != nil {
		return Key{}, err
	}
	if want := strings.TrimSuffix(filepath.Base(p), ".json"); k.kid != want {
		return Key{}, fmt.Errorf("public key has kid %q, the file name says %q", k.kid, want)
	}
	// Load it once now, so that a key from another TPM (or from a wiped
	// swtpm state) is reported at open, not at the first signature.
	h, err := t.load(k)
	if err != nil {
		return Key{}, fmt.Errorf("the key does not load under this TPM's storage key (was the TPM or the swtpm state dir changed or cleared? keys.tpm.state_dir): %w", err)
	}
	t.flush(h)
	return Key{KeyInfo: info, Signer: &tpmSigner{t: t, k: k}}, nil
}

// newTPMKey decodes a key's public area.
func newTPMKey(tenant, alg string, created time.Time, public tpm2.TPM2BPublic, private tpm2.TPM2BPrivate) (*tpmKey, KeyInfo, error) {
	area, err := public.Contents()
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("public area: %w", err)
	}
	pub, err := tpm2.Pub(*area)
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("public key: %w", err)
	}
	name, err := tpm2.ObjectName(area)
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("object name: %w", err)
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return nil, KeyInfo{}, err
	}
	// fixedTPM+fixedParent: the key cannot be duplicated out of this TPM;
	// sensitiveDataOrigin: it was generated inside it.
	a := area.ObjectAttributes
	extractable := !(a.FixedTPM && a.FixedParent)
	never := a.FixedTPM && a.FixedParent && a.SensitiveDataOrigin
	k := &tpmKey{tenant: tenant, kid: kid, alg: alg, pub: pub, public: public, private: private, name: *name}
	info := KeyInfo{Tenant: tenant, KID: kid, Alg: alg, Backend: "tpm", Created: created.UTC(),
		Extractable: &extractable, NeverExtractable: &never}
	return k, info, nil
}

// Backend implements Store.
func (t *TPM) Backend() string { return "tpm" }

// Create implements Store.
func (t *TPM) Create(ctx context.Context, tenant, alg string) (Key, error) {
	if err := checkTenant(tenant); err != nil {
		return Key{}, err
	}
	tmpl, err := tpmTemplate(alg)
	if err != nil {
		return Key{}, err
	}
	if err := ctx.Err(); err != nil {
		return Key{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Key{}, errStoreClosed("tpm")
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: t.srk.Handle, Name: t.srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(t.dev)
	if err != nil {
		return Key{}, fmt.Errorf("softhsm: tpm: create %s key: %w", alg, err)
	}
	created := t.clock.next()
	k, info, err := newTPMKey(tenant, alg, created, rsp.OutPublic, rsp.OutPrivate)
	if err != nil {
		return Key{}, fmt.Errorf("softhsm: tpm: new %s key: %w", alg, err)
	}
	f := tpmKeyFile{Version: 1, Tenant: tenant, KID: k.kid, Alg: alg, Created: created, Parent: tpmParentECCSRK,
		Public: tpm2.Marshal(rsp.OutPublic), Private: tpm2.Marshal(rsp.OutPrivate)}
	if err := writeFileAtomic(t.keyPath(tenant, k.kid), f); err != nil {
		return Key{}, fmt.Errorf("softhsm: tpm: save key: %w", err)
	}
	key := Key{KeyInfo: info, Signer: &tpmSigner{t: t, k: k}}
	t.keys[tenant] = append(t.keys[tenant], key)
	return key, nil
}

func (t *TPM) keyPath(tenant, kid string) string {
	return filepath.Join(t.cfg.KeyDir, tenant, kid+".json")
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// List implements Store.
func (t *TPM) List(_ context.Context, tenant string) ([]Key, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.keys[tenant]), nil
}

// Delete implements Store. It removes the key's blobs; once they are gone
// the TPM can never load the key again.
func (t *TPM) Delete(_ context.Context, tenant, kid string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ks := t.keys[tenant]
	i := slices.IndexFunc(ks, func(k Key) bool { return k.KID == kid })
	if i < 0 {
		return fmt.Errorf("%w: tenant %q kid %q", ErrKeyNotFound, tenant, kid)
	}
	if err := os.Remove(t.keyPath(tenant, kid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("softhsm: tpm: delete key: %w", err)
	}
	k := ks[i].Signer.(*tpmSigner).k
	k.deleted = true
	if t.hot == k {
		t.flush(k.handle)
		t.hot = nil
	}
	t.keys[tenant] = slices.Delete(slices.Clone(ks), i, i+1)
	return nil
}

// Close implements Store: it flushes what it loaded, disconnects and, if
// NewTPM started swtpm, shuts the TPM down and stops swtpm.
func (t *TPM) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	if t.hot != nil {
		t.flush(t.hot.handle)
		t.hot = nil
	}
	if t.srk.Handle != 0 {
		t.flush(t.srk.Handle)
	}
	t.mu.Unlock()
	return t.shutdown()
}

// shutdown disconnects and stops the swtpm NewTPM started.
func (t *TPM) shutdown() error {
	var err error
	if t.dev != nil {
		if t.sw != nil {
			// An orderly shutdown, so swtpm saves its state cleanly.
			tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}.Execute(t.dev)
		}
		err = t.dev.Close()
	}
	if t.sw != nil {
		if serr := t.sw.Close(); err == nil {
			err = serr
		}
	}
	return err
}

// load loads a key under the SRK; the caller holds t.mu.
func (t *TPM) load(k *tpmKey) (tpm2.TPMHandle, error) {
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: t.srk.Handle, Name: t.srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    k.private,
		InPublic:     k.public,
	}.Execute(t.dev)
	if err != nil {
		return 0, fmt.Errorf("%w%s", err, objectMemoryHint(err))
	}
	return rsp.ObjectHandle, nil
}

func (t *TPM) flush(h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(t.dev)
}

// sign signs digest with k using scheme; it is the one path all signers
// take, under t.mu.
func (t *TPM) sign(k *tpmKey, digest []byte, scheme tpm2.TPMTSigScheme) (*tpm2.TPMTSignature, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return nil, errStoreClosed("tpm")
	case k.deleted:
		return nil, fmt.Errorf("%w: tenant %q kid %q was deleted", ErrKeyNotFound, k.tenant, k.kid)
	}
	if t.hot != k {
		if t.hot != nil {
			t.flush(t.hot.handle)
			t.hot = nil
		}
		h, err := t.load(k)
		if err != nil {
			return nil, fmt.Errorf("softhsm: tpm: load key %q: %w", k.kid, err)
		}
		k.handle, t.hot = h, k
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   scheme,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(t.dev)
	if err != nil {
		return nil, fmt.Errorf("softhsm: tpm: sign with key %q: %w", k.kid, err)
	}
	return &rsp.Signature, nil
}

// objectMemoryHint explains TPM_RC_OBJECT_MEMORY, the usual result of
// handles leaked into a TPM without a resource manager.
func objectMemoryHint(err error) string {
	if errors.Is(err, tpm2.TPMRCObjectMemory) || errors.Is(err, tpm2.TPMRCSessionMemory) {
		return " (the TPM's object slots are full of leaked handles: restart swtpm, run tpm2_flushcontext -t -s, or set keys.tpm.flush_transient for a TPM only agentsso uses)"
	}
	return ""
}

// tpmTemplate returns the TPM2_Create template for alg. The keys have no
// fixed scheme (TPM_ALG_NULL), so the signer picks ECDSA, RSASSA or
// RSAPSS and the hash per signature.
func tpmTemplate(alg string) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	}
	null := tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}
	switch alg {
	case ES256, ES384:
		curve := tpm2.TPMECCNistP256
		if alg == ES384 {
			curve = tpm2.TPMECCNistP384
		}
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: null,
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   curve,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case RS256, PS256:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: null,
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, &UnsupportedAlgError{Backend: "tpm", Alg: alg}
}

// tpmSigner is the crypto.Signer of a TPM key.
type tpmSigner struct {
	t *TPM
	k *tpmKey
}

func (s *tpmSigner) Public() crypto.PublicKey { return s.k.pub }

// Sign signs digest, which must already be hashed with opts.HashFunc()
// (SHA-256, SHA-384 or SHA-512). ECDSA signatures are returned
// ASN.1-encoded; *rsa.PSSOptions selects RSASSA-PSS, whose salt is as
// long as the hash (the TPM's choice, and what RFC 7518 wants for PS*).
func (s *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	var halg tpm2.TPMIAlgHash
	switch h {
	case crypto.SHA256:
		halg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		halg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		halg = tpm2.TPMAlgSHA512
	default:
		return nil, fmt.Errorf("softhsm: tpm: hash %v is not supported (want SHA-256, SHA-384 or SHA-512)", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("softhsm: tpm: digest is %d bytes, %v wants %d", len(digest), h, h.Size())
	}
	var scheme tpm2.TPMAlgID
	switch s.k.pub.(type) {
	case *ecdsa.PublicKey:
		scheme = tpm2.TPMAlgECDSA
	case *rsa.PublicKey:
		scheme = tpm2.TPMAlgRSASSA
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != h.Size() {
				return nil, fmt.Errorf("softhsm: tpm: PSS salt length %d is not supported (the TPM uses the hash length, %d)", pss.SaltLength, h.Size())
			}
			scheme = tpm2.TPMAlgRSAPSS
		}
	default:
		return nil, fmt.Errorf("softhsm: tpm: unsupported public key type %T", s.k.pub)
	}
	sig, err := s.t.sign(s.k, digest, tpm2.TPMTSigScheme{
		Scheme:  scheme,
		Details: tpm2.NewTPMUSigScheme(scheme, &tpm2.TPMSSchemeHash{HashAlg: halg}),
	})
	if err != nil {
		return nil, err
	}
	switch scheme {
	case tpm2.TPMAlgECDSA:
		e, err := sig.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("softhsm: tpm: ECDSA signature: %w", err)
		}
		return ecdsaASN1RS(e.SignatureR.Buffer, e.SignatureS.Buffer)
	case tpm2.TPMAlgRSAPSS:
		r, err := sig.Signature.RSAPSS()
		if err != nil {
			return nil, fmt.Errorf("softhsm: tpm: RSA-PSS signature: %w", err)
		}
		return r.Sig.Buffer, nil
	default:
		r, err := sig.Signature.RSASSA()
		if err != nil {
			return nil, fmt.Errorf("softhsm: tpm: RSA signature: %w", err)
		}
		return r.Sig.Buffer, nil
	}
}

// dialTPM connects to a TPM command port: "unix:/path" or "host:port".
func dialTPM(addr string, timeout time.Duration) (transport.TPMCloser, error) {
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		return nil, cfgErr("keys.tpm.addr", "connect to TPM at %s: %w (is swtpm running with --server on it?)", addr, err)
	}
	return transport.FromReadWriteCloser(&tpmConn{Conn: c, addr: addr, timeout: timeout}), nil
}

// tpmConn frames a stream socket for go-tpm: each Read returns one whole
// TPM response (go-tpm reads a response with a single Read), and each
// command must be answered within the timeout.
type tpmConn struct {
	net.Conn
	addr    string
	timeout time.Duration
	rsp     []byte
}

const tpmMaxResponse = 1 << 16

func (c *tpmConn) Write(p []byte) (int, error) {
	c.rsp = nil
	if err := c.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *tpmConn) Read(p []byte) (int, error) {
	if len(c.rsp) == 0 {
		var hdr [10]byte // tag, size, response code
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, c.readErr(err)
		}
		size := binary.BigEndian.Uint32(hdr[2:6])
		if size < 10 || size > tpmMaxResponse {
			return 0, fmt.Errorf("softhsm: tpm: bad response size %d from %s", size, c.addr)
		}
		c.rsp = make([]byte, size)
		copy(c.rsp, hdr[:])
		if _, err := io.ReadFull(c.Conn, c.rsp[10:]); err != nil {
			return 0, c.readErr(err)
		}
	}
	n := copy(p, c.rsp)
	c.rsp = c.rsp[n:]
	return n, nil
}

func (c *tpmConn) readErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("softhsm: tpm: no answer from %s within %v (swtpm serves one connection at a time: is another client attached?): %w", c.addr, c.timeout, err)
	}
	return fmt.Errorf("softhsm: tpm: read from %s: %w", c.addr, err)
}
