package conformance

import (
	"encoding/base64"
	"sort"
	"strings"
	"time"
)

// MintRequest is the admin API's mint body (docs/ADMIN.md).
type MintRequest struct {
	Claims          map[string]any `json:"claims,omitempty"`
	Header          map[string]any `json:"header,omitempty"`
	Lifetime        string         `json:"lifetime,omitempty"`
	Offset          string         `json:"offset,omitempty"`
	Key             string         `json:"key,omitempty"`
	HS256Secret     string         `json:"hs256_secret,omitempty"`
	HS256SecretFrom string         `json:"hs256_secret_from,omitempty"`
	Typ             string         `json:"typ,omitempty"`
}

// mintCtx is what a mutation may read: the target and the run's setup.
type mintCtx struct {
	target      *Target
	issuer      string // the target tenant's issuer
	otherTenant string // a tenant the target does not trust
	otherIssuer string
	canaryURL   string // a loopback listener that records fetches
	dpopJKT     string // thumbprint of the harness's DPoP key
	certX5T     string // x5t#S256 of the harness's bound client certificate
	now         time.Time
}

// mutation changes a mint request before minting (pre), or the compact
// token after (post).
type mutation struct {
	doc  string
	pre  func(m *MintRequest, c *mintCtx, arg string)
	post func(tok string) string
}

func setClaim(k string, v any) func(*MintRequest, *mintCtx, string) {
	return func(m *MintRequest, _ *mintCtx, _ string) { m.Claims[k] = v }
}

