package conformance

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentsso/agentsso/internal/jwtpeek"
)

// recorder is a loopback HTTP listener that records every request: the
// fake upstream behind a gateway, and the canary that any jku/x5u fetch
// lands on.
type recorder struct {
	ln  net.Listener
	srv *http.Server
	mu  sync.Mutex
	got []recorded
}

type recorded struct {
	at     time.Time
	method string
	path   string
	auth   string
}

func listenRecorder(addr string) (*recorder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w (is another process using it? the harness plays this address)", addr, err)
	}
	r := &recorder{ln: ln}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.got = append(r.got, recorded{at: time.Now(), method: req.Method, path: req.URL.Path, auth: req.Header.Get("Authorization")})
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true,"from":"agentsso upstream"}`))
}

func (r *recorder) url() string { return "http://" + r.ln.Addr().String() }

// mark returns a position; since returns what arrived after it.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *recorder) since(m int) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.got[m:]...)
}

func (r *recorder) close() { _ = r.srv.Close() }

// upstreamEvidence turns recorded upstream requests into evidence,
// comparing each token with the one the harness sent.
func upstreamEvidence(rs []recorded, inbound string) []Upstream {
	var out []Upstream
	for _, r := range rs {
		u := Upstream{Method: r.method, Path: r.path}
		if tok := bearerToken(r.auth); tok != "" {
			u.Token = tokenRef("upstream", tok)
			u.Passthrough = tok == inbound
			u.Claims = claimsOf(tok)
		}
		out = append(out, u)
	}
	return out
}

func bearerToken(h string) string {
	if i := strings.IndexByte(h, ' '); i > 0 {
		return strings.TrimSpace(h[i+1:])
	}
	return ""
}

func claimsOf(tok string) map[string]any {
	c := jwtpeek.Claims(tok)
	if c == nil {
		return nil
	}
	out := map[string]any{}
	for _, k := range []string{"iss", "sub", "aud", "act", "client_id", "scope"} {
		if v, ok := c[k]; ok {
			out[k] = v
		}
	}
	return out
}
