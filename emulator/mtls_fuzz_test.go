package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// FuzzClientCertificate feeds arbitrary DER or PEM through the
// certificate-handling path of RFC 8705 client authentication: parsing,
// the subject DN, the registered-name checks of tls_client_auth, the key
// check of self_signed_tls_client_auth, the certificate record. Nothing
// may panic; a registered name, DN or key may only match a certificate
// that really carries it.
func FuzzClientCertificate(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	u, _ := url.Parse("spiffe://example.test/agent/7")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "agent-7", Organization: []string{"agentsso"}},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0),
		DNSNames: []string{"agent.example.test"}, URIs: []*url.URL{u}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 7)},
		EmailAddresses: []string{"agent@example.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der, "CN=agent-7,O=agentsso")
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), `CN=agent\2D7+UID=x;O=agentsso`)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "CN=#0403616263")
	f.Add([]byte{0x30, 0x82, 0xff, 0xff}, `CN=a\`)
	f.Add([]byte{}, "")
	registered := []ClientConfig{
		{ID: "dn", AuthMethod: authTLSClient, TLSClientAuthSubjectDN: "CN=agent-7,O=agentsso"},
		{ID: "dns", AuthMethod: authTLSClient, TLSClientAuthSANDNS: "agent.example.test"},
		{ID: "uri", AuthMethod: authTLSClient, TLSClientAuthSANURI: "spiffe://example.test/agent/7"},
		{ID: "ip", AuthMethod: authTLSClient, TLSClientAuthSANIP: "127.0.0.7"},
		{ID: "email", AuthMethod: authTLSClient, TLSClientAuthSANEmail: "agent@example.test"},
	}
	keys := []certKey{{key: key.Public()}, {x5c0: der}, {key: "not a key"}, {}}
	f.Fuzz(func(t *testing.T, b []byte, dnString string) {
		if d, err := parseDN(dnString); err == nil {
			// What parses renders and re-parses to an equal DN.
			d2, err := parseDN(d.String())
			if err != nil || !dnEqual(d, d2) {
				t.Fatalf("parseDN(%q) = %q, which re-parses to %v, %v", dnString, d.String(), d2, err)
			}
		}
		certs, err := parseCertificates(b)
		if err != nil {
			return
		}
		for _, c := range certs {
			rec := describeCertificate(c)
			if rec.Thumbprint != x5tS256(c.Raw) {
				t.Fatal("thumbprint is not x5t#S256 of the DER")
			}
			d, derr := certSubjectDN(c)
			for _, cc := range append(registered, ClientConfig{ID: "fuzz", AuthMethod: authTLSClient, TLSClientAuthSubjectDN: dnString}) {
				if matchRegisteredName(cc, c) == nil && cc.TLSClientAuthSubjectDN != "" {
					want, _ := parseDN(cc.TLSClientAuthSubjectDN)
					if derr != nil || !dnEqual(want, d) {
						t.Fatalf("DN %q matched a certificate whose subject is %v (%v)", cc.TLSClientAuthSubjectDN, d, derr)
					}
				}
			}
			if matchSelfSigned(keys, c) {
				if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !(ok && pub.Equal(key.Public())) && string(c.Raw) != string(der) {
					t.Fatal("a certificate with another key matched the registered keys")
				}
			}
		}
	})
}
