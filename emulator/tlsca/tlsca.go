// Package tlsca is a local certificate authority, so the emulator can serve
// HTTPS (gateways such as mod_auth_openidc refuse an http:// JWKS URL) and
// hand out mTLS client certificates.
//
// The CA lives in a directory: ca.pem (the root certificate, to install in
// the clients' trust store) and ca-key.pem (its key, mode 0600). It is
// created on first use and reloaded on later runs, so a client trusts it
// once. Server certificates are cached beside it as server-<hash>.pem and
// server-<hash>-key.pem and reused while valid for more than a day.
//
// All keys are ECDSA P-256. The CA is for local testing: its key sits
// unencrypted on disk, and anything that can read the directory can
// impersonate any host to a client that trusts ca.pem.
package tlsca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Names and lifetimes of the certificates.
const (
	// CommonName is the subject common name of the root certificate.
	CommonName = "agentsso local CA"
	// CAValidity is how long a new root certificate is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long a server or client certificate is valid
	// (never past the root's own expiry).
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore is how long a cached server certificate must still be
	// valid to be reused.
	RenewBefore = 24 * time.Hour
)

// File names inside the CA directory.
const (
	CertFileName = "ca.pem"
	KeyFileName  = "ca-key.pem"
	lockFileName = "ca.lock"
)

// defaultHosts are always in a server certificate.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Errors of this package. Test for them with errors.Is.
var (
	// ErrInvalidCA is returned by LoadOrCreate when the directory holds a
	// CA that cannot be used: half of it, a damaged file, a key that does
	// not match the certificate, or a certificate that is not a CA.
	ErrInvalidCA = errors.New("tlsca: unusable CA")
	// ErrCAExpired is returned by LoadOrCreate when the root certificate
	// in the directory has expired.
	ErrCAExpired = errors.New("tlsca: CA certificate expired")
	// ErrInvalidName is returned for a host, DNS name or URI that cannot go
	// in a certificate.
	ErrInvalidName = errors.New("tlsca: invalid certificate name")
)

// CA is a local root certificate authority kept in a directory. It is safe
// for concurrent use.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	now  func() time.Time

	mu      sync.Mutex
	servers map[string]tls.Certificate // by file stem
}

// LoadOrCreate loads the CA kept in dir, or creates one there (and dir
// itself, mode 0700) if dir holds none: an ECDSA P-256 root named
// CommonName, valid for CAValidity. Concurrent calls, from this process or
// others, agree on one CA.
func LoadOrCreate(dir string) (*CA, error) {
	return loadOrCreate(dir, time.Now)
}

