package emulator

// DPoP (RFC 9449): proof verification, the per-tenant replay cache and
// server nonces, the token endpoint's key binding and the check at the
// userinfo endpoint.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"

	"github.com/agentsso/agentsso/emulator/audit"
)

// DPoPConfig is a tenant's or a client's DPoP policy.
type DPoPConfig struct {
	// RequireNonce makes every DPoP proof carry a server nonce (RFC 9449
	// section 8): a proof without the current or the previous nonce gets
	// 400 use_dpop_nonce with a DPoP-Nonce header to retry with. Set on
	// the tenant it applies to all its clients.
	RequireNonce bool `yaml:"require_nonce" mapstructure:"require_nonce" json:"require_nonce,omitempty"`
}

// DPoP proof errors, one per check of RFC 9449 section 4.3 (and 7.1 at a
// protected resource). The token endpoint answers ErrDPoPNonce with
// use_dpop_nonce, ErrDPoPBinding with invalid_grant and every other one
// with invalid_dpop_proof.
var (
	ErrDPoPMissing   = errors.New("dpop: no DPoP proof")
	ErrDPoPMultiple  = errors.New("dpop: more than one DPoP proof")
	ErrDPoPMalformed = errors.New("dpop: proof is not a compact JWS")
	ErrDPoPTyp       = errors.New("dpop: typ is not dpop+jwt")
	ErrDPoPAlg       = errors.New("dpop: alg is not an allowed asymmetric algorithm")
	ErrDPoPKey       = errors.New("dpop: jwk is missing, private or unfit for alg")
	ErrDPoPSignature = errors.New("dpop: signature does not verify with jwk")
	ErrDPoPClaims    = errors.New("dpop: a claim is missing or malformed")
	ErrDPoPMethod    = errors.New("dpop: htm is not the request's method")
	ErrDPoPURL       = errors.New("dpop: htu is not the endpoint's URL")
	ErrDPoPIat       = errors.New("dpop: iat is outside the accepted window")
	ErrDPoPReplay    = errors.New("dpop: jti was already used")
	ErrDPoPNonce     = errors.New("dpop: nonce is missing or not current")
	ErrDPoPAth       = errors.New("dpop: ath is not the hash of the access token")
	ErrDPoPBinding   = errors.New("dpop: key is not the one the token is bound to")
)

// errDPoPCacheFull: the replay cache cannot take another proof.
var errDPoPCacheFull = errors.New("dpop: replay cache is full")

// ErrInvalidDPoPProof and ErrUseDPoPNonce are RFC 9449's token endpoint
// errors (sections 5 and 8). fosite has neither.
var (
	ErrInvalidDPoPProof = &fosite.RFC6749Error{
		ErrorField:       "invalid_dpop_proof",
		DescriptionField: "The DPoP proof is invalid.",
		CodeField:        http.StatusBadRequest,
	}
	ErrUseDPoPNonce = &fosite.RFC6749Error{
		ErrorField:       "use_dpop_nonce",
		DescriptionField: "The authorization server requires a nonce in the DPoP proof.",
		CodeField:        http.StatusBadRequest,
	}
)

const (
	// DPoPWindow is how far a proof's iat may be from the tenant's clock,
	// either way.
	DPoPWindow = 60 * time.Second
	// DPoPNonceRotation is how long a server nonce is current; the
	// previous one stays accepted for as long again.
	DPoPNonceRotation = 5 * time.Minute

	dpopMaxProofSize = 8 << 10
	dpopMaxJTI       = 256
	dpopMaxReplay    = 1 << 21
	dpopProofLog     = 256
	dpopNonceLog     = 32
)

// dpopAlgNames is advertised as dpop_signing_alg_values_supported.
var dpopAlgNames = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// DPoPCheck is what a proof is checked against.
type DPoPCheck struct {
	// Method is the request's HTTP method (htm).
	Method string
	// URL is the endpoint's URL (htu); a query or fragment on either side
	// is ignored.
	URL string
	// Now is the time by the tenant's clock.
	Now time.Time
	// Window bounds |iat - Now| (DPoPWindow when zero).
	Window time.Duration
	// AccessToken, when set, is the token the proof accompanies: ath must
	// be its SHA-256 hash (RFC 9449 section 4.3 check 12).
	AccessToken string
}

// DPoPProof is a DPoP proof's content.
type DPoPProof struct {
	JTI   string
	HTM   string
	HTU   string
	IAT   time.Time
	Nonce string
	ATH   string
	Alg   string
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's key,
	// base64url: the cnf.jkt of a token bound to it.
	JKT string
	JWK jose.JSONWebKey
}

