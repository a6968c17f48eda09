package agentlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/internal/jwtpeek"
)

// front stands between the agent and the emulator: it perturbs what the
// scenario asks for (metadata fields, the ID token) and registers every
// token and secret the emulator hands out as a canary.
type front struct {
	w      *World
	em     *emulator.Server
	setup  ASSetup
	tokens atomic.Int64
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil {
			if a := form.Get("client_assertion"); a != "" {
				f.w.Canaries.Add(a, "assertion", "client assertion", "")
			}
		}
	}
	p := r.URL.Path
	meta := strings.Contains(p, "/.well-known/")
	token := strings.HasSuffix(p, "/token")
	register := strings.HasSuffix(p, "/register")
	device := strings.HasSuffix(p, "/device_authorization")
	if !meta && !token && !register && !device {
		f.em.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	f.em.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	issuer := f.issuerOf(p)
	if rec.Code == http.StatusOK {
		switch {
		case meta:
			body = f.rewriteMetadata(body, issuer)
		case token:
			body = f.tokenResponse(r.Context(), body, issuer)
		case register:
			var m map[string]any
			if json.Unmarshal(body, &m) == nil {
				if s, _ := m["client_secret"].(string); s != "" {
					f.w.Canaries.Add(s, "client_secret", "client secret from registration at "+issuer, issuer)
				}
			}
		case device:
			var m struct {
				DeviceCode string `json:"device_code"`
				UserCode   string `json:"user_code"`
			}
			if json.Unmarshal(body, &m) == nil && m.UserCode != "" {
				f.w.Canaries.Add(m.DeviceCode, "device_code", "device code at "+issuer, issuer)
				f.w.approveDevice(f.tenantOf(p), m.UserCode)
			}
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (f *front) tenantOf(p string) string {
	if strings.Contains(p, "/t/agents2/") {
		return "agents2"
	}
	return "agents"
}

func (f *front) issuerOf(p string) string {
	for _, t := range []string{"agents2", "agents"} {
		if strings.Contains(p, "/t/"+t+"/") || strings.HasSuffix(p, "/t/"+t) {
			return f.em.Issuer(t)
		}
	}
	return ""
}

func (f *front) rewriteMetadata(body []byte, issuer string) []byte {
	if issuer != f.w.Issuer {
		return body
	}
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	for _, d := range f.setup.Drop {
		delete(m, d)
	}
	if f.setup.Issuer == "mismatch" {
		m["issuer"] = f.w.base + "/t/agents-impostor"
	}
	if f.setup.AuthorizationEndpoint != "" {
		m["authorization_endpoint"] = f.setup.AuthorizationEndpoint
	}
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

func (f *front) tokenResponse(ctx context.Context, body []byte, issuer string) []byte {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	n := f.tokens.Add(1)
	if at, _ := m["access_token"].(string); at != "" {
		aud := strings.Join(ClaimStrings(jwtpeek.Claims(at), "aud"), " ")
		f.w.Canaries.Add(at, "access_token", fmt.Sprintf("access token #%d (aud %s)", n, f.w.serverName(aud)), issuer)
	}
	if rt, _ := m["refresh_token"].(string); rt != "" {
		f.w.Canaries.Add(rt, "refresh_token", fmt.Sprintf("refresh token #%d", n), issuer)
	}
	if it, _ := m["id_token"].(string); it != "" {
		if f.setup.IDToken != "" && issuer == f.w.Issuer {
			if bad, err := f.flawedIDToken(ctx, it); err == nil {
				it = bad
				m["id_token"] = bad
				if out, err := json.Marshal(m); err == nil {
					body = out
				}
			}
		}
		f.w.Canaries.Add(it, "id_token", fmt.Sprintf("ID token #%d", n), issuer)
	}
	return body
}

// flawedIDToken re-mints an ID token with the one flaw the scenario names.
func (f *front) flawedIDToken(ctx context.Context, orig string) (string, error) {
	claims := jwtpeek.Claims(orig)
	if claims == nil {
		return "", fmt.Errorf("the ID token is not a JWT")
	}
	req := emulator.MintRequest{Claims: claims, Header: map[string]any{"typ": "JWT"}}
	switch f.setup.IDToken {
	case "wrong-iss":
		claims["iss"] = f.w.base + "/t/agents-impostor"
	case "wrong-aud":
		claims["aud"] = "someone-else"
		claims["azp"] = "someone-else"
	case "wrong-nonce":
		claims["nonce"] = "forged-" + randomString(6)
	case "bad-signature":
		req.Key = "rogue"
	case "expired":
		delete(claims, "iat")
		delete(claims, "exp")
		req.Offset = -time.Hour
		req.Lifetime = 10 * time.Minute
	}
	res, err := f.em.Mint(ctx, "agents", req)
	if err != nil {
		return "", err
	}
	return res.Token, nil
}