func loadOrCreate(dir string, now func() time.Time) (*CA, error) {
	if dir == "" {
		return nil, errors.New("tlsca: empty CA directory; set the state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsca: create the CA directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	ca := &CA{dir: dir, now: now, servers: map[string]tls.Certificate{}}
	certPath, keyPath := filepath.Join(dir, CertFileName), filepath.Join(dir, KeyFileName)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		if err := ca.create(); err != nil {
			return nil, err
		}
		return ca, nil
	case errors.Is(cerr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s exists but %s does not; restore %s, or delete %s to create a new CA (clients must then trust the new one)",
			ErrInvalidCA, keyPath, certPath, CertFileName, keyPath)
	case errors.Is(kerr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s exists but %s does not; restore %s, or delete %s to create a new CA (clients must then trust the new one)",
			ErrInvalidCA, certPath, keyPath, KeyFileName, certPath)
	case cerr != nil:
		return nil, fmt.Errorf("tlsca: read the CA certificate: %w", cerr)
	case kerr != nil:
		return nil, fmt.Errorf("tlsca: read the CA key: %w", kerr)
	}
	if err := ca.load(certPath, certPEM, keyPath, keyPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

func (ca *CA) create() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tlsca: generate the CA key: %w", err)
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: CommonName, Organization: []string{"agentsso"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("tlsca: create the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("tlsca: parse the new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	// The key first: a crash in between leaves a key without certificate,
	// which LoadOrCreate reports rather than silently replacing.
	if err := writeFileAtomic(filepath.Join(ca.dir, KeyFileName), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(ca.dir, CertFileName), encodeCert(der), 0o644); err != nil {
		return err
	}
	ca.cert, ca.key = cert, key
	return nil
}

func (ca *CA) load(certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	fix := fmt.Sprintf("repair it, or delete %s and %s to create a new CA (clients must then trust the new one)", certPath, keyPath)
	cert, err := parseCert(certPEM)
	if err != nil {
		return fmt.Errorf("%w: %s: %v; %s", ErrInvalidCA, certPath, err, fix)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("%w: %s: %v; %s", ErrInvalidCA, keyPath, err, fix)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: %s is not a CA certificate; %s", ErrInvalidCA, certPath, fix)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("%w: the key in %s does not belong to the certificate in %s; %s", ErrInvalidCA, keyPath, certPath, fix)
	}
	if now := ca.now(); now.After(cert.NotAfter) {
		return fmt.Errorf("%w: %s expired on %s; delete %s and %s to create a new CA (clients must then trust the new one)",
			ErrCAExpired, certPath, cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
	}
	ca.cert, ca.key = cert, key
	return nil
}

// CertFile is the path of the root certificate (PEM), for clients to trust:
// curl --cacert, SSL_CERT_FILE, OIDCCABundlePath, NODE_EXTRA_CA_CERTS, …
func (ca *CA) CertFile() string { return filepath.Join(ca.dir, CertFileName) }

// Pool returns a new pool holding only the root certificate, for a client
// that should trust the emulator (tls.Config.RootCAs) or a server checking
// client certificates (tls.Config.ClientCAs).
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ServerTLSConfig returns a server configuration (TLS 1.2 or later) with a
// certificate from ServerCert(hosts). It does not ask for client
// certificates: for mTLS set ClientAuth, and ClientCAs to Pool() (or leave
// ClientCAs unset and check self-signed certificates yourself).
func (ca *CA) ServerTLSConfig(hosts []string) (*tls.Config, error) {
	cert, err := ca.ServerCert(hosts)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}, nil
}

// ServerCert returns a server certificate (ExtKeyUsageServerAuth, valid for
// LeafValidity) for hosts, which are DNS names (a leading "*." makes a
// wildcard) or IP addresses, without scheme or port. "localhost",
// "127.0.0.1" and "::1" are always added; empty entries are ignored.
//
// The certificate is cached in the CA directory and reused, by this and
// later runs, while it is valid for more than RenewBefore; a missing,
// damaged or expiring one is replaced.
func (ca *CA) ServerCert(hosts []string) (tls.Certificate, error) {
	dns, ips, err := splitHosts(append(slices.Clone(hosts), defaultHosts...))
	if err != nil {
		return tls.Certificate{}, err
	}
	stem := ca.serverStem(dns, ips)

	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.servers[stem]; ok && ca.fresh(c.Leaf) {
		return c, nil
	}
	unlock, err := lockDir(ca.dir)
	if err != nil {
		return tls.Certificate{}, err
	}
	defer unlock()

	certPath := filepath.Join(ca.dir, stem+".pem")
	keyPath := filepath.Join(ca.dir, stem+"-key.pem")
	if c, err := ca.loadServer(certPath, keyPath, dns, ips); err == nil {
		ca.servers[stem] = c
		return c, nil
	}
	c, keyPEM, err := ca.issue(serverTemplate(dns, ips, hosts))
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, encodeCert(c.Leaf.Raw), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	ca.servers[stem] = c
	return c, nil
}

// ClientCert issues a client certificate for mTLS (ExtKeyUsageClientAuth,
// valid for LeafValidity) with subject common name cn, DNS names dns and
// URIs uris (absolute, such as spiffe://example.test/agent/7). At least one
// of them must be given. Client certificates are not cached.
func (ca *CA) ClientCert(cn string, dns []string, uris []string) (tls.Certificate, error) {
	names := make([]string, 0, len(dns))
	for _, d := range dns {
		n, err := dnsName(d)
		if err != nil {
			return tls.Certificate{}, err
		}
		names = append(names, n)
	}
	var us []*url.URL
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() {
			return tls.Certificate{}, fmt.Errorf("%w: URI %q is not an absolute URI; give one like spiffe://example.test/agent/7", ErrInvalidName, s)
		}
		us = append(us, u)
	}
	if cn == "" && len(names) == 0 && len(us) == 0 {
		return tls.Certificate{}, fmt.Errorf("%w: a client certificate needs a common name, a DNS name or a URI", ErrInvalidName)
	}
	c, _, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"agentsso"}},
		DNSNames:    names,
		URIs:        us,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return c, err
}

func serverTemplate(dns []string, ips []net.IP, asked []string) *x509.Certificate {
	cn := "localhost"
	for _, h := range asked {
		if h = strings.TrimSpace(h); h != "" {
			cn = strings.Trim(h, "[]")
			break
		}
	}
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"agentsso"}},
		DNSNames:    dns,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// issue signs a leaf for tmpl with a new P-256 key.
