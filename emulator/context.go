package emulator

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"
)

// Context binding (docs/CLAIMS.md, ctx).
//
// A client's registration may carry a context policy:
//
//	context:
//	  networks: [10.0.0.0/8, 127.0.0.1/32]   # source networks (CIDR)
//	  zones: [eu-west-1a, eu-west-1b]        # compute zones it may name
//	  envs: [prod]                           # environments it may name
//	  require: true                          # every token is context-bound
//
// and a token request may ask for a context with the form parameters
// agentsso_zone, agentsso_env and agentsso_instance (each at most once; 1
// to 128 printable ASCII characters, no spaces, quotes or backslashes).
// The emulator checks, on every grant:
//
//   - the request's source address (the TCP peer, r.RemoteAddr; never
//     X-Forwarded-For or any other header) is in one of the policy's
//     networks, when it lists any. Otherwise: access_denied (HTTP 400, as
//     RFC 6749 section 5.2 answers token errors), naming the address;
//   - agentsso_zone is one of the policy's zones and agentsso_env one of
//     its envs (with require and exactly one zone or env listed, that one
//     is the default; with require and several, the request must name
//     one). Otherwise: invalid_request, naming the parameter and the
//     allowed values;
//   - a client without a policy may not ask for a context:
//     invalid_request.
//
// A token is context-bound when the request asks for a context or the
// policy requires one: its ctx claim is {net: the policy's networks, zone,
// env, instance}, returned by introspection too. The userinfo endpoint
// refuses a token whose ctx.net does not contain the caller's address.
// A token exchange keeps the subject token's ctx unless the exchanging
// client's request or policy binds a new one.

// ContextPolicy is a client's context binding policy.
type ContextPolicy struct {
	// Networks are the source networks (CIDR) the client may ask for
	// tokens from, and the ctx.net of its context-bound tokens.
	Networks []string `yaml:"networks,omitempty" mapstructure:"networks"`
	// Zones are the compute zones it may name (agentsso_zone).
	Zones []string `yaml:"zones,omitempty" mapstructure:"zones"`
	// Envs are the environments it may name (agentsso_env).
	Envs []string `yaml:"envs,omitempty" mapstructure:"envs"`
	// Require makes every token of the client context-bound.
	Require bool `yaml:"require,omitempty" mapstructure:"require"`
}

// Token request parameters asking for a context.
const (
	paramZone     = "agentsso_zone"
	paramEnv      = "agentsso_env"
	paramInstance = "agentsso_instance"
	// maxContextValue bounds a zone, env or instance.
	maxContextValue = 128
)

// ErrContextDenied is the token endpoint's answer to a request from a
// source address outside the client's networks.
var ErrContextDenied = &fosite.RFC6749Error{
	ErrorField:       "access_denied",
	DescriptionField: "The request does not fit the client's context policy.",
	CodeField:        http.StatusBadRequest,
}

// bindToken applies the client's context and certificate policies to a
// token request whose client is authenticated and whose session is the
// one the token will be built from (endpoints.go calls it before the
// response is made).
func (t *tenant) bindToken(r *http.Request, ar fosite.AccessRequester) error {
	c, _ := ar.GetClient().(*client)
	sess, _ := ar.GetSession().(*Session)
	if c == nil || sess == nil {
		return nil
	}
	if err := t.bindContext(r, c, sess); err != nil {
		return err
	}
	if err := t.bindCertificate(r, ar, c, sess); err != nil {
		return err
	}
	t.dropStepUpScopes(ar, c)
	return nil
}

// bindContext checks the request against the client's context policy and
// binds the token to the context asked for or required.
func (t *tenant) bindContext(r *http.Request, c *client, sess *Session) error {
	zone, env, inst, asked, err := contextParams(r.PostForm)
	if err != nil {
		return err
	}
	pol := c.cfg.Context
	if pol == nil {
		if asked {
			return fosite.ErrInvalidRequest.WithHintf("Client %q has no context policy, so it cannot ask for a context-bound token (%s, %s, %s): register one (context: {networks, zones, envs}).", c.cfg.ID, paramZone, paramEnv, paramInstance)
		}
		return nil
	}
	if len(pol.Networks) > 0 {
		src, ok := sourceAddr(r)
		if !ok || !inNetworks(src, pol.Networks) {
			return ErrContextDenied.WithHintf("The token request comes from %s, outside client %q's networks (%s).", r.RemoteAddr, c.cfg.ID, strings.Join(pol.Networks, ", "))
		}
	}
	if !asked && !pol.Require {
		return nil
	}
	if zone, err = pick(paramZone, zone, pol.Zones, pol.Require, c.cfg.ID); err != nil {
		return err
	}
	if env, err = pick(paramEnv, env, pol.Envs, pol.Require, c.cfg.ID); err != nil {
		return err
	}
	sess.Ctx = &TokenContext{Networks: slices.Clone(pol.Networks), Zone: zone, Env: env, Instance: inst}
	return nil
}

