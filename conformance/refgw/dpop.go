package refgw

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// dpopAlgs are the proof algorithms accepted: asymmetric only (RFC 9449
// section 4.3 check 5). They are advertised in the DPoP challenge's algs
// and in the metadata.
var dpopAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

const (
	// dpopWindow is how far a proof's iat may be from the gateway's clock.
	dpopWindow    = 60 * time.Second
	maxProofBytes = 8 << 10
	maxJTIBytes   = 256
	maxReplayJTIs = 100_000
)

func dpopAlgList() string {
	s := make([]string, len(dpopAlgs))
	for i, a := range dpopAlgs {
		s[i] = string(a)
	}
	return strings.Join(s, " ")
}

// replayCache remembers proof jtis until they fall out of the iat window
// (RFC 9449 section 11.1).
type replayCache struct {
	mu   sync.Mutex
	seen map[string]time.Time // key → forget after
}

// add records key and reports whether it was new. It refuses (reports
// false) when the cache is full of live entries, so it never lets a
// replay through.
func (c *replayCache) add(key string, now, until time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	if t, ok := c.seen[key]; ok && now.Before(t) {
		return false
	}
	if len(c.seen) >= maxReplayJTIs {
		for k, t := range c.seen {
			if !now.Before(t) {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= maxReplayJTIs {
			return false
		}
	}
	c.seen[key] = until
	return true
}

// checkDPoP applies RFC 9449 section 7 to a verified token: a DPoP-bound
// token (cnf.jkt) needs the DPoP scheme and a valid proof; the DPoP scheme
// needs a DPoP-bound token.
func (st *request) checkDPoP(c *tokenClaims) *denial {
	g := st.g
	bound := c.jkt != ""
	if st.cred.scheme != schemeDPoP {
		if !bound || g.flaw(FlawDPoPAsBearer) {
			// A DPoP header next to an unbound bearer token is ignored.
			return nil
		}
		if !g.cfg.DPoP {
			return invalidToken(errDPoPUnsupported, "the token is DPoP-bound and this gateway does not accept DPoP")
		}
		return invalidToken(errDPoPRequired, "a DPoP-bound token needs the DPoP scheme and a proof")
	}
	if !bound {
		return invalidToken(errNotDPoPBound, "the DPoP scheme needs a token bound to a key (cnf.jkt)")
	}
	return st.verifyProof(c.jkt)
}

// verifyProof runs the checks of RFC 9449 section 4.3 on the request's
// DPoP header, numbered as there.
func (st *request) verifyProof(jkt string) *denial {
	g, r := st.g, st.r
	proofs := r.Header.Values("DPoP")
	if g.flaw(FlawSkipDPoPProofChecks) {
		if len(proofs) > 0 && wellFormedJWT(proofs[0]) {
			return nil
		}
		return invalidProof("no well-formed DPoP proof")
	}
	// (1) exactly one DPoP header.
	switch {
	case len(proofs) == 0:
		return invalidProof("no DPoP proof")
	case len(proofs) > 1:
		return invalidProof("more than one DPoP header")
	}
	proof := proofs[0]
	if len(proof) > maxProofBytes {
		return invalidProof("proof too large")
	}
	// (2) a well-formed JWT.
	parts := strings.Split(proof, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || !isB64URL(parts[0]) || !isB64URL(parts[1]) || !isB64URL(parts[2]) {
		return invalidProof("not a JWS in compact serialization")
	}
	h, err := decodeHeader(parts[0])
	if err != nil {
		return invalidProof(err.Error())
	}
	// (4) typ dpop+jwt.
	if !strings.EqualFold(h.typ, "dpop+jwt") {
		return invalidProof("typ must be dpop+jwt")
	}
	// (5) an asymmetric algorithm from the allow-list.
	if !algAllowed(h.alg, dpopAlgs) {
		return invalidProof("alg must be one of " + dpopAlgList())
	}
	if h.has("crit") || h.has("b64") {
		return invalidProof("crit and b64 header parameters are not supported")
	}
	// (7) the jwk is a public key.
	rawJWK, ok := h.params["jwk"]
	if !ok {
		return invalidProof("no jwk header parameter")
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(rawJWK, &members) != nil || members == nil {
		return invalidProof("jwk is not an object")
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := members[private]; ok {
			return invalidProof("jwk must be a public key")
		}
	}
	jws, err := jose.ParseSignedCompact(proof, dpopAlgs)
	if err != nil {
		return invalidProof("not a valid JWS")
	}
	jwk := jws.Signatures[0].Header.JSONWebKey
	if jwk == nil || !jwk.Valid() || !jwk.IsPublic() || !algMatchesKey(h.alg, jwk.Key) {
		return invalidProof("jwk is not a public key for alg")
	}
	// (6) the signature verifies with that key.
	payload, err := jws.Verify(jwk.Key)
	if err != nil {
		return invalidProof("signature does not verify")
	}
	// (3) the required claims, with their JSON types.
	cl, ok := object(payload)
	if !ok {
		return invalidProof("claims are not a JSON object")
	}
	var jti, htm, htu, ath string
	for name, dst := range map[string]*string{"jti": &jti, "htm": &htm, "htu": &htu, "ath": &ath} {
		if _, err := member(cl, name, dst); err != nil {
			return invalidProof(err.Error())
		}
	}
	rawIAT, hasIAT := cl["iat"]
	switch {
	case jti == "" || len(jti) > maxJTIBytes:
		return invalidProof("jti missing or too long")
	case htm == "" || htu == "" || !hasIAT:
		return invalidProof("htm, htu and iat are required")
	case ath == "":
		return invalidProof("ath is required with an access token")
	}
	// (8) htm: the request's method, exactly.
	if htm != r.Method {
		return invalidProof("htm does not match the request method")
	}
	// (9) htu: the request's URL without query and fragment.
	if got, ok := normalizeHTU(htu); !ok || got != requestHTU(r) {
		return invalidProof("htu does not match the request URL")
	}
	// (11) iat within the window (this gateway issues no nonces, so (10)
	// does not apply).
	iat, err := numericDate(rawIAT)
	now := g.now()
	if err != nil || iat.Before(now.Add(-dpopWindow)) || iat.After(now.Add(dpopWindow)) {
		return invalidProof("iat is outside the accepted window")
	}
	// (12) ath is the hash of the access token, and the key is the one the
	// token is bound to.
	sum := sha256.Sum256([]byte(st.cred.token))
	if ath != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return invalidProof("ath does not match the access token")
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(tp) != jkt {
		return invalidToken(errDPoPProof, "the proof's key is not the key the token is bound to")
	}
	// Replay: a jti is accepted once per key within the window.
	if !g.replay.add(jkt+"\x00"+jti, now, iat.Add(dpopWindow+time.Second)) {
		return invalidProof("proof replayed (jti already used)")
	}
	return nil
}

// wellFormedJWT reports whether s is three base64url segments whose first
// two decode to JSON objects.
func wellFormedJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts[:2] {
		b, err := base64.RawURLEncoding.DecodeString(p)
		var m map[string]json.RawMessage
		if err != nil || json.Unmarshal(b, &m) != nil || m == nil {
			return false
		}
	}
	return true
}

// requestHTU is the URL the request was sent to, as the client saw it:
// scheme from the connection, host from the Host header, path as sent.
// Forwarding headers are not trusted.
func requestHTU(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return canonicalURL(scheme, r.Host, r.URL.Path)
}

// normalizeHTU applies RFC 3986 section 6 syntax- and scheme-based
// normalization and drops query and fragment (RFC 9449 section 4.3 (9)).
func normalizeHTU(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	return canonicalURL(scheme, u.Host, u.Path), true
}

func canonicalURL(scheme, host, path string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
			host = h
			if strings.Contains(h, ":") {
				host = "[" + h + "]"
			}
		}
	}
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}