func (ca *CA) issue(tmpl *x509.Certificate) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsca: generate a key: %w", err)
	}
	now := ca.now()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(LeafValidity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsca: sign a certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tlsca: parse a new certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, keyPEM, nil
}

// loadServer loads a cached server certificate and checks it is one this
// CA issued for exactly these names, that matches its key, and that stays
// valid long enough.
func (ca *CA) loadServer(certPath, keyPath string, dns []string, ips []net.IP) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := parseCert(certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, errors.New("key does not match")
	}
	if err := leaf.CheckSignatureFrom(ca.cert); err != nil {
		return tls.Certificate{}, err
	}
	if !slices.Equal(leaf.DNSNames, dns) || !slices.EqualFunc(leaf.IPAddresses, ips, net.IP.Equal) ||
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return tls.Certificate{}, errors.New("different certificate")
	}
	if !ca.fresh(leaf) {
		return tls.Certificate{}, errors.New("expiring")
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// fresh reports whether leaf is valid now and for more than RenewBefore.
func (ca *CA) fresh(leaf *x509.Certificate) bool {
	now := ca.now()
	return !now.Before(leaf.NotBefore) && leaf.NotAfter.Sub(now) > RenewBefore
}

// serverStem names the cache files of the server certificate for these
// names issued by this CA.
func (ca *CA) serverStem(dns []string, ips []net.IP) string {
	h := sha256.New()
	h.Write(ca.cert.Raw)
	for _, d := range dns {
		fmt.Fprintf(h, "\ndns:%s", d)
	}
	for _, ip := range ips {
		fmt.Fprintf(h, "\nip:%s", ip)
	}
	return "server-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// splitHosts sorts hosts into canonical, sorted, de-duplicated DNS names
// and IP addresses.
func splitHosts(hosts []string) ([]string, []net.IP, error) {
	var dns []string
	var ips []net.IP
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			ips = append(ips, ip)
			continue
		}
		n, err := dnsName(h)
		if err != nil {
			return nil, nil, err
		}
		dns = append(dns, n)
	}
	slices.Sort(dns)
	dns = slices.Compact(dns)
	slices.SortFunc(ips, func(a, b net.IP) int { // IPv4 first
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return bytes.Compare(a, b)
	})
	ips = slices.CompactFunc(ips, net.IP.Equal)
	return dns, ips, nil
}

// dnsName checks and lower-cases a DNS name; "*." may lead.
func dnsName(h string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %q is neither an IP address nor a DNS name (%s); give names like api.example.test or 127.0.0.1, without scheme or port",
			ErrInvalidName, h, why)
	}
	if n == "" || len(n) > 253 {
		return bad("empty or too long")
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if l == "" || len(l) > 63 {
			return bad("empty or too long label")
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return bad(fmt.Sprintf("character %q", c))
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("label starts or ends with '-'")
		}
	}
	return n, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsca: encode a key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T key, want ECDSA", k)
	}
	return ek, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tlsca: write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tlsca: write %s: %w", path, err)
	}
	return nil
}
