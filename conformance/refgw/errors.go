package refgw

import (
	"errors"
	"net/http"
	"strings"
)

// One sentinel per failed check. A denial wraps one of them; the audit
// reason is the sentinel's text followed by the detail.
var (
	errNoToken          = errors.New("no access token")
	errMultipleMethods  = errors.New("more than one way of presenting a token")
	errQueryToken       = errors.New("access token in the query string")
	errMalformed        = errors.New("malformed token")
	errTooLarge         = errors.New("token too large")
	errAlgorithm        = errors.New("signature algorithm not accepted")
	errCrit             = errors.New("unsupported critical header")
	errUnknownKey       = errors.New("no key of the issuer matches")
	errSignature        = errors.New("signature does not verify")
	errType             = errors.New("not an access token (typ)")
	errClaims           = errors.New("malformed claims")
	errIssuer           = errors.New("issuer not accepted")
	errAudience         = errors.New("audience does not include this resource")
	errExpired          = errors.New("token expired")
	errNoExpiry         = errors.New("token has no exp")
	errNotYetValid      = errors.New("token not yet valid")
	errIssuedInFuture   = errors.New("token issued in the future")
	errLifetime         = errors.New("token lifetime exceeds policy")
	errNoSubject        = errors.New("token has no sub")
	errActor            = errors.New("current actor not allowed")
	errConfirmation     = errors.New("unsupported confirmation method")
	errNoClientCert     = errors.New("certificate-bound token presented without a client certificate")
	errCertMismatch     = errors.New("client certificate does not match the token's cnf.x5t#S256")
	errDPoPRequired     = errors.New("DPoP-bound token presented without DPoP")
	errNotDPoPBound     = errors.New("DPoP scheme used with a token that is not DPoP-bound")
	errDPoPUnsupported  = errors.New("DPoP is not supported here")
	errDPoPProof        = errors.New("invalid DPoP proof")
	errContext          = errors.New("token used outside its context")
	errInactive         = errors.New("token is not active")
	errIntrospection    = errors.New("token could not be introspected")
	errInsufficient     = errors.New("insufficient scope")
	errProtocol         = errors.New("MCP protocol")
	errExchange         = errors.New("token exchange failed")
	errAuditUnavailable = errors.New("audit log unavailable")
)

// OAuth error codes (RFC 6750 section 3.1, RFC 9449 section 7.1).
const (
	codeInvalidRequest    = "invalid_request"
	codeInvalidToken      = "invalid_token"
	codeInsufficientScope = "insufficient_scope"
	codeInvalidDPoPProof  = "invalid_dpop_proof"
)

// denial is a refused request: the HTTP status, the OAuth error code for
// the challenge (empty when no token was presented) and the reason.
type denial struct {
	status int
	code   string
	err    error  // a sentinel above
	detail string // fixed wording plus, at most, configured values
	scope  string // for insufficient_scope
	// internal is for the audit log only, never for the client (it may
	// name internal endpoints).
	internal string
}

func (d *denial) Error() string {
	if d.detail == "" {
		return d.err.Error()
	}
	return d.err.Error() + ": " + d.detail
}

func (d *denial) Unwrap() error { return d.err }

func invalidToken(err error, detail string) *denial {
	return &denial{status: http.StatusUnauthorized, code: codeInvalidToken, err: err, detail: detail}
}

func invalidProof(detail string) *denial {
	return &denial{status: http.StatusUnauthorized, code: codeInvalidDPoPProof, err: errDPoPProof, detail: detail}
}

func invalidRequest(err error, detail string) *denial {
	return &denial{status: http.StatusBadRequest, code: codeInvalidRequest, err: err, detail: detail}
}

// challengeParam renders name="value" with the value reduced to the
// characters RFC 6750 section 3 allows in error_description and scope
// (%x20-21 / %x23-5B / %x5D-7E): anything else becomes '?', so no value
// can break out of the quoted string or inject a header.
func challengeParam(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(`="`)
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			c = '?'
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

// quotedParam renders name="value" as an RFC 9110 quoted-string, escaping
// '"' and '\'; control characters are dropped. Used for URLs.
func quotedParam(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(`="`)
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
