package emulator_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// BenchmarkClientCredentials measures the token endpoint in process (no
// network): client authentication, fosite, claims, ES256 signing, audit
// off. The documented load command measures it over loopback.
func BenchmarkClientCredentials(b *testing.B) {
	env := emulatortest.New(b, nil)
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/t/acme/token", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth("support-bot", "support-bot-secret")
			w := httptest.NewRecorder()
			env.Server.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("HTTP %d: %s", w.Code, w.Body)
			}
		}
	})
	reportCPU(b, cpu)
}

// BenchmarkClientCredentialsDPoP is BenchmarkClientCredentials with a
// DPoP proof on every request (RFC 9449), by key algorithm: the proof's
// checks, the replay cache and a cnf.jkt-bound token. The proofs are made
// by the client before the timer starts: only the server's work is
// measured. The signature check dominates: a crypto/ecdsa P-256
// verification costs about twice the signature of the token itself.
func BenchmarkClientCredentialsDPoP(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			env := emulatortest.New(b, nil)
			body := url.Values{"grant_type": {"client_credentials"}}.Encode()
			k := emulatortest.NewDPoPKey(b, alg)
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = k.Proof(b, http.MethodPost, env.TokenURL("acme"), env.Server.Clock("acme").Now(), nil)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := httptest.NewRequest(http.MethodPost, "/t/acme/token", strings.NewReader(body))
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					r.Header.Set("DPoP", proofs[next.Add(1)-1])
					r.SetBasicAuth("support-bot", "support-bot-secret")
					w := httptest.NewRecorder()
					env.Server.ServeHTTP(w, r)
					if w.Code != 200 {
						b.Fatalf("HTTP %d: %s", w.Code, w.Body)
					}
				}
			})
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkVerifyDPoPProof measures the proof check alone (RFC 9449
// section 4.3, without the replay cache), by key algorithm, one key for
// every proof as a client has.
func BenchmarkVerifyDPoPProof(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			const u = "https://as.example.test/t/acme/token"
			now := time.Now()
			k := emulatortest.NewDPoPKey(b, alg)
			proofs := make([]string, 64)
			for i := range proofs {
				proofs[i] = k.Proof(b, http.MethodPost, u, now, nil)
			}
			chk := emulator.DPoPCheck{Method: http.MethodPost, URL: u, Now: now}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := emulator.VerifyDPoPProof(proofs[i%len(proofs)], chk); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkTokenExchange measures an RFC 8693 exchange in process.
func BenchmarkTokenExchange(b *testing.B) {
	env := emulatortest.New(b, nil)
	r := httptest.NewRequest(http.MethodPost, "/t/acme/token", strings.NewReader("grant_type=client_credentials"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("support-bot", "support-bot-secret")
	w := httptest.NewRecorder()
	env.Server.ServeHTTP(w, r)
	tok := between(w.Body.String(), `"access_token":"`, `"`)
	body := url.Values{
		"grant_type":         {emulator.GrantTokenExchange},
		"subject_token":      {tok},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/t/acme/token", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth("mcp-gateway", "mcp-gateway-secret")
			w := httptest.NewRecorder()
			env.Server.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("HTTP %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkTenants reports the heap a thousand tenants take.
func BenchmarkTenants(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cfg := emulator.Config{}
		for j := 0; j < 1000; j++ {
			cfg.Tenants = append(cfg.Tenants, emulator.TenantConfig{
				Name:      fmt.Sprintf("t%d", j),
				Scopes:    []string{"tools:read"},
				Audiences: []string{"https://rs.test"},
				Clients: []emulator.ClientConfig{{ID: "agent", Secret: "s", Audiences: []string{"https://rs.test"},
					DefaultAudience: []string{"https://rs.test"}, RequiredScopes: []string{"tools:read"}}},
			})
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s, err := emulator.New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/1000tenants")
		runtime.KeepAlive(s)
	}
}

func between(s, a, z string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, z); j >= 0 {
		return s[:j]
	}
	return s
}
