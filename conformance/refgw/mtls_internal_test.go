package refgw

import (
	"net/http"
	"testing"
)

// FuzzForwardedHeaders feeds arbitrary proxy headers to the parsers the
// mtls-trusts-cert-header and trusts-forwarded-for flaws use: they never
// panic, and a certificate they return parsed as one.
func FuzzForwardedHeaders(f *testing.F) {
	f.Add(":MIIB:", "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----", `Hash=00;Cert="x"`, "AAAA", "127.0.0.1, 10.0.0.1", `for="[::1]:80";proto=https`)
	f.Add("", "", "", "", "", "")
	f.Add("::", "%zz", `Cert=`, "!!", "not-an-ip", "for=")
	f.Fuzz(func(t *testing.T, clientCert, escaped, xfcc, arr, xff, fwd string) {
		h := http.Header{}
		h.Set("Client-Cert", clientCert)
		h.Set("X-Client-Cert", escaped)
		h.Set("X-SSL-Client-Cert", escaped)
		h.Set("X-Forwarded-Client-Cert", xfcc)
		h.Set("X-ARR-ClientCert", arr)
		h.Set("X-Forwarded-For", xff)
		h.Set("X-Real-IP", xff)
		h.Set("Forwarded", fwd)
		if c := certFromHeaders(h); c != nil && len(c.Raw) == 0 {
			t.Fatalf("certificate without DER")
		}
		if a, ok := forwardedSource(h); ok && !a.IsValid() {
			t.Fatalf("invalid address reported as ok")
		}
	})
}

func TestForwardedSource(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{"X-Forwarded-For": {"10.0.0.1, 127.0.0.1"}}, "10.0.0.1"},
		{http.Header{"X-Real-Ip": {"::ffff:10.0.0.2"}}, "10.0.0.2"},
		{http.Header{"Forwarded": {`for="[2001:db8::1]:4711";proto=https, for=10.0.0.9`}}, "2001:db8::1"},
		{http.Header{"Forwarded": {"for=unknown"}}, ""},
		{http.Header{}, ""},
	} {
		a, ok := forwardedSource(tc.h)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("forwardedSource(%v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}
