package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigEnvAndFile(t *testing.T) {
	dir := t.TempDir()
	pin := filepath.Join(dir, "pin")
	if err := os.WriteFile(pin, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENTSSO_ADDR", "127.0.0.1:0")
	t.Setenv("AGENTSSO_KEYS_PKCS11_PIN_FILE", pin)
	t.Setenv("AGENTSSO_AUDIT_SYNC", "ignored")
	cfg, src, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if src != "embedded default" || cfg.Addr != "127.0.0.1:0" || cfg.Keys.PKCS11.PIN != "s3cret" {
		t.Fatalf("got source %q addr %q pin %q", src, cfg.Addr, cfg.Keys.PKCS11.PIN)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "tenants: [{name: a}]\nbogus: 1\n", "bogus"},
		{"invalid value", "tenants: [{name: a, alg: XX}]\n", "tenants[0].alg"},
		{"bad duration", "tenants: [{name: a, lifetimes: {access_token: soon}}]\n", "access_token"},
		{"not yaml", "tenants: [\n", "YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := loadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
	if _, _, err := loadConfig(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("a missing file must be an error")
	}
}

// TestServeStateDirKeepsIdentity starts serve twice on the same state
// directory, with TLS, and checks the issuer's kid and the CA survive.
func TestServeStateDirKeepsIdentity(t *testing.T) {
	dir := t.TempDir()
	kid := func() string {
		f := serveFlags{addr: "127.0.0.1:0", adminAddr: "127.0.0.1:0", stateDir: dir, tls: true}
		r, out := startFlags(t, f)
		defer r.stop()
		if !strings.Contains(out.String(), "listening on https://127.0.0.1:") {
			t.Fatalf("first lines do not name the address:\n%s", out.String())
		}
		pem, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := hc.Get(r.url + "/t/acme/jwks")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
			t.Fatalf("jwks: %v %+v", err, set)
		}
		return set.Keys[0].Kid
	}
	a, b := kid(), kid()
	if a != b {
		t.Fatalf("kid changed across restarts with the same state dir: %s then %s", a, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.jsonl")); err != nil {
		t.Fatalf("audit log not in the state dir: %v", err)
	}
}

func TestTour(t *testing.T) {
	var out bytes.Buffer
	err := runTour(context.Background(), &out, false)
	if err != nil {
		t.Fatalf("tour failed: %v\n%s", err, out.String())
	}
}

// TestServeMTLSListener: --mtls-addr serves the RFC 8705 endpoints on
// their own TLS listener and advertises them in discovery.
func TestServeMTLSListener(t *testing.T) {
	dir := t.TempDir()
	f := serveFlags{addr: "127.0.0.1:0", adminAddr: "127.0.0.1:0", stateDir: dir, mtlsAddr: "127.0.0.1:0"}
	t.Setenv("AGENTSSO_KEYS_BACKEND", "memory")
	r, out := startFlags(t, f)
	defer r.stop()
	if !strings.Contains(out.String(), "mTLS endpoints (RFC 8705) on https://127.0.0.1:") {
		t.Fatalf("serve does not name the mTLS listener:\n%s", out.String())
	}
	resp, err := http.Get(r.url + "/t/acme/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Aliases map[string]string `json:"mtls_endpoint_aliases"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	tokenURL := md.Aliases["token_endpoint"]
	if !strings.HasPrefix(tokenURL, "https://127.0.0.1:") {
		t.Fatalf("mtls_endpoint_aliases %v: want an https token_endpoint", md.Aliases)
	}
	pem, err := os.ReadFile(r.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("support-bot", "support-bot-secret")
	tr, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tr.Body.Close()
	if tr.StatusCode != 200 {
		t.Fatalf("token over the mTLS listener: HTTP %d", tr.StatusCode)
	}
}

// startFlags loads the configuration as serve would with f and starts the
// emulator; the caller stops it. out holds serve's first lines.
func startFlags(t *testing.T, f serveFlags) (*running, *bytes.Buffer) {
	t.Helper()
	cfg, _, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r, err := start(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	return r, &out
}