// VerifyDPoPProof checks a DPoP proof against chk: a compact JWS with
// typ dpop+jwt, an allowed asymmetric alg, a public jwk fit for alg that
// verifies the signature, jti, htm, htu and iat (and ath when
// chk.AccessToken is set). Replay and nonces are the caller's, who keeps
// state. On error it returns what it could read of the proof (for the
// record) and an error wrapping one of the ErrDPoP* sentinels.
func VerifyDPoPProof(raw string, chk DPoPCheck) (*DPoPProof, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: the DPoP header is empty", ErrDPoPMalformed)
	}
	if len(raw) > dpopMaxProofSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrDPoPMalformed, len(raw), dpopMaxProofSize)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: want three base64url parts separated by '.'", ErrDPoPMalformed)
	}
	i := strings.IndexByte(raw, '.')
	j := strings.LastIndexByte(raw, '.')
	hdr, body, sigPart := raw[:i], raw[i+1:j], raw[j+1:]
	// The header (typ, alg, jwk: checks 4 to 7) is the same in every
	// proof of a client's key; one that came with a valid signature
	// before is not read again.
	h, seen := dpopHeaders.get(hdr)
	if !seen {
		var err error
		if h, err = parseDPoPHeader(hdr); err != nil {
			return nil, err
		}
	}
	p := &DPoPProof{Alg: h.alg, JWK: h.key.jwk, JKT: h.key.jkt}

	// Signature (check 6), verified with the standard library.
	sig, err := base64.RawURLEncoding.DecodeString(sigPart)
	if err != nil {
		return p, fmt.Errorf("%w: signature is not base64url: %v", ErrDPoPMalformed, err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return p, fmt.Errorf("%w: payload is not base64url: %v", ErrDPoPMalformed, err)
	}
	if !dpopVerify(h.alg, h.key, []byte(raw[:j]), sig) {
		return p, ErrDPoPSignature
	}
	if !seen {
		dpopHeaders.put(hdr, h)
	}

	// Claims (check 3).
	var c map[string]json.RawMessage
	if err := json.Unmarshal(payload, &c); err != nil || c == nil {
		return p, fmt.Errorf("%w: the payload is not a JSON object", ErrDPoPClaims)
	}
	for _, f := range []struct {
		name     string
		v        *string
		required bool
	}{{"jti", &p.JTI, true}, {"htm", &p.HTM, true}, {"htu", &p.HTU, true}, {"nonce", &p.Nonce, false}, {"ath", &p.ATH, false}} {
		b, present := c[f.name]
		if !present {
			if f.required {
				return p, fmt.Errorf("%w: %s is missing", ErrDPoPClaims, f.name)
			}
			continue
		}
		s, ok := jsonString(b)
		if !ok || (f.required && s == "") {
			return p, fmt.Errorf("%w: %s must be a non-empty string", ErrDPoPClaims, f.name)
		}
		*f.v = s
	}
	if len(p.JTI) > dpopMaxJTI {
		return p, fmt.Errorf("%w: jti is %d bytes, more than %d", ErrDPoPClaims, len(p.JTI), dpopMaxJTI)
	}
	iat, ok := jsonNumericDate(c["iat"])
	if !ok {
		return p, fmt.Errorf("%w: iat must be a NumericDate", ErrDPoPClaims)
	}
	p.IAT = iat

	// htm (check 8), htu (check 9), iat (check 11).
	if p.HTM != chk.Method {
		return p, fmt.Errorf("%w: htm %q, the request is %s", ErrDPoPMethod, p.HTM, chk.Method)
	}
	want, err := dpopEndpoints.normalize(chk.URL)
	if err != nil {
		return p, fmt.Errorf("%w: endpoint URL %q: %v", ErrDPoPURL, chk.URL, err)
	}
	// A proof whose htu is the endpoint's URL as written is the common
	// case: it is not parsed.
	if p.HTU != chk.URL {
		if got, err := normalizeHTU(p.HTU); err != nil || got != want {
			return p, fmt.Errorf("%w: htu %q, want %s", ErrDPoPURL, p.HTU, want)
		}
	}
	win := chk.Window
	if win <= 0 {
		win = DPoPWindow
	}
	if d := chk.Now.Sub(p.IAT); d > win || d < -win {
		return p, fmt.Errorf("%w: iat %s is %s from the server's time %s (window ±%s)", ErrDPoPIat,
			p.IAT.UTC().Format(time.RFC3339), d.Round(time.Second), chk.Now.UTC().Format(time.RFC3339), win)
	}
	// ath (check 12).
	if chk.AccessToken != "" {
		sum := sha256.Sum256([]byte(chk.AccessToken))
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		if p.ATH == "" {
			return p, fmt.Errorf("%w: the proof has no ath", ErrDPoPAth)
		}
		if subtle.ConstantTimeCompare([]byte(p.ATH), []byte(want)) != 1 {
			return p, fmt.Errorf("%w: ath %q", ErrDPoPAth, p.ATH)
		}
	}
	return p, nil
}

// dpopHeader is what a proof's JOSE header says: its alg and its key,
// checked (RFC 9449 section 4.3 checks 4 to 7).
type dpopHeader struct {
	alg string
	key *dpopKey
}

