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

// RFC 8693 identifiers.
const (
	grantTokenExchange  = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess     = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT        = "urn:ietf:params:oauth:token-type:jwt"
	maxExchangeBytes    = 64 << 10
	maxCachedExchanges  = 10_000
	exchangeEarlyExpiry = 5 * time.Second
)

type exchanged struct {
	inbound [32]byte // SHA-256 of the inbound token
	token   string
	expires time.Time
}

// exchanger obtains upstream tokens by RFC 8693 token exchange and caches
// them per inbound token (issuer and jti), never past either token's exp.
type exchanger struct {
	cfg    ExchangeConfig
	client *http.Client
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]exchanged
}

// token returns a token for the upstream, exchanged for the inbound one.
func (x *exchanger) token(ctx context.Context, inbound string, c *tokenClaims) (string, error) {
	sum := sha256.Sum256([]byte(inbound))
	key := ""
	if c.jti != "" {
		key = c.iss + "\x00" + c.jti
	}
	now := x.now()
	if key != "" {
		x.mu.Lock()
		e, ok := x.cache[key]
		x.mu.Unlock()
		// The hash check makes a jti collision (only possible with a
		// flaw on) a cache miss rather than another caller's token.
		if ok && e.inbound == sum && now.Before(e.expires) {
			return e.token, nil
		}
	}
	tok, lifetime, err := x.call(ctx, inbound)
	if err != nil {
		return "", err
	}
	if key == "" {
		return tok, nil
	}
	var expires time.Time
	switch {
	case c.exp != nil && lifetime > 0:
		expires = now.Add(lifetime)
		if c.exp.Before(expires) {
			expires = *c.exp
		}
	case c.exp != nil:
		expires = *c.exp
	case lifetime > 0:
		expires = now.Add(lifetime)
	}
	expires = expires.Add(-exchangeEarlyExpiry)
	if now.Before(expires) {
		x.mu.Lock()
		if x.cache == nil || len(x.cache) >= maxCachedExchanges {
			x.cache = map[string]exchanged{}
		}
		x.cache[key] = exchanged{inbound: sum, token: tok, expires: expires}
		x.mu.Unlock()
	}
	return tok, nil
}

func (x *exchanger) call(ctx context.Context, inbound string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	form := url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {inbound},
		"subject_token_type":   {tokenTypeAccess},
		"requested_token_type": {tokenTypeAccess},
		"audience":             {x.cfg.Audience},
	}
	if x.cfg.Scope != "" {
		form.Set("scope", x.cfg.Scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(x.cfg.ClientID), url.QueryEscape(x.cfg.ClientSecret))
	resp, err := x.client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxExchangeBytes+1))
	if err != nil {
		return "", 0, err
	}
	if len(body) > maxExchangeBytes {
		return "", 0, errors.New("token endpoint answer too large")
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return "", 0, fmt.Errorf("token endpoint answered HTTP %d %s", resp.StatusCode, sanitizeCode(e.Error))
	}
	var out struct {
		AccessToken     string   `json:"access_token"`
		IssuedTokenType string   `json:"issued_token_type"`
		TokenType       string   `json:"token_type"`
		ExpiresIn       *float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", 0, errors.New("token endpoint answer is not the RFC 8693 JSON")
	}
	switch {
	case out.AccessToken == "":
		return "", 0, errors.New("token endpoint answer has no access_token")
	case out.IssuedTokenType != "" && out.IssuedTokenType != tokenTypeAccess && out.IssuedTokenType != tokenTypeJWT:
		return "", 0, errors.New("token endpoint issued a token that is not an access token")
	case !strings.EqualFold(out.TokenType, "Bearer") && !strings.EqualFold(out.TokenType, "N_A"):
		// A DPoP- or otherwise bound upstream token cannot be used by
		// forwarding it as Bearer.
		return "", 0, errors.New("token endpoint issued a token that is not a bearer token")
	}
	var lifetime time.Duration
	if out.ExpiresIn != nil && *out.ExpiresIn > 0 && *out.ExpiresIn < 1e9 {
		lifetime = time.Duration(*out.ExpiresIn * float64(time.Second))
	}
	return out.AccessToken, lifetime, nil
}

// sanitizeCode keeps an OAuth error code's characters only (RFC 6749
// section 5.2: %x20-21 / %x23-5B / %x5D-7E), at most 64 of them.
func sanitizeCode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
