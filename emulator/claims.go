package emulator

import (
	"encoding/json"
	"errors"
	"strings"
)

// AccessClaims are the claims of an agentsso access token: RFC 9068
// (typ at+jwt) plus the project's conventions for agents, documented in
// docs/CLAIMS.md:
//
//   - an agent is an OAuth client; client_id names it, and sub is the
//     client id for a client_credentials token or the user's subject when
//     it acts for a user;
//   - act is the RFC 8693 acting chain, current actor outermost;
//   - ctx is the context the token is bound to (networks, zone, env,
//     instance), next to the standard cnf;
//   - grant_id names the grant the token came from, grant_chain the grants
//     of the tokens it was exchanged from (oldest first), so revoking any
//     of them makes the token inactive.
type AccessClaims struct {
	Issuer     string         `json:"iss"`
	Subject    string         `json:"sub"`
	Audience   Audience       `json:"aud"`
	Expiry     int64          `json:"exp"`
	IssuedAt   int64          `json:"iat"`
	NotBefore  int64          `json:"nbf,omitempty"`
	ID         string         `json:"jti"`
	ClientID   string         `json:"client_id"`
	Scope      string         `json:"scope,omitempty"`
	AuthTime   int64          `json:"auth_time,omitempty"`
	Act        *Actor         `json:"act,omitempty"`
	MayAct     *Actor         `json:"may_act,omitempty"`
	Cnf        map[string]any `json:"cnf,omitempty"`
	Ctx        *TokenContext  `json:"ctx,omitempty"`
	GrantID    string         `json:"grant_id,omitempty"`
	GrantChain []string       `json:"grant_chain,omitempty"`
	// Extra holds claims minted through the admin API; it is merged into
	// the JSON object and never overrides the fields above.
	Extra map[string]any `json:"-"`
}

// Actor is one link of an RFC 8693 act (or may_act) chain.
type Actor struct {
	Subject  string `json:"sub"`
	Issuer   string `json:"iss,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Act      *Actor `json:"act,omitempty"`
}

// Chain lists the actors, current actor first.
func (a *Actor) Chain() []string {
	var out []string
	for x := a; x != nil; x = x.Act {
		out = append(out, x.Subject)
	}
	return out
}

// clientIDs lists the client ids named in the chain (the client_id of each
// link, or its sub where it has none).
func (a *Actor) clientIDs() []string {
	var out []string
	for x := a; x != nil; x = x.Act {
		if x.ClientID != "" {
			out = append(out, x.ClientID)
		} else {
			out = append(out, x.Subject)
		}
	}
	return out
}

// TokenContext is the ctx claim: where a token may be used.
type TokenContext struct {
	// Networks are the source networks (CIDR) the token may be presented
	// from.
	Networks []string `json:"net,omitempty"`
	// Zone is the compute zone the holder runs in.
	Zone string `json:"zone,omitempty"`
	// Env is the environment (prod, staging, …).
	Env string `json:"env,omitempty"`
	// Instance names one agent instance.
	Instance string `json:"instance,omitempty"`
}

// Scopes splits the scope claim.
func (c *AccessClaims) Scopes() []string {
	if c.Scope == "" {
		return nil
	}
	return strings.Fields(c.Scope)
}

// MarshalJSON merges Extra.
func (c AccessClaims) MarshalJSON() ([]byte, error) {
	type plain AccessClaims
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// Audience is the aud claim: a string or an array in JSON (RFC 7519
// section 4.1.3). It marshals as a string when it has one member.
type Audience []string

// MarshalJSON implements json.Marshaler.
func (a Audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *Audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud: want a string or an array of strings")
	}
	*a = l
	return nil
}

// Contains reports exact membership.
func (a Audience) Contains(s string) bool {
	for _, x := range a {
		if x == s {
			return true
		}
	}
	return false
}