// pick checks a requested zone or env against the allowed values.
func pick(param, v string, allowed []string, require bool, id string) (string, error) {
	switch {
	case v == "" && require && len(allowed) == 1:
		return allowed[0], nil
	case v == "" && require && len(allowed) > 1:
		return "", fosite.ErrInvalidRequest.WithHintf("Client %q's tokens must be context-bound: name one of its allowed values in %s (%s).", id, param, strings.Join(allowed, ", "))
	case v == "":
		return "", nil
	case len(allowed) == 0:
		return "", fosite.ErrInvalidRequest.WithHintf("Client %q's context policy allows no %s: remove the parameter or add the value to the policy.", id, param)
	case !slices.Contains(allowed, v):
		return "", fosite.ErrInvalidRequest.WithHintf("%s %q is not allowed for client %q: want one of %s.", param, v, id, strings.Join(allowed, ", "))
	}
	return v, nil
}

// contextParams reads the context parameters of a token request.
func contextParams(form url.Values) (zone, env, inst string, asked bool, err error) {
	get := func(p string) (string, error) {
		vs, ok := form[p]
		if !ok {
			return "", nil
		}
		asked = true
		if len(vs) != 1 {
			return "", fosite.ErrInvalidRequest.WithHintf("%s is sent %d times: send it at most once.", p, len(vs))
		}
		if err := checkContextValue(vs[0]); err != nil {
			return "", fosite.ErrInvalidRequest.WithHintf("%s: %v.", p, err)
		}
		return vs[0], nil
	}
	if zone, err = get(paramZone); err != nil {
		return
	}
	if env, err = get(paramEnv); err != nil {
		return
	}
	inst, err = get(paramInstance)
	return
}

// checkContextValue checks a zone, env or instance.
func checkContextValue(v string) error {
	if v == "" || len(v) > maxContextValue {
		return fmt.Errorf("%q: want 1 to %d characters", v, maxContextValue)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return fmt.Errorf("%q: want printable ASCII without spaces, quotes or backslashes", v)
		}
	}
	return nil
}

// sourceAddr is the TCP peer address of a request.
func sourceAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// inNetworks reports whether a is in one of the CIDR networks.
func inNetworks(a netip.Addr, nets []string) bool {
	for _, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err == nil && p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

// checkContextBinding checks, at a resource endpoint (userinfo), that a
// context-bound token is presented from one of its networks. It returns
// "" when the token may be used.
func checkContextBinding(r *http.Request, c *AccessClaims) string {
	if c.Ctx == nil || len(c.Ctx.Networks) == 0 {
		return ""
	}
	if src, ok := sourceAddr(r); ok && inNetworks(src, c.Ctx.Networks) {
		return ""
	}
	return fmt.Sprintf("The access token is bound to the networks %s (ctx.net); it is presented from %s.", strings.Join(c.Ctx.Networks, ", "), r.RemoteAddr)
}

// validateContextPolicy checks a client's context policy.
func validateContextPolicy(bad func(string, string, ...any), cf string, p *ContextPolicy) {
	if p == nil {
		return
	}
	f := cf + ".context"
	for i, n := range p.Networks {
		pfx, err := netip.ParsePrefix(n)
		if err != nil {
			bad(fmt.Sprintf("%s.networks[%d]", f, i), "%q is not a CIDR network (e.g. 10.0.0.0/8 or 127.0.0.1/32): %v", n, err)
			continue
		}
		if pfx.Masked() != pfx {
			bad(fmt.Sprintf("%s.networks[%d]", f, i), "%q has host bits set: write %s", n, pfx.Masked())
		}
	}
	for _, l := range []struct {
		name string
		vs   []string
	}{{"zones", p.Zones}, {"envs", p.Envs}} {
		for i, v := range l.vs {
			if err := checkContextValue(v); err != nil {
				bad(fmt.Sprintf("%s.%s[%d]", f, l.name, i), "%v", err)
			}
		}
	}
	if p.Require && len(p.Networks) == 0 && len(p.Zones) == 0 && len(p.Envs) == 0 {
		bad(f+".require", "a required context needs networks, zones or envs to bind to")
	}
}

// validateClientBinding checks a client's mTLS, context and lifetime
// policies (called by TenantConfig.validate).
func validateClientBinding(bad func(string, string, ...any), cf string, cl *ClientConfig, scopes map[string]bool) {
	validateMTLSClient(bad, cf, cl)
	validateContextPolicy(bad, cf, cl.Context)
	validateLifetimePolicy(bad, cf, cl, scopes)
}