// parseDPoPHeader reads and checks a proof's base64url JOSE header: typ
// dpop+jwt, an allowed asymmetric alg, no crit, and a public jwk fit for
// alg.
func parseDPoPHeader(b64 string) (*dpopHeader, error) {
	hb, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url: %v", ErrDPoPMalformed, err)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(hb, &h); err != nil || h == nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrDPoPMalformed)
	}
	// typ (check 4)
	typ, ok := jsonString(h["typ"])
	if !ok || (!strings.EqualFold(typ, "dpop+jwt") && !strings.EqualFold(typ, "application/dpop+jwt")) {
		if _, present := h["typ"]; !present {
			return nil, fmt.Errorf("%w: the header has no typ", ErrDPoPTyp)
		}
		return nil, fmt.Errorf("%w: typ %s", ErrDPoPTyp, h["typ"])
	}
	// alg (check 5): asymmetric and supported; none and HS* never.
	alg, ok := jsonString(h["alg"])
	if !ok || !isDPoPAlg(alg) {
		return nil, fmt.Errorf("%w: %s (want one of %s)", ErrDPoPAlg, orMissing(h["alg"]), strings.Join(dpopAlgNames, ", "))
	}
	if _, ok := h["crit"]; ok {
		return nil, fmt.Errorf("%w: the crit header is not supported", ErrDPoPMalformed)
	}
	// jwk (checks 6 and 7): present, public, fit for alg.
	jwkRaw, ok := h["jwk"]
	if !ok {
		return nil, fmt.Errorf("%w: the header has no jwk", ErrDPoPKey)
	}
	key, err := dpopKeys.parse(jwkRaw)
	if err != nil {
		return nil, err
	}
	if err := dpopKeyFits(key.jwk.Key, alg); err != nil {
		return nil, err
	}
	return &dpopHeader{alg: alg, key: key}, nil
}

// dpopHeaderCache remembers the checked headers of proofs whose signature
// verified, by their base64url text: a client's proofs share one header,
// so its proofs after the first cost no header decoding, JSON or key
// parsing. Only small headers are kept (any key DPoP allows fits), and
// the cache starts over when full.
type dpopHeaderCache struct {
	mu sync.RWMutex
	m  map[string]*dpopHeader
}

const (
	dpopHeaderCacheSize = 4096
	dpopHeaderCacheMax  = 2 << 10 // bytes of base64url header
)

var dpopHeaders dpopHeaderCache

func (c *dpopHeaderCache) get(b64 string) (*dpopHeader, bool) {
	c.mu.RLock()
	h, ok := c.m[b64]
	c.mu.RUnlock()
	return h, ok
}

func (c *dpopHeaderCache) put(b64 string, h *dpopHeader) {
	if len(b64) > dpopHeaderCacheMax {
		return
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= dpopHeaderCacheSize {
		c.m = make(map[string]*dpopHeader)
	}
	c.m[strings.Clone(b64)] = h
	c.mu.Unlock()
}

// dpopEndpointCache remembers the normalized form of the endpoint URLs
// proofs are checked against (a handful per tenant).
type dpopEndpointCache struct {
	mu sync.RWMutex
	m  map[string]string
}

var dpopEndpoints dpopEndpointCache

func (c *dpopEndpointCache) normalize(u string) (string, error) {
	c.mu.RLock()
	n, ok := c.m[u]
	c.mu.RUnlock()
	if ok {
		return n, nil
	}
	n, err := normalizeHTU(u)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= dpopHeaderCacheSize {
		c.m = make(map[string]string)
	}
	c.m[u] = n
	c.mu.Unlock()
	return n, nil
}

func isDPoPAlg(alg string) bool {
	for _, a := range dpopAlgNames {
		if a == alg {
			return true
		}
	}
	return false
}

// dpopKeyFits checks that a public key can make alg's signatures.
func dpopKeyFits(k any, alg string) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		switch {
		case alg == "ES256" && k.Curve == elliptic.P256(), alg == "ES384" && k.Curve == elliptic.P384():
			return nil
		}
		return fmt.Errorf("%w: an EC key on %s cannot make %s signatures", ErrDPoPKey, k.Curve.Params().Name, alg)
	case *rsa.PublicKey:
		if alg != "RS256" && alg != "PS256" {
			return fmt.Errorf("%w: an RSA key cannot make %s signatures", ErrDPoPKey, alg)
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: the RSA key has %d bits, fewer than 2048", ErrDPoPKey, k.N.BitLen())
		}
		return nil
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return fmt.Errorf("%w: an Ed25519 key cannot make %s signatures", ErrDPoPKey, alg)
		}
		return nil
	}
	return fmt.Errorf("%w: unsupported key type %T", ErrDPoPKey, k)
}

