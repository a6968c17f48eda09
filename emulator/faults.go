package emulator

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Fault is an injected failure of one endpoint of a tenant.
type Fault struct {
	// Endpoint is token, authorize, jwks, discovery, introspect, revoke,
	// userinfo, register, or "*" for all.
	Endpoint string `json:"endpoint"`
	// Mode is unavailable (503), error (Status, default 500), ratelimit
	// (429 with Retry-After), slow (Delay, then the real answer) or
	// malformed (200 with a body that is not JSON).
	Mode string `json:"mode"`
	// Status for mode error.
	Status int `json:"status,omitempty"`
	// Delay for mode slow, e.g. "2s".
	Delay string `json:"delay,omitempty"`
	// Count limits how many requests the fault hits (0: until cleared).
	Count int `json:"count,omitempty"`

	delay time.Duration
	used  int
}

type faultSet struct {
	mu sync.Mutex
	m  map[string]*Fault
}

var faultModes = map[string]bool{"unavailable": true, "error": true, "ratelimit": true, "slow": true, "malformed": true}

func (fs *faultSet) set(f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.m == nil {
		fs.m = map[string]*Fault{}
	}
	fs.m[f.Endpoint] = &f
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.m = nil
}

func (fs *faultSet) list() []Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := []Fault{}
	for _, f := range fs.m {
		out = append(out, *f)
	}
	return out
}

// apply answers the request with the endpoint's fault, if any, and
// reports whether it did. A slow fault only delays.
func (fs *faultSet) apply(endpoint string, w http.ResponseWriter, r *http.Request) bool {
	fs.mu.Lock()
	f := fs.m[endpoint]
	if f == nil {
		f = fs.m["*"]
	}
	if f == nil {
		fs.mu.Unlock()
		return false
	}
	f.used++
	if f.Count > 0 && f.used >= f.Count {
		delete(fs.m, f.Endpoint)
	}
	mode, status, delay := f.Mode, f.Status, f.delay
	fs.mu.Unlock()
	switch mode {
	case "slow":
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		return false
	case "unavailable":
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "injected fault: unavailable")
	case "ratelimit":
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusTooManyRequests, "slow_down", "injected fault: rate limited")
	case "malformed":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"issuer": "` + strconv.Quote(endpoint)[1:]))
	default:
		if status < 400 || status > 599 {
			status = http.StatusInternalServerError
		}
		writeJSONError(w, status, "server_error", "injected fault: error "+strconv.Itoa(status))
	}
	return true
}
