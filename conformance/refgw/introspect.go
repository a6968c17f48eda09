package refgw

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	maxIntrospectionBytes = 64 << 10
	maxCachedAnswers      = 10_000
)

// introspection is what an RFC 7662 answer adds to a valid token.
type introspection struct {
	active bool
	reason string   // why an active token is refused, or ""
	scopes []string // the scope member, when present
	scoped bool
	// audience and exp, when present, are checked like the token's own.
	audience    []string
	hasAudience bool
	exp         *time.Time
}

type cachedIntrospection struct {
	answer  introspection
	expires time.Time
}

// introspector calls the introspection endpoint, with an optional cache
// that never outlives the token.
type introspector struct {
	cfg    IntrospectionConfig
	client *http.Client
	now    func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedIntrospection
}

// introspect returns the answer for tok, whose verified claims are c. An
// error means the endpoint could not give an answer (the caller fails
// closed).
func (in *introspector) introspect(ctx context.Context, tok string, c *tokenClaims) (introspection, error) {
	key := sha256.Sum256([]byte(tok))
	now := in.now()
	if in.cfg.CacheTTL > 0 {
		in.mu.Lock()
		e, ok := in.cache[key]
		in.mu.Unlock()
		if ok && now.Before(e.expires) {
			return e.answer, nil
		}
	}
	ans, err := in.call(ctx, tok, c)
	if err != nil {
		return introspection{}, err
	}
	if in.cfg.CacheTTL > 0 && c.exp != nil {
		expires := now.Add(in.cfg.CacheTTL)
		if c.exp.Before(expires) {
			expires = *c.exp
		}
		if now.Before(expires) {
			in.mu.Lock()
			if in.cache == nil || len(in.cache) >= maxCachedAnswers {
				in.cache = map[[32]byte]cachedIntrospection{}
			}
			in.cache[key] = cachedIntrospection{answer: ans, expires: expires}
			in.mu.Unlock()
		}
	}
	return ans, nil
}

func (in *introspector) call(ctx context.Context, tok string, c *tokenClaims) (introspection, error) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.Timeout)
	defer cancel()
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return introspection{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: form-encode the credentials before Basic.
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	resp, err := in.client.Do(req)
	if err != nil {
		return introspection{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return introspection{}, fmt.Errorf("introspection endpoint answered HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return introspection{}, err
	}
	if len(body) > maxIntrospectionBytes {
		return introspection{}, errors.New("introspection answer too large")
	}
	return parseIntrospection(body, c)
}

// parseIntrospection reads an RFC 7662 section 2.2 answer and checks that
// what it says agrees with the token.
func parseIntrospection(body []byte, c *tokenClaims) (introspection, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return introspection{}, errors.New("introspection answer is not a JSON object")
	}
	var active bool
	if err := json.Unmarshal(m["active"], &active); err != nil {
		return introspection{}, errors.New("introspection answer has no boolean active")
	}
	if !active {
		return introspection{active: false}, nil
	}
	ans := introspection{active: true}
	str := func(name string) (string, bool) {
		var s string
		raw, ok := m[name]
		if !ok || json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	if s, ok := str("iss"); ok && s != c.iss {
		ans.reason = "introspection iss differs from the token's"
	}
	if s, ok := str("sub"); ok && s != c.sub {
		ans.reason = "introspection sub differs from the token's"
	}
	if s, ok := str("client_id"); ok && c.agent() != "" && s != c.agent() {
		ans.reason = "introspection client_id differs from the token's"
	}
	if raw, ok := m["aud"]; ok {
		var one string
		if json.Unmarshal(raw, &one) == nil {
			ans.audience = []string{one}
		} else if json.Unmarshal(raw, &ans.audience) != nil {
			return introspection{}, errors.New("introspection aud is malformed")
		}
		ans.hasAudience = true
	}
	if raw, ok := m["exp"]; ok {
		exp, err := numericDate(raw)
		if err != nil {
			return introspection{}, errors.New("introspection exp is malformed")
		}
		ans.exp = &exp
	}
	if s, ok := str("scope"); ok {
		ans.scoped = true
		ans.scopes = (&tokenClaims{scope: s}).presentedScopes()
	} else if _, present := m["scope"]; present {
		return introspection{}, errors.New("introspection scope is not a string")
	}
	return ans, nil
}
