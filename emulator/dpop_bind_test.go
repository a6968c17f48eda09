package emulator_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// dpopJKTCode gets a code of clientID bound to jkt by the dpop_jkt
// authorization request parameter (RFC 9449 section 10).
func dpopJKTCode(t *testing.T, env *emulatortest.Env, clientID, jkt string) url.Values {
	t.Helper()
	code, verifier := azCode(t, env, clientID, func(q url.Values) { q.Set("dpop_jkt", jkt) })
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {azCallback}, "code_verifier": {verifier}}
}

// TestDPoPAuthorizationCodeJKT: a code asked for with dpop_jkt is bound
// to that key (RFC 9449 section 10): redeeming it with a proof by another
// key is invalid_grant, without a proof invalid_dpop_proof, and with a
// proof by the key it gives a token bound to the key.
func TestDPoPAuthorizationCodeJKT(t *testing.T) {
	env, rec := azStart(t, nil)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	other := emulatortest.NewDPoPKey(t, jose.ES256)
	for _, clientID := range []string{"acme-copilot", "acme-portal"} { // public and confidential
		t.Run(clientID, func(t *testing.T) {
			r := dpopPost(t, env, "token", clientID, dpopJKTCode(t, env, clientID, k.JKT()), dpopTokenProof(t, env, other, nil))
			azWantError(t, r, http.StatusBadRequest, "invalid_grant")
			if d, _ := r.json(t)["error_description"].(string); !strings.Contains(d, "dpop_jkt") || !strings.Contains(d, k.JKT()) || !strings.Contains(d, other.JKT()) {
				t.Errorf("error_description %q: want it to name dpop_jkt, the bound key and the proof's", d)
			}
			if ev := rec.last(t, "token"); ev.Decision != "deny" || !strings.HasPrefix(ev.Reason, "invalid_grant") {
				t.Errorf("audit event %+v: want deny invalid_grant", ev)
			}

			azWantError(t, dpopPost(t, env, "token", clientID, dpopJKTCode(t, env, clientID, k.JKT())), http.StatusBadRequest, "invalid_dpop_proof")

			form := dpopJKTCode(t, env, clientID, k.JKT())
			toks := wantDPoPToken(t, env, dpopPost(t, env, "token", clientID, form, dpopTokenProof(t, env, k, nil)), k)
			if toks.refresh == "" {
				t.Error("no refresh token")
			}
			// The code is spent now, even for its key.
			azWantError(t, dpopPost(t, env, "token", clientID, form, dpopTokenProof(t, env, k, nil)), http.StatusBadRequest, "invalid_grant")
		})
	}
	t.Run("admin record", func(t *testing.T) {
		st, err := env.Server.DPoP("acme")
		if err != nil {
			t.Fatal(err)
		}
		var results []string
		for _, p := range st.Proofs {
			if p.JKT == other.JKT() {
				results = append(results, p.Result)
			}
		}
		if diff := cmp.Diff([]string{"invalid_grant", "invalid_grant"}, results); diff != "" {
			t.Errorf("recorded results of the other key's proofs (-want +got):\n%s", diff)
		}
	})
	t.Run("without dpop_jkt any key binds", func(t *testing.T) {
		code, verifier := azCode(t, env, "acme-copilot", nil)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {azCallback}, "code_verifier": {verifier}}
		wantDPoPToken(t, env, dpopPost(t, env, "token", "acme-copilot", form, dpopTokenProof(t, env, other, nil)), other)
	})
	t.Run("on the sign-in page", func(t *testing.T) {
		// dpop_jkt rides through the page's hidden fields to the code.
		q := azParams("acme-copilot", "unused-verifier-0123456789abcdef0123456789ab")
		q.Del("login_hint")
		q.Set("dpop_jkt", k.JKT())
		page := azAuthorize(t, env, "acme", q)
		if page.Status != http.StatusOK {
			t.Fatalf("sign-in page: HTTP %d %s", page.Status, page.Body)
		}
		if got := azPageForm(t, page.Body).Get("dpop_jkt"); got != k.JKT() {
			t.Errorf("hidden dpop_jkt %q, want %q", got, k.JKT())
		}
	})
}

