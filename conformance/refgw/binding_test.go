package refgw_test

import (
	"net/http"
	"testing"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// context-binding-replay: a token bound to 127.0.0.1/32 is refused when
// replayed from 127.0.0.2, whatever X-Forwarded-For says.
func TestContextBinding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		from   string
		xff    string
		flaws  []string
		status int
	}{
		{name: "from the bound address", from: "127.0.0.1", status: http.StatusOK},
		{name: "replayed from 127.0.0.2", from: "127.0.0.2", status: http.StatusUnauthorized},
		{name: "replayed from 127.0.0.2 with a spoofed X-Forwarded-For", from: "127.0.0.2", xff: "127.0.0.1", status: http.StatusUnauthorized},
		{name: "replayed from 127.0.0.2 with skip-context", from: "127.0.0.2", flaws: []string{refgw.FlawSkipContext}, status: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			gw := f.newGateway(tc.flaws)
			cl := f.claims(gw)
			cl["ctx"] = map[string]any{"net": []string{"127.0.0.1/32", "::1/128"}}
			tok := f.mint(cl)
			req := gw.get(t, "/api/tickets", tok)
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
				req.Header.Set("Forwarded", "for="+tc.xff)
				req.Header.Set("X-Real-IP", tc.xff)
			}
			resp := gw.do(t, clientFrom(tc.from), req)
			if tc.status == http.StatusOK {
				if resp.status != http.StatusOK {
					t.Fatalf("status %d, want 200; %q", resp.status, resp.header.Values("WWW-Authenticate"))
				}
				return
			}
			checkRefusal(t, gw, resp, tc.status, "Bearer", iT, tok)
			if got := f.upstreamRequests(); len(got) != 0 {
				t.Errorf("upstream got %v", got)
			}
			recs, _ := readAudit(t, gw.auditPath)
			if src := recs[0].Source; len(src) < 10 || src[:10] != tc.from+":" {
				t.Errorf("audit source %q, want %s:port", src, tc.from)
			}
		})
	}
}
