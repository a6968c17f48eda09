package agentlab

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// browser is the shim that plays the user: given an authorization URL it
// signs the scenario's user in (a scripted user: login_hint), lets the
// emulator consent, perturbs the authorization response as the scenario
// asks, and delivers it to the agent's redirect URI.
type browser struct {
	w      *World
	setup  ASSetup
	client *http.Client
	// opened counts authorization URLs the agent handed over; refused
	// those with a scheme other than http(s).
	opened, refused atomic.Int64
}

func (b *browser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw := r.FormValue("url")
	if raw == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "give the authorization URL as ?url="})
		return
	}
	b.opened.Add(1)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		b.refused.Add(1)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the browser refuses to open a URL that is not http(s)"})
		return
	}
	q := u.Query()
	if q.Get("login_hint") == "" {
		q.Set("login_hint", "alice")
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := b.client.Do(req)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the authorization endpoint did not answer: " + err.Error()})
		return
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || loc == "" {
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "the authorization endpoint did not redirect", "status": resp.StatusCode})
		return
	}
	lu, err := u.Parse(loc)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "bad Location: " + err.Error()})
		return
	}
	lq := lu.Query()
	switch b.setup.RedirectIss {
	case "wrong":
		lq.Set("iss", b.w.base+"/t/agents-impostor")
	case "missing":
		lq.Del("iss")
	}
	if b.setup.RedirectState == "wrong" && lq.Has("state") {
		lq.Set("state", "tampered-"+randomString(6))
	}
	lu.RawQuery = lq.Encode()
	final := lu.String()
	if (lu.Scheme == "http" || lu.Scheme == "https") && isLoopbackHost(lu.Hostname()) {
		dreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, final, nil)
		if dresp, err := b.client.Do(dreq); err == nil {
			dresp.Body.Close()
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": final})
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}