// mutations is the catalogue of named token mutations ("conditions" in
// OIDF terms). A mutation may take an argument after a colon.
var mutations = map[string]mutation{
	"alg-none":       {doc: "unsigned: alg none, empty signature", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Key = "none" }},
	"alg-none-case":  {doc: "unsigned, alg written nOnE", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Key = "none"; m.Header["alg"] = "nOnE" }},
	"alg-none-title": {doc: "unsigned, alg written None", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Key = "none"; m.Header["alg"] = "None" }},
	"hs256-public-pem": {doc: "HS256 with the tenant's public key (PEM) as the HMAC secret", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Key = "hs256"
		m.HS256SecretFrom = "tenant-public-pem"
	}},
	"hs256-public-jwk": {doc: "HS256 with the tenant's public JWK (JSON) as the HMAC secret", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Key = "hs256"
		m.HS256SecretFrom = "tenant-jwk"
	}},
	"sig-flip":     {doc: "one bit of the signature flipped", post: flipSignatureBit},
	"sig-strip":    {doc: "signature removed (header.payload.)", post: func(t string) string { return t[:strings.LastIndexByte(t, '.')+1] }},
	"sig-zero-raw": {doc: "ES256 signature r=s=0, raw (CVE-2022-21449)", post: func(t string) string { return replaceSig(t, make([]byte, 64)) }},
	"sig-zero-der": {doc: "ES256 signature r=s=0, DER", post: func(t string) string { return replaceSig(t, []byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00}) }},
	"key-rogue":    {doc: "signed by a key in no JWKS", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Key = "rogue" }},
	"key-other-tenant": {doc: "iss of the target's tenant, signed by another tenant's key", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Key = "other-tenant:" + c.otherTenant
	}},
	"iss-other-tenant": {doc: "a valid token of another tenant on the same host", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Key = "other-tenant:" + c.otherTenant
		m.Claims["iss"] = c.otherIssuer
	}},
	"iss-foreign":        {doc: "iss of an unknown issuer", pre: setClaim("iss", "https://issuer.invalid/t/evil")},
	"iss-trailing-slash": {doc: "iss with a trailing slash", pre: func(m *MintRequest, c *mintCtx, _ string) { m.Claims["iss"] = c.issuer + "/" }},
	"iss-case": {doc: "iss with a different case", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["iss"] = strings.Replace(c.issuer, "/t/", "/T/", 1)
	}},
	"exp-past":    {doc: "expired 5 minutes ago", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Lifetime, m.Offset = "5m", "-10m" }},
	"exp-skew":    {doc: "expired 30 seconds ago (skew probe)", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Lifetime, m.Offset = "5m", "-5m30s" }},
	"exp-missing": {doc: "no exp claim", pre: setClaim("exp", nil)},
	"nbf-future": {doc: "nbf ten minutes ahead (exp 14 minutes ahead)", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["nbf"] = c.now.Add(10 * time.Minute).Unix()
		m.Lifetime = "14m"
	}},
	"iat-future":   {doc: "iat ten minutes ahead (a 5 minute token from the future)", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Lifetime, m.Offset = "5m", "10m" }},
	"lifetime-24h": {doc: "valid for 24 hours", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Lifetime = "24h" }},
	"aud-sibling":  {doc: "aud of a sibling resource server", pre: setClaim("aud", "https://sibling.agentsso.invalid/mcp")},
	"aud-upstream": {doc: "aud of the upstream API behind the gateway", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["aud"] = c.target.upstreamAudience()
	}},
	"aud-missing":      {doc: "no aud claim", pre: setClaim("aud", nil)},
	"aud-empty-array":  {doc: "aud: []", pre: setClaim("aud", []string{})},
	"aud-empty-string": {doc: `aud: [""]`, pre: setClaim("aud", []string{""})},
	"aud-prefix":       {doc: "aud that is the target's audience plus a suffix", pre: func(m *MintRequest, c *mintCtx, _ string) { m.Claims["aud"] = c.target.Audience + "-evil" }},
	"aud-truncated": {doc: "aud that is a prefix of the target's audience", pre: func(m *MintRequest, c *mintCtx, _ string) {
		a := c.target.Audience
		m.Claims["aud"] = a[:len(a)-1]
	}},
	"aud-array": {doc: "aud array containing the target's audience and another (valid)", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["aud"] = []string{"https://sibling.agentsso.invalid/mcp", c.target.Audience}
	}},
	"typ-jwt":    {doc: "typ JWT instead of at+jwt", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Typ = "JWT" }},
	"typ-absent": {doc: "no typ header", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Header["typ"] = nil }},
	"id-token": {doc: "an ID token (typ JWT, aud = the client, nonce) instead of an access token", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Typ = "JWT"
		m.Claims["aud"] = "agentsso-harness"
		m.Claims["nonce"] = "n-0S6_WzA2Mj"
		m.Claims["sub"] = "user-alice"
		delete(m.Claims, "scope")
	}},
	"scope-none":  {doc: "no scope at all", pre: setClaim("scope", nil)},
	"scope-other": {doc: "only a scope the call does not need", pre: setClaim("scope", "agentsso:unrelated")},
	"scope":       {doc: "scope set to the argument", pre: func(m *MintRequest, _ *mintCtx, arg string) { m.Claims["scope"] = arg }},
	"cnf-jkt": {doc: "bound to the harness's DPoP key (cnf.jkt)", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["cnf"] = map[string]any{"jkt": c.dpopJKT}
	}},
	"cnf-x5t": {doc: "bound to the harness's client certificate (cnf.x5t#S256, RFC 8705)", pre: func(m *MintRequest, c *mintCtx, _ string) {
		cnf, _ := m.Claims["cnf"].(map[string]any)
		if cnf == nil {
			cnf = map[string]any{}
		}
		cnf["x5t#S256"] = c.certX5T
		m.Claims["cnf"] = cnf
	}},
	"ctx-net-loopback1": {doc: "bound to source network 127.0.0.1/32", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Claims["ctx"] = map[string]any{"net": []string{"127.0.0.1/32"}}
	}},
	"ctx-zone-other": {doc: "bound to another compute zone", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Claims["ctx"] = map[string]any{"zone": "zone-elsewhere"}
	}},
	"ctx-zone-target": {doc: "bound to the target's own zone", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["ctx"] = map[string]any{"zone": c.target.Zone}
	}},
	"header-jwk": {doc: "signed by a rogue key that is embedded in the jwk header", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Key = "rogue"
		m.Header["jwk"] = "rogue"
	}},
	"header-jku": {doc: "signed by a rogue key, jku pointing at a canary listener", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Key = "rogue"
		m.Header["jku"] = c.canaryURL + "/jku"
	}},
	"header-x5u": {doc: "signed by a rogue key, x5u pointing at a canary listener", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Key = "rogue"
		m.Header["x5u"] = c.canaryURL + "/x5u"
	}},
	"kid-traversal": {doc: `kid "../../../../dev/null", HS256 with an empty key`, pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Key = "hs256"
		m.HS256SecretFrom = "empty"
		m.Header["kid"] = "../../../../../../dev/null"
	}},
	"kid-sqli": {doc: `kid "x' UNION SELECT 'k'--", HS256 with key "k"`, pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Key = "hs256"
		m.HS256Secret = "k"
		m.Header["kid"] = "x' UNION SELECT 'k'--"
	}},
	"kid-absent": {doc: "no kid header", pre: func(m *MintRequest, _ *mintCtx, _ string) { m.Header["kid"] = nil }},
	"crit-unknown": {doc: "an unknown critical header", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Header["crit"] = []string{"urn:agentsso:unknown"}
		m.Header["urn:agentsso:unknown"] = true
	}},
	"act-chain": {doc: "sub a user, act B (current) over A", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Claims["sub"] = "user-alice"
		m.Claims["act"] = map[string]any{"sub": "agent-b", "act": map[string]any{"sub": "agent-a"}}
	}},
	"sub-user-id": {doc: "a client_credentials token (sub = client_id, RFC 9068 section 2.2) whose sub equals a user's id", pre: func(m *MintRequest, _ *mintCtx, _ string) {
		m.Claims["sub"], m.Claims["client_id"] = "user-alice", "user-alice"
	}},
	// Denial-of-service shapes (jwt-oversize-dos), built after signing.
	"oversize-1mb":   {doc: "a 1 MiB token: the claims padded after signing", post: oversizeToken},
	"dots-100k":      {doc: "the token followed by 100,000 dots (CVE-2025-30204, CVE-2025-27144, CVE-2025-22868)", post: manyDots},
	"deep-json":      {doc: "a header with a member nested 5,000 arrays deep (under a 16 KiB cap)", post: deepHeader(5000)},
	"deep-json-100k": {doc: "a header with a member nested 100,000 arrays deep", post: deepHeader(100_000)},
	"p2c-huge":       {doc: "a JWE whose PBES2 p2c asks for 2^31-1 key-derivation iterations", post: p2cJWE},
	"zip-bomb":       {doc: "zip: DEF in the header over a deflate bomb payload: 10 KiB that inflate to 10 MiB (CVE-2024-28180)", post: zipBomb},
	"act-allowed-current": {doc: "act: the target's allowed actor is the current actor, another agent before it", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["sub"] = "user-alice"
		m.Claims["act"] = map[string]any{"sub": c.target.AllowedActor, "act": map[string]any{"sub": "agentsso-other-agent"}}
	}},
	"act-allowed-nested": {doc: "act: another agent is the current actor; the target's allowed actor only acted before it", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["sub"] = "user-alice"
		m.Claims["act"] = map[string]any{"sub": "agentsso-other-agent", "act": map[string]any{"sub": c.target.AllowedActor}}
	}},
	"scope-array": {doc: "scope as a JSON array instead of a space-delimited string", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["scope"] = strings.Fields(c.target.Scope)
	}},
	"scope-superstring": {doc: "a scope that merely contains the needed one (read vs readonly)", pre: func(m *MintRequest, c *mintCtx, _ string) {
		m.Claims["scope"] = c.target.Scope + "only"
	}},
	"jwe-form": {doc: "a five-part JWE-shaped token instead of a JWS", post: func(t string) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"dir","enc":"A256GCM"}`))
		return h + "..AAAAAAAAAAAAAAAA." + strings.Split(t, ".")[1] + ".AAAAAAAAAAAAAAAAAAAAAA"
	}},
	"json-serialization": {doc: "the JWS in JSON serialization instead of compact", post: func(t string) string {
		p := strings.Split(t, ".")
		if len(p) != 3 {
			return t
		}
		return `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`
	}},
}

// MutationDocs lists the mutations and what each does, sorted by name.
func MutationDocs() [][2]string {
	var out [][2]string
	for k, v := range mutations {
		out = append(out, [2]string{k, v.doc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func mutationName(m string) string {
	if i := strings.IndexByte(m, ':'); i >= 0 {
		return m[:i]
	}
	return m
}

func mutationArg(m string) string {
	if i := strings.IndexByte(m, ':'); i >= 0 {
		return m[i+1:]
	}
	return ""
}

func flipSignatureBit(t string) string {
	i := strings.LastIndexByte(t, '.')
	sig, err := base64.RawURLEncoding.DecodeString(t[i+1:])
	if err != nil || len(sig) == 0 {
		return t + "A"
	}
	sig[len(sig)/2] ^= 0x01
	return t[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func replaceSig(t string, sig []byte) string {
	i := strings.LastIndexByte(t, '.')
	return t[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// dpopMutations are the named flaws of a DPoP proof (RFC 9449 section 4.3).
var dpopMutations = []string{
	"typ-jwt", "alg-none", "alg-hs256", "private-jwk", "htm-put", "htu-other", "iat-past-1h", "iat-future-1h",
	"ath-wrong", "ath-missing", "key-other", "jti-replay", "two-proofs", "no-proof",
}
