package emulator

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// RFC 8693 token type identifiers.
const (
	tokenTypeAccessToken  = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
	tokenTypeIDToken      = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeJWT          = "urn:ietf:params:oauth:token-type:jwt"
)

// Bounds on the lineage an exchanged token may carry. Each exchange adds
// one act link and one or two grants; past these the request is refused,
// so that a loop of exchanges cannot grow a token without bound.
const (
	maxActDepth   = 16
	maxGrantChain = 64
)

// Errors of token exchange that are not about a presented token. The
// token endpoint answers them as the RFC 6749 error they are wrapped in;
// errors.Is finds them (and the ErrToken* sentinels of a bad subject or
// actor token) in the chain.
var (
	// ErrMayAct: the actor is not the party the subject token's may_act
	// claim allows (RFC 8693 section 4.4).
	ErrMayAct = errors.New("actor is not allowed by may_act")
	// ErrLineageTooLong: the act chain or grant chain would exceed
	// maxActDepth or maxGrantChain.
	ErrLineageTooLong = errors.New("token lineage is too long")
)

// exchangeHandler is the RFC 8693 token exchange grant, plugged into
// fosite's token endpoint. Client authentication is fosite's, and is
// required (CanSkipClientAuth is false); the handler decides everything
// else:
//
//   - subject_token (and actor_token, when present) must be an access
//     token of this tenant that verifies now: signature by a tenant key,
//     typ at+jwt, issuer, expiry by the tenant clock, revocation lists.
//     Anything else (another tenant's token, an ID token, a refresh token,
//     an expired or revoked token) is invalid_request (RFC 8693 section
//     2.2.2), with the reason in the description.
//   - Delegation: the issued token's sub is the subject token's sub and
//     act is {sub, client_id} of the actor, with the subject token's act
//     nested inside (the chain, current actor outermost). The actor is the
//     actor_token's subject when one is given, else the calling client.
//     When the actor is the subject itself (an agent exchanging its own
//     token to change its audience or narrow its scope) no link is added.
//   - Impersonation: a client configured with impersonate: true that
//     presents no actor_token gets a token for the subject with no new act
//     link; an act chain the subject token already carries is kept, so
//     the token never hides a prior actor.
//   - may_act (RFC 8693 section 4.4), when the subject token has it, must
//     name the actor (or, for impersonation, the calling client): its sub,
//     and its iss and client_id when present. may_act is carried into the
//     issued token, so a re-exchange by another party is refused as well.
//   - audience and resource (any number of each; a resource must be an
//     absolute URI without fragment) become aud, and each must be in the
//     calling client's exchange_audiences, else invalid_target. With none
//     named, the client's only exchange audience is used; a client with
//     several must name one.
//   - scope is only ever narrowed: what is requested must be a subset of
//     the subject token's scope (invalid_scope otherwise); nothing
//     requested keeps the subject token's scope.
//   - The lifetime is the client's access token lifetime, capped at what
//     remains of the subject token's (and the actor token's) life.
//   - grant_chain is the subject token's chain and grant, then the actor
//     token's, so revoking any ancestor grant, or a client in the act
//     chain, makes the issued token inactive; grant_id is the new
//     request's id.
//   - ctx (the context binding) and auth_time are carried over; cnf is
//     not, since the holder of the new token is another party and its key
//     is not the subject's.
type exchangeHandler struct {
	t      *tenant
	helper *oauth2.HandleHelper
}

var _ fosite.TokenEndpointHandler = (*exchangeHandler)(nil)

func (h *exchangeHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantTokenExchange)
}

