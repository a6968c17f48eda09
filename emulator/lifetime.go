package emulator

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ory/fosite"
)

// Short lifetimes and step-up scopes, per client:
//
//	max_lifetime: 5m                       # no access token lives longer
//	step_up_scopes:
//	  zendesk:tickets:write: 1m            # a token with this scope: at most 1m
//
// Every access token issued to the client, by any grant (token exchange
// included, where the subject token's remaining life may cap it further),
// lives at most max_lifetime, and at most the shortest step-up lifetime of
// the scopes it carries. A step-up scope also requires a fresh grant: a
// refresh_token grant drops it from the new access token (and from the
// rotated refresh token), as RFC 6749 section 6 allows a narrower scope,
// so the client must come back through client_credentials, token exchange
// or the authorization code flow to hold it again. Refresh tokens and ID
// tokens keep their lifetimes.

// capLifetime applies a client's max_lifetime and step-up scopes to an
// access token lifetime d.
func (t *tenant) capLifetime(clientID string, scopes []string, d time.Duration) time.Duration {
	c := t.client(clientID)
	if c == nil {
		return d
	}
	if m := c.cfg.MaxLifetime; m > 0 && d > m {
		d = m
	}
	for _, s := range scopes {
		if m, ok := c.cfg.StepUpScopes[s]; ok && m > 0 && d > m {
			d = m
		}
	}
	return d
}

// dropStepUpScopes removes the client's step-up scopes from a refresh
// grant.
func (t *tenant) dropStepUpScopes(ar fosite.AccessRequester, c *client) {
	if len(c.cfg.StepUpScopes) == 0 || !ar.GetGrantTypes().ExactOne(GrantRefreshToken) {
		return
	}
	req, ok := ar.(*fosite.AccessRequest)
	if !ok {
		return
	}
	req.GrantedScope = slices.DeleteFunc(slices.Clone(req.GrantedScope), func(s string) bool {
		_, up := c.cfg.StepUpScopes[s]
		return up
	})
}

// validateLifetimePolicy checks a client's max_lifetime and step_up_scopes.
func validateLifetimePolicy(bad func(string, string, ...any), cf string, cl *ClientConfig, scopes map[string]bool) {
	if cl.MaxLifetime < 0 {
		bad(cf+".max_lifetime", "%s is negative: want a duration such as 5m", cl.MaxLifetime)
	}
	keys := make([]string, 0, len(cl.StepUpScopes))
	for s := range cl.StepUpScopes {
		keys = append(keys, s)
	}
	sort.Strings(keys)
	for _, s := range keys {
		d := cl.StepUpScopes[s]
		f := fmt.Sprintf("%s.step_up_scopes[%s]", cf, s)
		if d <= 0 {
			bad(f, "%s: want a positive duration such as 1m", d)
		}
		if !scopes[s] {
			bad(f, "%q is not in the tenant's scope catalogue: add it to the tenant's scopes", s)
		} else if !slices.Contains(cl.RequiredScopes, s) && !slices.Contains(cl.OptionalScopes, s) {
			bad(f, "%q is not one of the client's scopes: add it to required_scopes or optional_scopes", s)
		}
	}
}