// TestDPoPAuthorizationCodeJKTRefused: a malformed dpop_jkt is refused
// at the authorization endpoint, by a redirect naming the parameter.
func TestDPoPAuthorizationCodeJKTRefused(t *testing.T) {
	env := emulatortest.New(t, nil)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	for _, tt := range []struct {
		name string
		vals []string
	}{
		{"empty", []string{""}},
		{"too short", []string{"abc"}},
		{"padded", []string{k.JKT() + "="}},
		{"standard base64", []string{strings.Repeat("+", 43)}},
		{"SHA-384 size", []string{strings.Repeat("A", 64)}},
		{"twice", []string{k.JKT(), k.JKT()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := azParams("acme-copilot", "unused-verifier-0123456789abcdef0123456789ab")
			q["dpop_jkt"] = tt.vals
			_, rq := azAuthorize(t, env, "acme", q).location(t)
			if rq.Get("error") != "invalid_request" || !strings.Contains(rq.Get("error_description"), "dpop_jkt") || rq.Get("code") != "" {
				t.Errorf("redirect %v: want error=invalid_request naming dpop_jkt, and no code", rq)
			}
		})
	}
}

// dpopNonceToken gets a DPoP-bound token for alice from a tenant that
// requires nonces: the first proof is answered use_dpop_nonce, the retry
// with the nonce redeems the same code (the nonce is checked before the
// code's PKCE data is spent).
func dpopNonceToken(t *testing.T, env *emulatortest.Env, k *emulatortest.DPoPKey) string {
	t.Helper()
	code, verifier := azCode(t, env, "acme-copilot", nil)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {azCallback}, "code_verifier": {verifier}}
	r := dpopPost(t, env, "token", "acme-copilot", form, dpopTokenProof(t, env, k, nil))
	azWantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
	p := dpopTokenProof(t, env, k, &emulatortest.DPoPOptions{Claims: map[string]any{"nonce": r.Header.Get("DPoP-Nonce")}})
	return wantDPoPToken(t, env, dpopPost(t, env, "token", "acme-copilot", form, p), k).access
}

