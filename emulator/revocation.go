package emulator

import (
	"sync"
	"time"
)

// revocations is a tenant's record of what was revoked. Access tokens are
// not stored; a presented token is inactive when its jti, its grant or an
// ancestor grant, its client or a client in its act chain was revoked at
// or after its iat, or its kid was withdrawn. Entries are kept only as
// long as a token they could affect may live.
//
// iat has a resolution of one second, so a client revocation cannot tell
// by iat alone a token issued before it from one issued later in the same
// second. Revocations are numbered, and a token issued in the second of a
// client revocation is noted (issued) with the number of the last one: a
// revocation only ends such a token if it came after the token.
type revocations struct {
	mu      sync.RWMutex
	jtis    map[string]int64    // jti -> exp (unix), kept until exp
	grants  map[string]revEntry // grant id -> when
	clients map[string]revEntry // client id -> when
	kids    map[string]bool     // withdrawn kids
	// seq numbers client revocations; after holds, by jti, tokens issued
	// in the second of a client revocation, after revocation number seq.
	seq   uint64
	after map[string]issuedAfter

	// keep is how long a grant or client record must outlive its
	// revocation: the longest lifetime a token could have.
	keep func() time.Duration
}

type revEntry struct {
	at     int64 // unix seconds
	until  int64 // drop the record after this (unix seconds)
	reason string
	seq    uint64 // client revocations: its number
	atNano int64  // client revocations: when, to the nanosecond
}

type issuedAfter struct {
	seq uint64 // the last client revocation before the token
	exp int64  // unix seconds: drop the note after this
}

func newRevocations(keep func() time.Duration) *revocations {
	r := &revocations{keep: keep}
	r.reset()
	return r
}

func (r *revocations) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.jtis = map[string]int64{}
	r.grants = map[string]revEntry{}
	r.clients = map[string]revEntry{}
	r.kids = map[string]bool{}
	r.after = map[string]issuedAfter{}
}

func (r *revocations) revokeJTI(jti string, exp int64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(now.Unix())
	r.jtis[jti] = exp
}

func (r *revocations) revokeGrant(id string, now time.Time, reason string) {
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(now.Unix())
	if _, ok := r.grants[id]; ok {
		return // keep the first revocation time
	}
	r.grants[id] = revEntry{at: now.Unix(), until: now.Add(r.keep()).Unix(), reason: reason}
}

// revokeClient records that every token a client held or acted in up to
// now is inactive (the client was disabled, deleted or had its tokens
// revoked by an operator).
func (r *revocations) revokeClient(id string, now time.Time, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(now.Unix())
	r.seq++
	r.clients[id] = revEntry{at: now.Unix(), until: now.Add(r.keep()).Unix(), reason: reason, seq: r.seq, atNano: now.UnixNano()}
}

// issued notes an access token about to be issued when a client it would
// die with was revoked in the second of its iat, so that this revocation,
// which came first, does not end it.
func (r *revocations) issued(c *AccessClaims) {
	r.mu.RLock()
	sameSecond, seq := false, r.seq
	for _, id := range c.clientIDs() {
		if e, ok := r.clients[id]; ok && e.at == c.IssuedAt {
			sameSecond = true
		}
	}
	r.mu.RUnlock()
	if !sameSecond || c.ID == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// seq as read with the check: a revocation that slips in between
	// still ends the token.
	r.after[c.ID] = issuedAfter{seq: seq, exp: c.Expiry}
}

// clientCut reports whether client revocation e ends a token with claims c.
func (r *revocations) clientCut(e revEntry, c *AccessClaims) bool {
	if e.at != c.IssuedAt {
		return e.at > c.IssuedAt
	}
	a, ok := r.after[c.ID]
	return !ok || a.seq < e.seq
}

func (r *revocations) withdrawKID(kid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kids[kid] = true
}

func (r *revocations) kidWithdrawn(kid string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.kids[kid]
}

func (r *revocations) pruneLocked(now int64) {
	for k, exp := range r.jtis {
		if exp < now {
			delete(r.jtis, k)
		}
	}
	for k, e := range r.grants {
		if e.until < now {
			delete(r.grants, k)
		}
	}
	for k, e := range r.clients {
		if e.until < now {
			delete(r.clients, k)
		}
	}
	for k, a := range r.after {
		if a.exp < now {
			delete(r.after, k)
		}
	}
}

// tokenInactive returns why a verified token is inactive, or "".
func (r *revocations) tokenInactive(c *AccessClaims, kid string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.kids[kid] {
		return "signing key " + kid + " was withdrawn"
	}
	if _, ok := r.jtis[c.ID]; ok && c.ID != "" {
		return "token revoked"
	}
	if e, ok := r.grants[c.GrantID]; ok && e.at >= c.IssuedAt {
		return "grant " + c.GrantID + " revoked: " + e.reason
	}
	for _, g := range c.GrantChain {
		if e, ok := r.grants[g]; ok && e.at >= c.IssuedAt {
			return "ancestor grant " + g + " revoked: " + e.reason
		}
		if _, ok := r.jtis[g]; ok {
			return "ancestor token " + g + " revoked"
		}
	}
	for i, id := range c.clientIDs() {
		if e, ok := r.clients[id]; ok && r.clientCut(e, c) {
			role := "actor "
			switch {
			case i == 0:
				role = "client "
			case i == 1:
				role = "subject "
			}
			return role + id + " revoked: " + e.reason
		}
	}
	return ""
}

// clientIDs lists the clients a token dies with: its client, its subject
// when that is an agent (a client: whoever holds the token, it dies with
// that agent; a user's subject never equals a client id, configuration
// refuses it), and the clients in its act chain.
func (c *AccessClaims) clientIDs() []string {
	return append([]string{c.ClientID, c.Subject}, c.Act.clientIDs()...)
}

// grantInactive reports whether a stored grant (a refresh token's) was
// revoked, or its client was revoked after the grant began (both times by
// the tenant's clock, to the nanosecond).
func (r *revocations) grantInactive(grantID string, began time.Time, clientID string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.grants[grantID]; ok {
		return "grant revoked: " + e.reason
	}
	if e, ok := r.clients[clientID]; ok && e.atNano >= began.UnixNano() {
		return "client revoked: " + e.reason
	}
	return ""
}
