package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/internal/parts"
	"github.com/agentsso/agentsso/softhsm"
)

// requirePart skips when a real part is missing, naming the package to
// install; AGENTSSO_TEST_STRICT=1 (CI) makes that a failure.
func requirePart(t *testing.T, pkg string, ok bool) {
	t.Helper()
	parts.Require(t, pkg, "apt-get install -y "+pkg, ok)
}

// TestServeWithCustodyBackends serves the default tenants with their
// signing keys in SoftHSM2 and in swtpm, both prepared by agentsso on
// first start, and checks that tokens verify against the JWKS, that a
// restart serves the same kids, and that keys list shows the custody
// attributes read back from the module.
func TestServeWithCustodyBackends(t *testing.T) {
	for _, backend := range []string{"pkcs11", "tpm"} {
		t.Run(backend, func(t *testing.T) {
			switch backend {
			case "pkcs11":
				_, err := softhsm.FindSoftHSM2Module()
				_, uerr := exec.LookPath("softhsm2-util")
				requirePart(t, "softhsm2", err == nil && uerr == nil)
				t.Setenv("SOFTHSM2_CONF", "") // SetupSoftHSM2 sets it for this process
			case "tpm":
				_, err := exec.LookPath("swtpm")
				requirePart(t, "swtpm", err == nil)
			}
			dir := t.TempDir()
			t.Setenv("AGENTSSO_KEYS_BACKEND", backend)
			serveOnce := func() (kid string) {
				f := serveFlags{addr: "127.0.0.1:0", adminAddr: "127.0.0.1:0", stateDir: dir}
				r, out := startFlags(t, f)
				defer func() {
					if err := r.stop(); err != nil {
						t.Error(err)
					}
				}()
				if !strings.Contains(out.String(), "keys in "+backend+" backend") {
					t.Fatalf("serve did not report the %s backend:\n%s", backend, out.String())
				}
				tok := clientCredentials(t, r.url+"/t/acme/token", "support-bot", "support-bot-secret", nil)
				kid = verifyWithJWKS(t, r.url+"/t/acme/jwks", tok)
				if backend == "pkcs11" {
					agentWithHSMKey(t, r)
				}
				return kid
			}
			a := serveOnce()
			b := serveOnce()
			if a != b {
				t.Fatalf("kid changed across restarts: %s then %s", a, b)
			}
			var out bytes.Buffer
			cmd := newKeysCmd()
			cmd.SetOut(&out)
			cmd.SetArgs([]string{"list", "--state-dir", dir, "acme"})
			if err := cmd.ExecuteContext(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), a) || !strings.Contains(out.String(), backend) {
				t.Fatalf("keys list does not show %s in %s:\n%s", a, backend, out.String())
			}
			if backend == "pkcs11" && !strings.Contains(out.String(), "false\ttrue") && !regexpFields(out.String(), "false", "true") {
				t.Fatalf("keys list does not show CKA_EXTRACTABLE=false, CKA_NEVER_EXTRACTABLE=true:\n%s", out.String())
			}
		})
	}
}

func regexpFields(s, a, b string) bool {
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[len(f)-2] == a && f[len(f)-1] == b {
			return true
		}
	}
	return false
}

func clientCredentials(t *testing.T, tokenURL, id, secret string, extra url.Values) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Desc        string `json:"error_description"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body.AccessToken == "" {
		t.Fatalf("token request: HTTP %d %s %s", resp.StatusCode, body.Error, body.Desc)
	}
	return body.AccessToken
}

func verifyWithJWKS(t *testing.T, jwksURL, tok string) string {
	t.Helper()
	resp, err := http.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256})
	if err != nil {
		t.Fatal(err)
	}
	kid := parsed.Headers[0].KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %s not in the JWKS", kid)
	}
	var c josejwt.Claims
	if err := parsed.Claims(keys[0].Key, &c); err != nil {
		t.Fatalf("token does not verify with the published key: %v", err)
	}
	return kid
}

// agentWithHSMKey registers an agent whose private_key_jwt key lives in
// the same SoftHSM2 token and gets a token with an assertion signed there.
func agentWithHSMKey(t *testing.T, r *running) {
	t.Helper()
	ctx := context.Background()
	ks := r.keys
	keys, err := ks.List(ctx, "agent-nightly-bot")
	if err != nil {
		t.Fatal(err)
	}
	var k softhsm.Key
	if len(keys) > 0 {
		k = keys[0]
	} else if k, err = ks.Create(ctx, "agent-nightly-bot", "ES256"); err != nil {
		t.Fatal(err)
	}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.PublicJWK()}})
	_, err = r.srv.UpsertClient("acme", emulator.ClientConfig{
		ID: "nightly-bot", Kind: "agent", AuthMethod: "private_key_jwt", JWKS: string(pub), AssertionAlg: "ES256",
		GrantTypes: []string{"client_credentials"}, RequiredScopes: []string{"postgres:support_db:read"},
		Audiences: []string{"https://mcp.acme.test/postgres"}, DefaultAudience: []string{"https://mcp.acme.test/postgres"},
	})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: &jose.JSONWebKey{Key: cryptosigner.Opaque(k.Signer), KeyID: k.KID, Algorithm: "ES256"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	iss := r.srv.Issuer("acme")
	assertion, err := josejwt.Signed(signer).Claims(josejwt.Claims{
		Issuer: "nightly-bot", Subject: "nightly-bot", Audience: josejwt.Audience{iss},
		Expiry: josejwt.NewNumericDate(time.Now().Add(time.Minute)), IssuedAt: josejwt.NewNumericDate(time.Now()), ID: k.KID + time.Now().String(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	tok := clientCredentials(t, iss+"/token", "nightly-bot", "", url.Values{
		"client_id":             {"nightly-bot"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	})
	if tok == "" {
		t.Fatal("no token for the agent with an HSM-held key")
	}
}

// TestPerTenantBackends keeps acme's keys in swtpm and globex's in the
// default backend, in one emulator.
func TestPerTenantBackends(t *testing.T) {
	_, err := exec.LookPath("swtpm")
	requirePart(t, "swtpm", err == nil)
	dir := t.TempDir()
	cfgFile := dir + "/cfg.yaml"
	yaml := strings.Replace(string(emulator.DefaultYAML()), "  - name: acme\n", "  - name: acme\n    keys_backend: tpm\n", 1)
	yaml = strings.Replace(yaml, "backend: auto", "backend: memory", 1)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	f := serveFlags{config: cfgFile, addr: "127.0.0.1:0", adminAddr: "127.0.0.1:0", stateDir: dir}
	r, out := startFlags(t, f)
	defer r.stop()
	if !strings.Contains(out.String(), "acme=tpm") || !strings.Contains(out.String(), "globex=memory") {
		t.Fatalf("serve does not say which backend each tenant uses:\n%s", out.String())
	}
	keys, err := r.srv.Keys("acme")
	if err != nil || len(keys) == 0 || keys[0].Backend != "tpm" {
		t.Fatalf("acme keys %+v, %v: want a tpm key", keys, err)
	}
	tok := clientCredentials(t, r.url+"/t/acme/token", "support-bot", "support-bot-secret", nil)
	verifyWithJWKS(t, r.url+"/t/acme/jwks", tok)
}