func (h *exchangeHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// HandleTokenEndpointRequest validates the exchange and prepares the
// session: subject, act, may_act, ctx, lineage, lifetime, scopes and
// audience.
func (h *exchangeHandler) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	c, err := exchangeClient(r)
	if err != nil {
		return err
	}
	sess, ok := r.GetSession().(*Session)
	if !ok || sess == nil {
		return fosite.ErrServerError.WithHint("Unexpected session type.")
	}
	form := r.GetRequestForm()
	if err := exchangeSingleValued(form, "subject_token", "subject_token_type", "actor_token", "actor_token_type", "requested_token_type", "scope"); err != nil {
		return err
	}

	// RFC 8693 section 2.1: the parameters.
	subjectTok, subjectType := form.Get("subject_token"), form.Get("subject_token_type")
	switch {
	case subjectTok == "":
		return fosite.ErrInvalidRequest.WithHint("The subject_token parameter is missing: send the access token to exchange.")
	case subjectType == "":
		return fosite.ErrInvalidRequest.WithHintf("The subject_token_type parameter is missing: send %s.", tokenTypeAccessToken)
	}
	if err := exchangeTokenType("subject_token_type", subjectType); err != nil {
		return err
	}
	actorTok, actorType := form.Get("actor_token"), form.Get("actor_token_type")
	switch {
	case actorTok != "" && actorType == "":
		return fosite.ErrInvalidRequest.WithHintf("The actor_token_type parameter is required with actor_token: send %s.", tokenTypeAccessToken)
	case actorTok == "" && actorType != "":
		return fosite.ErrInvalidRequest.WithHint("The actor_token_type parameter must not be sent without actor_token.")
	case actorTok != "":
		if err := exchangeTokenType("actor_token_type", actorType); err != nil {
			return err
		}
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != tokenTypeAccessToken {
		return fosite.ErrInvalidRequest.WithHintf("The requested_token_type %q is not supported: this server issues only %s.", rt, tokenTypeAccessToken)
	}

	// The presented tokens.
	subject, err := h.t.verifyAccessToken(subjectTok)
	if err != nil {
		// A token of a trusted tenant or issuer (federation.go).
		if fed, ok, ferr := h.t.federatedSubject(ctx, r, subjectTok); ok {
			subject, err = fed, ferr
		}
	}
	if err != nil {
		return fosite.ErrInvalidRequest.WithHintf("The subject_token is not acceptable: %v.", err).WithWrap(err)
	}
	var actorClaims *AccessClaims
	if actorTok != "" {
		actorClaims, err = h.t.verifyAccessToken(actorTok)
		if err != nil {
			return fosite.ErrInvalidRequest.WithHintf("The actor_token is not acceptable: %v.", err).WithWrap(err)
		}
	}

	// Who acts: the actor token's subject, else the calling client.
	actor := Actor{Subject: c.cfg.ID, ClientID: c.cfg.ID}
	if actorClaims != nil {
		actor = Actor{Subject: actorClaims.Subject, ClientID: actorClaims.ClientID}
	}
	self := actor.Subject == subject.Subject
	if !self && subject.MayAct != nil && !mayActAllows(subject.MayAct, actor, h.t.issuer()) {
		return fosite.ErrInvalidRequest.WithHintf("The %s is not allowed by the subject token's may_act (which names %s): %v.", describeExchangeActor(actorClaims != nil, actor), describeMayAct(subject.MayAct), ErrMayAct).WithWrap(ErrMayAct)
	}
	act := subject.Act
	switch {
	case self:
		// An agent exchanging its own token acts for nobody.
	case actorClaims == nil && c.cfg.Impersonate:
		// Impersonation: no new link; a prior chain is kept.
	default:
		link := actor
		link.Act = subject.Act
		act = &link
	}
	if d := exchangeActDepth(act); d > maxActDepth {
		return fosite.ErrInvalidRequest.WithHintf("The act chain would be %d links deep, more than %d: %v.", d, maxActDepth, ErrLineageTooLong).WithWrap(ErrLineageTooLong)
	}
	chain := exchangeLineage(subject, actorClaims)
	if len(chain) > maxGrantChain {
		return fosite.ErrInvalidRequest.WithHintf("The grant chain would hold %d grants, more than %d: %v.", len(chain), maxGrantChain, ErrLineageTooLong).WithWrap(ErrLineageTooLong)
	}

	// Lifetime: never beyond the subject token's (or the actor token's).
	now := h.t.clock.Now()
	lifetime := h.t.lifetimes(c.cfg.ID).AccessToken
	lifetime = min(lifetime, time.Unix(subject.Expiry, 0).Sub(now))
	if actorClaims != nil {
		lifetime = min(lifetime, time.Unix(actorClaims.Expiry, 0).Sub(now))
	}
	if lifetime <= 0 {
		return fosite.ErrInvalidRequest.WithHint("The subject_token or actor_token has no lifetime left to give the new token.")
	}

	aud, err := exchangeAudience(form, c)
	if err != nil {
		return err
	}
	scopes, err := exchangeScopes(r.GetRequestedScopes(), subject.Scopes())
	if err != nil {
		return err
	}

	sess.SetSubject(subject.Subject)
	sess.ClientID = c.cfg.ID
	sess.Act = act
	sess.MayAct = subject.MayAct
	sess.Ctx = subject.Ctx
	sess.Cnf = nil
	sess.GrantChain = chain
	sess.Lifetime = lifetime
	if subject.AuthTime != 0 && sess.Claims != nil {
		sess.Claims.AuthTime = time.Unix(subject.AuthTime, 0).UTC()
	}
	r.SetRequestedAudience(aud)
	for _, a := range aud {
		r.GrantAudience(a)
	}
	for _, s := range scopes {
		r.GrantScope(s)
	}
	return nil
}

// PopulateTokenEndpointResponse issues the access token. The token
// endpoint adds issued_token_type and the Bearer token type.
func (h *exchangeHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	if _, err := exchangeClient(r); err != nil {
		return err
	}
	sess, ok := r.GetSession().(*Session)
	if !ok || sess == nil || sess.Lifetime <= 0 {
		return fosite.ErrServerError.WithHint("The token exchange was not prepared.")
	}
	_, err := h.helper.IssueAccessToken(ctx, sess.Lifetime, r, resp)
	return err
}

// exchangeClient is the authenticated client, if it may use token
// exchange.
func exchangeClient(r fosite.AccessRequester) (*client, error) {
	c, _ := r.GetClient().(*client)
	if c == nil {
		return nil, fosite.ErrInvalidClient
	}
	if !c.GetGrantTypes().Has(GrantTokenExchange) {
		return nil, fosite.ErrUnauthorizedClient.WithHintf("The client %q may not use token exchange: add %s to its grant_types.", c.cfg.ID, GrantTokenExchange)
	}
	if c.IsPublic() {
		return nil, fosite.ErrUnauthorizedClient.WithHintf("The client %q is public: token exchange needs a client that authenticates.", c.cfg.ID)
	}
	return c, nil
}

// exchangeSingleValued refuses a parameter sent more than once (RFC 6749 section
// 3.2).
func exchangeSingleValued(form url.Values, names ...string) error {
	for _, n := range names {
		if len(form[n]) > 1 {
			return fosite.ErrInvalidRequest.WithHintf("The %s parameter is included more than once.", n)
		}
	}
	return nil
}

// exchangeTokenType accepts the token types this server can validate as a
// subject or actor token: its own JWT access tokens.
func exchangeTokenType(param, typ string) error {
	switch typ {
	case tokenTypeAccessToken, tokenTypeJWT:
		return nil
	case tokenTypeIDToken, tokenTypeRefreshToken:
		return fosite.ErrInvalidRequest.WithHintf("The %s %q is not accepted: only access tokens of this issuer can be exchanged (%s or %s).", param, typ, tokenTypeAccessToken, tokenTypeJWT)
	default:
		return fosite.ErrInvalidRequest.WithHintf("The %s %q is not supported: send %s or %s.", param, typ, tokenTypeAccessToken, tokenTypeJWT)
	}
}

// mayActAllows reports whether may_act names the actor: its sub, and its
// iss and client_id where may_act has them. A may_act naming nobody
// allows nobody.
func mayActAllows(m *Actor, a Actor, issuer string) bool {
	if m.Subject == "" && m.ClientID == "" {
		return false
	}
	return (m.Subject == "" || m.Subject == a.Subject) &&
		(m.ClientID == "" || m.ClientID == a.ClientID) &&
		(m.Issuer == "" || m.Issuer == issuer)
}

func describeExchangeActor(fromToken bool, a Actor) string {
	if fromToken {
		return "actor " + strconv.Quote(a.Subject) + " (from actor_token)"
	}
	return "calling client " + strconv.Quote(a.Subject)
}

func describeMayAct(m *Actor) string {
	s := "sub " + strconv.Quote(m.Subject)
	if m.ClientID != "" {
		s += ", client_id " + strconv.Quote(m.ClientID)
	}
	if m.Issuer != "" {
		s += ", iss " + strconv.Quote(m.Issuer)
	}
	return s
}

func exchangeActDepth(a *Actor) int {
	n := 0
	for ; a != nil; a = a.Act {
		n++
	}
	return n
}

// exchangeLineage is the grant chain of an exchanged token: the subject token's
// chain, grant and jti, then the actor token's, without repeats, oldest
// first within each. Revoking any of them (a grant, or one token by its
// jti through RFC 7009) makes the exchanged token inactive.
func exchangeLineage(subject, actor *AccessClaims) []string {
	var out []string
	add := func(ids ...string) {
		for _, id := range ids {
			if id != "" && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	add(subject.GrantChain...)
	add(subject.GrantID, subject.ID)
	if actor != nil {
		add(actor.GrantChain...)
		add(actor.GrantID, actor.ID)
	}
	return out
}

// exchangeAudience reads audience and resource (RFC 8693 section 2.1,
// RFC 8707) and checks them against the client's exchange policy.
func exchangeAudience(form url.Values, c *client) ([]string, error) {
	allowed := c.cfg.ExchangeAudiences
	if len(allowed) == 0 {
		return nil, ErrInvalidTarget.WithHintf("The client %q may not exchange tokens for any audience: set its exchange_audiences.", c.cfg.ID)
	}
	var aud []string
	add := func(v string) {
		if !slices.Contains(aud, v) {
			aud = append(aud, v)
		}
	}
	for _, v := range fosite.RemoveEmpty(form["audience"]) {
		add(v)
	}
	for _, v := range form["resource"] {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return nil, ErrInvalidTarget.WithHintf("The resource %q is not an absolute URI without a fragment (RFC 8707 section 2).", v)
		}
		add(v)
	}
	if len(aud) == 0 {
		if len(allowed) == 1 {
			return []string{allowed[0]}, nil
		}
		return nil, ErrInvalidTarget.WithHintf("Name an audience or resource: the client %q may exchange for several (%s).", c.cfg.ID, strings.Join(allowed, ", "))
	}
	for _, a := range aud {
		if !slices.Contains(allowed, a) {
			return nil, ErrInvalidTarget.WithHintf("The client %q may not exchange a token for audience %q: it is not in its exchange_audiences.", c.cfg.ID, a)
		}
	}
	return aud, nil
}

// exchangeScopes grants the requested scopes if they are all in the subject
// token's, or the subject token's scopes when none are requested.
func exchangeScopes(requested, have []string) ([]string, error) {
	if len(requested) == 0 {
		return have, nil
	}
	var out []string
	for _, s := range requested {
		if !slices.Contains(have, s) {
			return nil, fosite.ErrInvalidScope.WithHintf("The scope %q is not in the subject token's scope: token exchange only narrows scope.", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}