// TestDPoPUserinfoNonce: with nonces required, the userinfo endpoint
// answers a proof without the current nonce with 401, a DPoP challenge
// error="use_dpop_nonce" and the nonce in DPoP-Nonce, and accepts the
// proof retried with it (RFC 9449 section 9).
func TestDPoPUserinfoNonce(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*emulator.Config)
	}{
		{"tenant", func(c *emulator.Config) { c.Tenants[0].DPoP.RequireNonce = true }},
		{"client", func(c *emulator.Config) {
			for i := range c.Tenants[0].Clients {
				if c.Tenants[0].Clients[i].ID == "acme-copilot" {
					c.Tenants[0].Clients[i].DPoP.RequireNonce = true
				}
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := emulator.DefaultConfig()
			tt.set(&cfg)
			env, rec := azStart(t, &cfg)
			k := emulatortest.NewDPoPKey(t, jose.ES256)
			tok := dpopNonceToken(t, env, k)
			ui := env.Issuer("acme") + "/userinfo"
			proof := func(nonce string) string {
				c := map[string]any{"ath": emulatortest.ATH(tok)}
				if nonce != "" {
					c["nonce"] = nonce
				}
				return k.Proof(t, "GET", ui, dpopNow(env), &emulatortest.DPoPOptions{Claims: c})
			}
			wantNonceChallenge := func(r azReply) string {
				t.Helper()
				ch := r.Header.Get("WWW-Authenticate")
				if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "use_dpop_nonce" ||
					!strings.HasPrefix(ch, "DPoP ") || !strings.Contains(ch, `error="use_dpop_nonce"`) {
					t.Fatalf("HTTP %d %s, WWW-Authenticate %q: want 401 with a DPoP use_dpop_nonce challenge", r.Status, r.Body, ch)
				}
				n := r.Header.Get("DPoP-Nonce")
				if n == "" {
					t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
				}
				if ev := rec.last(t, "userinfo"); ev.Decision != "deny" || ev.Status != 401 || !strings.HasPrefix(ev.Reason, "use_dpop_nonce") {
					t.Errorf("audit event %+v: want deny 401 use_dpop_nonce", ev)
				}
				return n
			}

			nonce := wantNonceChallenge(userinfoReq(t, env, "GET", "DPoP "+tok, proof("")))
			if got := wantNonceChallenge(userinfoReq(t, env, "GET", "DPoP "+tok, proof("not-the-nonce"))); got != nonce {
				t.Errorf("DPoP-Nonce %q, want the current %q", got, nonce)
			}
			r := userinfoReq(t, env, "GET", "DPoP "+tok, proof(nonce))
			if r.Status != http.StatusOK || r.json(t)["sub"] != "user-alice" {
				t.Fatalf("retry with the nonce: HTTP %d %s, want alice's userinfo", r.Status, r.Body)
			}
			if r.Header.Get("DPoP-Nonce") != nonce {
				t.Errorf("success: DPoP-Nonce %q, want %q for the next proof", r.Header.Get("DPoP-Nonce"), nonce)
			}
			// The nonce does not replace the other checks.
			p := proof(nonce)
			if r := userinfoReq(t, env, "GET", "DPoP "+tok, p); r.Status != http.StatusOK {
				t.Fatalf("HTTP %d %s", r.Status, r.Body)
			}
			if r := userinfoReq(t, env, "GET", "DPoP "+tok, p); r.Status != 401 || r.json(t)["error"] != "invalid_dpop_proof" {
				t.Errorf("replayed proof with a good nonce: HTTP %d %s, want 401 invalid_dpop_proof", r.Status, r.Body)
			}
			other := emulatortest.NewDPoPKey(t, jose.ES256)
			op := other.Proof(t, "GET", ui, dpopNow(env), &emulatortest.DPoPOptions{Claims: map[string]any{"ath": emulatortest.ATH(tok), "nonce": nonce}})
			if r := userinfoReq(t, env, "GET", "DPoP "+tok, op); r.Status != 401 || r.json(t)["error"] != "invalid_dpop_proof" {
				t.Errorf("another key with a good nonce: HTTP %d %s, want 401 invalid_dpop_proof", r.Status, r.Body)
			}

			st, err := env.Server.DPoP("acme")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range st.Proofs {
				if p.Endpoint == "userinfo" {
					got = append(got, p.Result)
				}
			}
			want := []string{"use_dpop_nonce", "use_dpop_nonce", "accepted", "accepted", "invalid_dpop_proof", "invalid_dpop_proof"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("userinfo proofs recorded (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("not required", func(t *testing.T) {
		// The control: without the policy a proof needs no nonce, and
		// no DPoP-Nonce is handed out.
		env := emulatortest.New(t, nil)
		k := emulatortest.NewDPoPKey(t, jose.ES256)
		tok := wantDPoPToken(t, env, dpopCode(t, env, "acme-copilot", k), k).access
		p := k.Proof(t, "GET", env.Issuer("acme")+"/userinfo", dpopNow(env), &emulatortest.DPoPOptions{Claims: map[string]any{"ath": emulatortest.ATH(tok)}})
		r := userinfoReq(t, env, "GET", "DPoP "+tok, p)
		if r.Status != http.StatusOK || r.Header.Get("DPoP-Nonce") != "" {
			t.Errorf("HTTP %d DPoP-Nonce %q, want 200 without a nonce", r.Status, r.Header.Get("DPoP-Nonce"))
		}
	})
}