// dpopVerify checks a JWS signature over input (RFC 7518 section 3) by
// a proof key.
func dpopVerify(alg string, key *dpopKey, input, sig []byte) bool {
	switch k := key.jwk.Key; alg {
	case "ES256", "ES384":
		pub, ok := k.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		if alg == "ES256" {
			d := sha256.Sum256(input)
			return ecdsa.VerifyASN1(pub, d[:], ecdsaDER(sig[:size], sig[size:]))
		}
		d := sha512.Sum384(input)
		return ecdsa.VerifyASN1(pub, d[:], ecdsaDER(sig[:size], sig[size:]))
	case "RS256", "PS256":
		pub, ok := k.(*rsa.PublicKey)
		if !ok {
			return false
		}
		d := sha256.Sum256(input)
		if alg == "RS256" {
			return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
		}
		return rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case "EdDSA":
		pub, ok := k.(ed25519.PublicKey)
		return ok && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, input, sig)
	}
	return false
}

// ecdsaDER encodes a JWS ECDSA signature's R and S (RFC 7518 section
// 3.4: big-endian, fixed size) as the ASN.1 SEQUENCE of two INTEGERs that
// ecdsa.VerifyASN1 takes, each minimal and positive (a zero stays a zero,
// which the verifier refuses as ecdsa.Verify would).
func ecdsaDER(r, s []byte) []byte {
	integer := func(out, v []byte) []byte {
		for len(v) > 1 && v[0] == 0 {
			v = v[1:]
		}
		n := len(v)
		pad := v[0]&0x80 != 0
		if pad {
			n++
		}
		out = append(out, 0x02, byte(n))
		if pad {
			out = append(out, 0)
		}
		return append(out, v...)
	}
	body := integer(integer(make([]byte, 0, 2*(len(r)+3)+2)[:2], r), s)
	body[0], body[1] = 0x30, byte(len(body)-2)
	return body
}

// dpopKey is a proof key, parsed and thumbprinted.
type dpopKey struct {
	jwk jose.JSONWebKey
	jkt string
}

// dpopKeyCache remembers the keys of recent proofs by their JSON, so that
// a client's proofs after the first cost a signature check and no key
// parsing. It is bounded: when full it starts over.
type dpopKeyCache struct {
	mu sync.RWMutex
	m  map[string]*dpopKey
}

const dpopKeyCacheSize = 4096

var dpopKeys dpopKeyCache

// parse reads a proof's jwk: a public key (no private or symmetric
// members), with its RFC 7638 thumbprint.
func (c *dpopKeyCache) parse(raw json.RawMessage) (*dpopKey, error) {
	c.mu.RLock()
	k := c.m[string(raw)]
	c.mu.RUnlock()
	if k != nil {
		return k, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, fmt.Errorf("%w: jwk is not a JSON object", ErrDPoPKey)
	}
	for _, m := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("%w: jwk holds private or symmetric key material (%q): send the public key only", ErrDPoPKey, m)
		}
	}
	k = &dpopKey{}
	if err := k.jwk.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("%w: jwk: %v", ErrDPoPKey, err)
	}
	if !k.jwk.IsPublic() || !k.jwk.Valid() {
		return nil, fmt.Errorf("%w: jwk is not a valid public key", ErrDPoPKey)
	}
	tp, err := k.jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: thumbprint: %v", ErrDPoPKey, err)
	}
	k.jkt = base64.RawURLEncoding.EncodeToString(tp)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= dpopKeyCacheSize {
		c.m = make(map[string]*dpopKey)
	}
	c.m[string(raw)] = k
	c.mu.Unlock()
	return k, nil
}

// jsonString decodes a JSON string.
func jsonString(b json.RawMessage) (string, bool) {
	if len(b) < 2 || b[0] != '"' {
		return "", false
	}
	// b is valid JSON (decoded from an object): without escapes its
	// content is the string.
	if in := b[1 : len(b)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in), true
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonNumericDate decodes a JSON number of seconds since the epoch.
func jsonNumericDate(b json.RawMessage) (time.Time, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

func orMissing(b json.RawMessage) string {
	if b == nil {
		return "missing"
	}
	return string(b)
}

// normalizeHTU reduces an http(s) URL to what htu is compared on (RFC
// 9449 section 4.3 check 9, RFC 3986 section 6.2.2 and 6.2.3): lowercase
// scheme and host, no default port, "/" for an empty path, no query or
// fragment.
func normalizeHTU(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.User != nil {
		return "", errors.New("not an absolute http or https URL")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

// dpopProof reads the one DPoP header of a request (RFC 9449 section 4.3
// check 1) and verifies it. It returns nil, nil when there is none.
func dpopProof(r *http.Request, chk DPoPCheck) (*DPoPProof, error) {
	vs := r.Header.Values("DPoP")
	switch {
	case len(vs) == 0:
		return nil, nil
	case len(vs) > 1:
		return nil, fmt.Errorf("%w: %d DPoP headers", ErrDPoPMultiple, len(vs))
	case strings.Contains(vs[0], ","):
		return nil, fmt.Errorf("%w: the DPoP header holds a list", ErrDPoPMultiple)
	}
	p, err := VerifyDPoPProof(strings.TrimSpace(vs[0]), chk)
	if p == nil {
		p = &DPoPProof{}
	}
	return p, err
}

// --- per-tenant state: replay cache, nonces, the record ---

// DPoPProofRecord is one DPoP proof the tenant saw: what it said and
// what became of it, never the proof itself.
type DPoPProofRecord struct {
	// Time of the request by the tenant's clock.
	Time     time.Time `json:"time"`
	Endpoint string    `json:"endpoint"` // token or userinfo
	ClientID string    `json:"client_id,omitempty"`
	JTI      string    `json:"jti,omitempty"`
	JKT      string    `json:"jkt,omitempty"`
	Alg      string    `json:"alg,omitempty"`
	HTM      string    `json:"htm,omitempty"`
	HTU      string    `json:"htu,omitempty"`
	IAT      int64     `json:"iat,omitempty"`
	Nonce    bool      `json:"nonce"` // the proof carried a nonce
	// Result is "accepted" or the error answered (invalid_dpop_proof,
	// use_dpop_nonce, invalid_grant, invalid_token).
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// DPoPNonceRecord is a server nonce the tenant issued.
type DPoPNonceRecord struct {
	Nonce  string    `json:"nonce"`
	Issued time.Time `json:"issued"`
	// Status: current, previous (still accepted) or expired.
	Status string `json:"status"`
}

// dpopState is a tenant's DPoP state. The zero value is ready to use.
type dpopState struct {
	mu        sync.Mutex
	seen      map[[16]byte]int64 // SHA-256 of jti (truncated) -> unix expiry
	nextSweep int
	cur, prev string
	curAt     time.Time
	proofs    []DPoPProofRecord // ring, dpopProofLog
	proofNext int
	nonces    []DPoPNonceRecord // the last dpopNonceLog, oldest first
}

func (d *dpopState) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen, d.nextSweep = nil, 0
	d.cur, d.prev, d.curAt = "", "", time.Time{}
	d.proofs, d.proofNext, d.nonces = nil, 0, nil
}

// useJTI records a proof's jti, or reports ErrDPoPReplay if it was seen.
// Entries expire by the tenant's clock once the proof's iat has left the
// window.
func (d *dpopState) useJTI(jti string, iat, now time.Time) error {
	sum := sha256.Sum256([]byte(jti))
	var k [16]byte
	copy(k[:], sum[:])
	exp := iat
	if now.After(exp) {
		exp = now
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[[16]byte]int64{}
	}
	if _, ok := d.seen[k]; ok {
		return fmt.Errorf("%w: jti %q", ErrDPoPReplay, jti)
	}
	if len(d.seen) >= d.nextSweep {
		n := now.Unix()
		for key, e := range d.seen {
			if e <= n {
				delete(d.seen, key)
			}
		}
		d.nextSweep = max(4096, 2*len(d.seen))
	}
	if len(d.seen) >= dpopMaxReplay {
		return fmt.Errorf("%w: %d proofs within the iat window", errDPoPCacheFull, len(d.seen))
	}
	d.seen[k] = exp.Add(DPoPWindow).Unix()
	return nil
}

// nonce is the current server nonce, rotated by the tenant's clock.
func (d *dpopState) nonce(now time.Time) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rotateLocked(now)
	return d.cur
}

func (d *dpopState) rotateLocked(now time.Time) {
	age := now.Sub(d.curAt)
	if d.cur != "" && age < DPoPNonceRotation {
		return
	}
	d.prev = d.cur
	if age >= 2*DPoPNonceRotation {
		d.prev = ""
	}
	d.cur, d.curAt = newID(), now
	d.nonces = append(d.nonces, DPoPNonceRecord{Nonce: d.cur, Issued: now})
	if len(d.nonces) > dpopNonceLog {
		d.nonces = append([]DPoPNonceRecord(nil), d.nonces[len(d.nonces)-dpopNonceLog:]...)
	}
}

// checkNonce accepts the current and the previous nonce.
func (d *dpopState) checkNonce(n string, now time.Time) error {
	if n == "" {
		return fmt.Errorf("%w: the proof has no nonce; retry with the DPoP-Nonce header's", ErrDPoPNonce)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rotateLocked(now)
	for _, v := range []string{d.cur, d.prev} {
		if v != "" && subtle.ConstantTimeCompare([]byte(n), []byte(v)) == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not a current nonce; retry with the DPoP-Nonce header's", ErrDPoPNonce, n)
}

func (d *dpopState) record(r DPoPProofRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.proofs) < dpopProofLog {
		d.proofs = append(d.proofs, r)
		return
	}
	d.proofs[d.proofNext] = r
	d.proofNext = (d.proofNext + 1) % dpopProofLog
}

// snapshot returns the proofs (oldest first) and nonces recorded.
func (d *dpopState) snapshot(now time.Time) ([]DPoPProofRecord, []DPoPNonceRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	proofs := make([]DPoPProofRecord, 0, len(d.proofs))
	proofs = append(proofs, d.proofs[d.proofNext:]...)
	proofs = append(proofs, d.proofs[:d.proofNext]...)
	nonces := make([]DPoPNonceRecord, len(d.nonces))
	copy(nonces, d.nonces)
	fresh := now.Sub(d.curAt) < 2*DPoPNonceRotation
	for i := range nonces {
		switch {
		case nonces[i].Nonce == d.cur && fresh:
			nonces[i].Status = "current"
		case nonces[i].Nonce == d.prev && fresh:
			nonces[i].Status = "previous"
		default:
			nonces[i].Status = "expired"
		}
	}
	return proofs, nonces
}

func (t *tenant) recordProof(endpoint, clientID string, p *DPoPProof, result string, err error) {
	r := DPoPProofRecord{Time: t.clock.Now(), Endpoint: endpoint, ClientID: clientID, Result: result}
	if p != nil {
		r.JTI, r.JKT, r.Alg, r.HTM, r.HTU, r.Nonce = p.JTI, p.JKT, p.Alg, p.HTM, p.HTU, p.Nonce != ""
		if !p.IAT.IsZero() {
			r.IAT = p.IAT.Unix()
		}
	}
	if err != nil {
		r.Reason = err.Error()
	}
	t.dpop.record(r)
}

// --- token endpoint ---

// tokenDPoP verifies the DPoP proof of a token request, if there is one,
// before fosite sees the request: RFC 9449 section 4.3's checks and, when
// the tenant or the client the request names (clientID, not yet
// authenticated) requires one, the nonce. The nonce is checked this early
// because fosite spends a code's PKCE data as it reads the request: a
// use_dpop_nonce answered after that would cost the client its code, and
// the retry RFC 9449 section 8 asks for would fail. Replay and the key
// binding wait for bindDPoP, once the client is authenticated.
func (t *tenant) tokenDPoP(r *http.Request, clientID string) (*DPoPProof, error) {
	now := t.clock.Now()
	p, err := dpopProof(r, DPoPCheck{Method: r.Method, URL: t.issuer() + "/token", Now: now})
	if err == nil && p != nil && t.dpopRequireNonce(t.client(clientID)) {
		err = t.dpop.checkNonce(p.Nonce, now)
	}
	return p, err
}

// dpopRequireNonce says whether proofs of this client must carry a nonce.
func (t *tenant) dpopRequireNonce(c *client) bool {
	t.mu.RLock()
	on := t.cfg.DPoP.RequireNonce
	t.mu.RUnlock()
	return on || (c != nil && c.cfg.DPoP.RequireNonce)
}

// paramDPoPJKT is the authorization request parameter that binds the
// authorization code to a DPoP key (RFC 9449 section 10).
const paramDPoPJKT = "dpop_jkt"

// checkDPoPJKT checks an authorization request's dpop_jkt, if any: sent
// at most once, and the base64url RFC 7638 SHA-256 thumbprint of a key
// (43 characters). The code issued is bound to it (issueCode puts it on
// the code's session as cnf.jkt) and bindDPoP checks the proof of the
// token request that redeems the code against it.
func checkDPoPJKT(form url.Values) error {
	vs, ok := form[paramDPoPJKT]
	if !ok {
		return nil
	}
	if len(vs) != 1 {
		return fosite.ErrInvalidRequest.WithHintf("%s is sent %d times: send it once (RFC 9449 section 10).", paramDPoPJKT, len(vs))
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(vs[0]); err != nil || len(b) != sha256.Size {
		return fosite.ErrInvalidRequest.WithHintf("%s %q is not a JWK SHA-256 thumbprint: want the 43 base64url characters (no padding) of RFC 7638's SHA-256 thumbprint of the DPoP key (RFC 9449 section 10).", paramDPoPJKT, vs[0])
	}
	return nil
}

// bindDPoP applies DPoP to an access request fosite has accepted and
// before the response is made (no code or refresh token is consumed
// yet): the client's dpop_bound_access_tokens, the nonce, the replay
// cache, the key an authorization code is bound to by dpop_jkt (RFC 9449
// section 10) or a public client's refresh token is bound to (section
// 5), and cnf.jkt on the session the access token and a new refresh
// token are made from. For the code and refresh grants fosite has put
// the grant's stored session on the request; it is copied before it is
// changed.
func (t *tenant) bindDPoP(ar fosite.AccessRequester, proof *DPoPProof) error {
	c, _ := ar.GetClient().(*client)
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess == nil {
		return fosite.ErrServerError.WithDebug("The session is not an agentsso session.")
	}
	// The key the grant is bound to, if it is: a code's by dpop_jkt (any
	// client), a public client's refresh token's by its first proof.
	bound, _ := sess.Cnf["jkt"].(string)
	var what string
	switch gt := ar.GetGrantTypes(); {
	case bound == "":
	case gt.ExactOne(GrantAuthorizationCode):
		what = "the authorization code is bound to a DPoP key by dpop_jkt"
	case gt.ExactOne(GrantRefreshToken) && c != nil && c.IsPublic():
		what = "the refresh token is bound to a DPoP key"
	}
	if proof == nil {
		switch {
		case c != nil && c.cfg.DPoPBoundAccessTokens:
			return fmt.Errorf("%w: client %s is registered with dpop_bound_access_tokens: send a DPoP header", ErrDPoPMissing, c.cfg.ID)
		case what != "":
			return fmt.Errorf("%w: %s (%s): send a proof made with it", ErrDPoPMissing, what, bound)
		}
		sess.Cnf = cnfWith(sess.Cnf, "")
		return nil
	}
	now := t.clock.Now()
	if t.dpopRequireNonce(c) {
		if err := t.dpop.checkNonce(proof.Nonce, now); err != nil {
			return err
		}
	}
	if err := t.dpop.useJTI(proof.JTI, proof.IAT, now); err != nil {
		return err
	}
	if what != "" && subtle.ConstantTimeCompare([]byte(bound), []byte(proof.JKT)) != 1 {
		return fmt.Errorf("%w: %s (%s), the proof's key is %s", ErrDPoPBinding, what, bound, proof.JKT)
	}
	sess.Cnf = cnfWith(sess.Cnf, proof.JKT)
	return nil
}

// cnfWith returns a copy of cnf with jkt set (or removed when empty); the
// other confirmation members (x5t#S256) are kept.
func cnfWith(cnf map[string]any, jkt string) map[string]any {
	if jkt == "" {
		if _, ok := cnf["jkt"]; !ok {
			return cnf
		}
	}
	out := make(map[string]any, len(cnf)+1)
	for k, v := range cnf {
		if k != "jkt" {
			out[k] = v
		}
	}
	if jkt != "" {
		out["jkt"] = jkt
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// dpopTokenError records a refused proof and answers with RFC 9449's
// error: use_dpop_nonce with a fresh DPoP-Nonce, invalid_grant for a
// code or refresh token bound to another key, invalid_dpop_proof
// otherwise.
func (t *tenant) dpopTokenError(w http.ResponseWriter, r *http.Request, ev *audit.Event, proof *DPoPProof, err error) {
	oe := dpopOAuthError(err)
	t.recordProof("token", ev.ClientID, proof, fosite.ErrorToRFC6749Error(oe).ErrorField, err)
	if errors.Is(err, ErrDPoPNonce) {
		w.Header().Set("DPoP-Nonce", t.dpop.nonce(t.clock.Now()))
	}
	t.tokenError(w, r, ev, oe)
}

// dpopAccepted records an accepted proof and, when nonces are on, hands
// the client the current one for its next proof (RFC 9449 section 8.2).
func (t *tenant) dpopAccepted(w http.ResponseWriter, ar fosite.AccessRequester, proof *DPoPProof) {
	if proof == nil {
		return
	}
	c, _ := ar.GetClient().(*client)
	t.recordProof("token", ar.GetClient().GetID(), proof, "accepted", nil)
	if t.dpopRequireNonce(c) {
		w.Header().Set("DPoP-Nonce", t.dpop.nonce(t.clock.Now()))
	}
}

func dpopOAuthError(err error) error {
	switch {
	case errors.Is(err, ErrDPoPNonce):
		return ErrUseDPoPNonce.WithHint(err.Error()).WithWrap(err)
	case errors.Is(err, ErrDPoPBinding):
		return fosite.ErrInvalidGrant.WithHint(err.Error()).WithWrap(err)
	case errors.Is(err, errDPoPCacheFull):
		return fosite.ErrTemporarilyUnavailable.WithHint(err.Error()).WithWrap(err)
	}
	return ErrInvalidDPoPProof.WithHint(err.Error()).WithWrap(err)
}

// --- userinfo (RFC 9449 section 7) ---

// dpopAuthErr is an RFC 9449 section 7.1 error at a protected resource.
type dpopAuthErr struct {
	status      int    // 401 when zero
	code        string // invalid_token, invalid_dpop_proof, insufficient_scope
	description string
	err         error
}

func (e *dpopAuthErr) Error() string { return e.code + ": " + e.description }
func (e *dpopAuthErr) Unwrap() error { return e.err }

// userinfoToken reads a userinfo request's access token: with the DPoP
// scheme (RFC 9449 section 7.1), or as RFC 6750 allows.
func userinfoToken(r *http.Request) (tok string, dpop bool, err error) {
	scheme, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "DPoP") {
		tok, err := bearerToken(r)
		return tok, false, err
	}
	if r.URL.Query().Has("access_token") {
		return "", true, &bearerErr{http.StatusBadRequest, "invalid_request", "Send the access token in the Authorization header, never in the query string."}
	}
	tok = strings.TrimSpace(rest)
	if tok == "" {
		return "", true, &dpopAuthErr{code: "invalid_token", description: "The Authorization header must be: DPoP <token>."}
	}
	return tok, true, nil
}

// userinfoDPoP checks the binding of a valid access token at userinfo: a
// token bound by cnf.jkt must come with the DPoP scheme and a proof by
// that key over this request with its ath; a DPoP-bound token presented
// as Bearer, or an unbound one presented as DPoP, is refused. When the
// tenant or the token's client requires nonces, the proof must carry a
// current one (RFC 9449 section 9): without, the answer is 401
// use_dpop_nonce, and every answer to a DPoP-bound token carries the
// nonce to use in a DPoP-Nonce header.
func (t *tenant) userinfoDPoP(w http.ResponseWriter, r *http.Request, c *AccessClaims, tok string, dpop bool) error {
	jkt, _ := c.Cnf["jkt"].(string)
	if !dpop {
		if jkt != "" {
			return &dpopAuthErr{code: "invalid_token", description: "The access token is DPoP-bound (cnf.jkt): present it with Authorization: DPoP and a DPoP proof (RFC 9449 section 7.1).", err: ErrDPoPBinding}
		}
		return nil
	}
	if jkt == "" {
		return &dpopAuthErr{code: "invalid_token", description: "The access token is not DPoP-bound: present it with Authorization: Bearer."}
	}
	now := t.clock.Now()
	nonce := t.dpopRequireNonce(t.client(c.ClientID))
	if nonce {
		w.Header().Set("DPoP-Nonce", t.dpop.nonce(now))
	}
	proof, err := dpopProof(r, DPoPCheck{Method: r.Method, URL: t.issuer() + "/userinfo", Now: now, AccessToken: tok})
	if err == nil && proof == nil {
		err = fmt.Errorf("%w: the DPoP scheme needs a DPoP header", ErrDPoPMissing)
	}
	if err == nil && nonce {
		err = t.dpop.checkNonce(proof.Nonce, now)
	}
	if err == nil && subtle.ConstantTimeCompare([]byte(proof.JKT), []byte(jkt)) != 1 {
		err = fmt.Errorf("%w: the token's cnf.jkt is %s, the proof's key is %s", ErrDPoPBinding, jkt, proof.JKT)
	}
	if err == nil {
		err = t.dpop.useJTI(proof.JTI, proof.IAT, now)
	}
	if err != nil {
		code := "invalid_dpop_proof"
		if errors.Is(err, ErrDPoPNonce) {
			code = "use_dpop_nonce"
		}
		t.recordProof("userinfo", c.ClientID, proof, code, err)
		return &dpopAuthErr{code: code, description: err.Error(), err: err}
	}
	t.recordProof("userinfo", c.ClientID, proof, "accepted", nil)
	return nil
}

// dpopChallenge is the DPoP WWW-Authenticate challenge (RFC 9449 section
// 7.1), with an error when one is given.
func dpopChallenge(code, description string) string {
	ch := `DPoP algs="` + strings.Join(dpopAlgNames, " ") + `"`
	if code != "" {
		ch += `, error="` + code + `", error_description="` + challengeValue(description) + `"`
	}
	return ch
}

// dpopAuthError answers a userinfo request refused for DPoP reasons, or
// one that came with the DPoP scheme: a DPoP challenge.
func (t *tenant) dpopAuthError(w http.ResponseWriter, r *http.Request, ev *audit.Event, e *dpopAuthErr) {
	status := e.status
	if status == 0 {
		status = http.StatusUnauthorized
	}
	ev.Decision, ev.Status, ev.Reason = audit.DecisionDeny, status, e.Error()
	t.event(r, *ev)
	w.Header().Set("WWW-Authenticate", dpopChallenge(e.code, e.description))
	w.Header().Set("Cache-Control", "no-store")
	writeJSONError(w, status, e.code, e.description)
}

// userinfoError answers a refused userinfo request with the challenge of
// the scheme the token came with: DPoP (RFC 9449 section 7.1) or Bearer
// (RFC 6750 section 3).
func (t *tenant) userinfoError(w http.ResponseWriter, r *http.Request, ev *audit.Event, dpop bool, err error) {
	var de *dpopAuthErr
	if errors.As(err, &de) {
		t.dpopAuthError(w, r, ev, de)
		return
	}
	var be *bearerErr
	if dpop && errors.As(err, &be) && be.code != "" && be.code != "invalid_request" {
		t.dpopAuthError(w, r, ev, &dpopAuthErr{status: be.status, code: be.code, description: be.description})
		return
	}
	t.bearerError(w, r, ev, err)
}
