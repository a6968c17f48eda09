package emulator_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

const devGrant = "urn:ietf:params:oauth:grant-type:device_code"

var (
	// devTV is a public client on a device without a browser.
	devTV = exchCred{id: "tv-agent", post: true}
	// devCLI is a confidential one.
	devCLI = exchCred{id: "cli-agent", secret: "cli-agent-secret"}
)

// devConfig is the default configuration with two device clients in
// acme.
func devConfig() *emulator.Config {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants {
		if cfg.Tenants[i].Name != "acme" {
			continue
		}
		cfg.Tenants[i].Clients = append(cfg.Tenants[i].Clients,
			emulator.ClientConfig{
				ID: "tv-agent", Name: "Living-room agent", Kind: "agent", AuthMethod: "none",
				GrantTypes:      []string{devGrant, "refresh_token"},
				RequiredScopes:  []string{"zendesk:tickets:read"},
				OptionalScopes:  []string{"offline_access", "zendesk:tickets:write"},
				Audiences:       []string{exchZendesk, exchPostgres},
				DefaultAudience: []string{exchZendesk},
			},
			emulator.ClientConfig{
				ID: "cli-agent", Name: "CLI agent", Kind: "agent", Secret: "cli-agent-secret",
				GrantTypes:      []string{devGrant},
				RequiredScopes:  []string{"postgres:support_db:read"},
				Audiences:       []string{exchPostgres},
				DefaultAudience: []string{exchPostgres},
			},
		)
	}
	return &cfg
}

// devAuthz is RFC 8628 section 3.2's response, or an error.
type devAuthz struct {
	Status                  int    `json:"-"`
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
	Error                   string `json:"error"`
	ErrorDescription        string `json:"error_description"`
}

func devAuthorize(tb testing.TB, env *emulatortest.Env, cred exchCred, form url.Values) devAuthz {
	tb.Helper()
	if form == nil {
		form = url.Values{}
	}
	res, body := exchPostForm(tb, env.Issuer("acme")+"/device_authorization", cred, form)
	var d devAuthz
	if err := json.Unmarshal(body, &d); err != nil {
		tb.Fatalf("device authorization response %d is not JSON: %v: %s", res.StatusCode, err, body)
	}
	d.Status = res.StatusCode
	return d
}

func devStart(tb testing.TB, env *emulatortest.Env, cred exchCred, form url.Values) devAuthz {
	tb.Helper()
	d := devAuthorize(tb, env, cred, form)
	if d.Status != http.StatusOK || d.DeviceCode == "" {
		tb.Fatalf("device authorization: %d %s: %s", d.Status, d.Error, d.ErrorDescription)
	}
	return d
}

func devPoll(tb testing.TB, env *emulatortest.Env, cred exchCred, deviceCode string) exchResp {
	tb.Helper()
	return exchToken(tb, env, "acme", cred, url.Values{"grant_type": {devGrant}, "device_code": {deviceCode}})
}

func devWantError(tb testing.TB, r exchResp, code string) {
	tb.Helper()
	if r.Status != http.StatusBadRequest || r.Error != code {
		tb.Fatalf("got %d %s (%s), want 400 %s", r.Status, r.Error, r.ErrorDescription, code)
	}
}

// devHeadless approves (or denies) as a scripted user without a page.
func devHeadless(tb testing.TB, env *emulatortest.Env, form url.Values) (int, map[string]any) {
	tb.Helper()
	res, err := http.PostForm(env.Issuer("acme")+"/device", form)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		tb.Fatalf("headless device answer %d is not JSON: %v", res.StatusCode, err)
	}
	return res.StatusCode, out
}

// devAdmin calls the admin API.
func devAdmin(tb testing.TB, env *emulatortest.Env, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, env.AdminURL+"/admin/v1"+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func TestDeviceGrantHeadlessApproval(t *testing.T) {
	env := emulatortest.New(t, devConfig())
	clock := env.Server.Clock("acme")
	clock.Freeze(time.Time{})

	d := devStart(t, env, devTV, url.Values{"scope": {"zendesk:tickets:read offline_access"}})
	if !userCodeRE.MatchString(d.UserCode) {
		t.Errorf("user_code %q is not 8 consonants as XXXX-XXXX", d.UserCode)
	}
	wantURI := env.Issuer("acme") + "/device"
	got := devAuthz{VerificationURI: d.VerificationURI, VerificationURIComplete: d.VerificationURIComplete, ExpiresIn: d.ExpiresIn, Interval: d.Interval}
	want := devAuthz{VerificationURI: wantURI, VerificationURIComplete: wantURI + "?user_code=" + d.UserCode, ExpiresIn: 600, Interval: 5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("device authorization response (-want +got):\n%s", diff)
	}

	devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "authorization_pending")

	// The user types the code in lower case without the dash.
	typed := strings.ToLower(strings.ReplaceAll(d.UserCode, "-", ""))
	status, out := devHeadless(t, env, url.Values{"user_code": {typed}, "username": {"alice"}})
	if status != http.StatusOK || out["status"] != "approved" || out["subject"] != "user-alice" {
		t.Fatalf("headless approval: %d %v", status, out)
	}

	clock.Advance(5 * time.Second)
	r := devPoll(t, env, devTV, d.DeviceCode)
	exchOK(t, r)
	if r.RefreshToken == "" {
		t.Error("no refresh token, although offline_access was granted")
	}
	c := exchClaims(t, r.AccessToken)
	gotClaims := struct {
		Sub, ClientID, Scope string
		Aud                  []string
	}{c.Subject, c.ClientID, c.Scope, c.Audience}
	wantClaims := gotClaims
	wantClaims.Sub, wantClaims.ClientID, wantClaims.Scope, wantClaims.Aud = "user-alice", "tv-agent", "zendesk:tickets:read offline_access", []string{exchZendesk}
	if diff := cmp.Diff(wantClaims, gotClaims); diff != "" {
		t.Errorf("access token claims (-want +got):\n%s", diff)
	}
	if c.AuthTime == 0 {
		t.Error("auth_time missing")
	}

	// The code is used up.
	clock.Advance(5 * time.Second)
	devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "invalid_grant")

	// The refresh token works for the same user.
	rr := exchToken(t, env, "acme", devTV, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.RefreshToken}})
	exchOK(t, rr)
	if got := exchClaims(t, rr.AccessToken).Subject; got != "user-alice" {
		t.Errorf("refreshed token's sub = %q, want user-alice", got)
	}
}

func TestDeviceGrantAdminApproval(t *testing.T) {
	env := emulatortest.New(t, devConfig())
	env.Server.Clock("acme").Freeze(time.Time{})
	d := devStart(t, env, devCLI, nil)

	status, body := devAdmin(t, env, http.MethodGet, "/tenants/acme/device", nil)
	var pending []emulator.DeviceCode
	if status != http.StatusOK || json.Unmarshal(body, &pending) != nil {
		t.Fatalf("list: %d %s", status, body)
	}
	want := []emulator.DeviceCode{{UserCode: d.UserCode, ClientID: "cli-agent", Scopes: []string{"postgres:support_db:read"}, Audience: []string{exchPostgres}, Status: "pending", Interval: 5}}
	if diff := cmp.Diff(want, pending, cmpopts.IgnoreFields(emulator.DeviceCode{}, "CreatedAt", "ExpiresAt")); diff != "" {
		t.Errorf("pending device codes (-want +got):\n%s", diff)
	}
	if strings.Contains(string(body), d.DeviceCode) {
		t.Error("the admin list shows the device_code, the client's secret")
	}

	status, body = devAdmin(t, env, http.MethodPost, "/tenants/acme/device/"+d.UserCode+"/approve", map[string]string{"username": "bob"})
	if status != http.StatusOK || !strings.Contains(string(body), `"status":"approved"`) {
		t.Fatalf("approve: %d %s", status, body)
	}
	// Deciding twice is a conflict; an unknown code is not found.
	if status, body = devAdmin(t, env, http.MethodPost, "/tenants/acme/device/"+d.UserCode+"/deny", nil); status != http.StatusConflict {
		t.Errorf("deny after approve: %d %s, want 409", status, body)
	}
	if status, body = devAdmin(t, env, http.MethodPost, "/tenants/acme/device/BBBB-BBBB/approve", map[string]string{"username": "bob"}); status != http.StatusNotFound {
		t.Errorf("approve unknown code: %d %s, want 404", status, body)
	}

	r := devPoll(t, env, devCLI, d.DeviceCode)
	exchOK(t, r)
	if c := exchClaims(t, r.AccessToken); c.Subject != "user-bob" || c.ClientID != "cli-agent" {
		t.Errorf("sub %q client_id %q, want user-bob cli-agent", c.Subject, c.ClientID)
	}
	if r.RefreshToken != "" {
		t.Error("a refresh token without offline_access")
	}

	// The Go methods.
	d2 := devStart(t, env, devCLI, nil)
	if v, err := env.Server.DenyDevice("acme", d2.UserCode); err != nil || v.Status != "denied" {
		t.Fatalf("DenyDevice: %+v %v", v, err)
	}
	env.Server.Clock("acme").Advance(5 * time.Second)
	devWantError(t, devPoll(t, env, devCLI, d2.DeviceCode), "access_denied")
	all, err := env.Server.DeviceCodes("acme", true)
	if err != nil || len(all) != 2 {
		t.Errorf("DeviceCodes(all) = %d codes, %v; want 2", len(all), err)
	}
}

func TestDeviceGrantPollingErrors(t *testing.T) {
	env := emulatortest.New(t, devConfig())
	clock := env.Server.Clock("acme")
	clock.Freeze(time.Time{})

	t.Run("slow_down raises the interval by 5s", func(t *testing.T) {
		d := devStart(t, env, devTV, nil)
		devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "authorization_pending")
		clock.Advance(2 * time.Second)
		r := devPoll(t, env, devTV, d.DeviceCode)
		devWantError(t, r, "slow_down")
		if !strings.Contains(r.ErrorDescription, "interval is now 10 seconds") {
			t.Errorf("slow_down description %q does not give the new interval", r.ErrorDescription)
		}
		// 5 s is no longer enough: the interval is 10 s.
		clock.Advance(5 * time.Second)
		devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "slow_down")
		clock.Advance(15 * time.Second)
		devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "authorization_pending")
		list, _ := env.Server.DeviceCodes("acme", false)
		for _, c := range list {
			if c.UserCode == d.UserCode && c.Interval != 15 {
				t.Errorf("interval = %d, want 15", c.Interval)
			}
		}
	})
	t.Run("expired_token by the tenant clock", func(t *testing.T) {
		d := devStart(t, env, devTV, nil)
		clock.Advance(10*time.Minute + time.Second)
		devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "expired_token")
		// Too late to approve, too.
		if status, _ := devHeadless(t, env, url.Values{"user_code": {d.UserCode}, "username": {"alice"}}); status != http.StatusBadRequest {
			t.Errorf("approving an expired code: %d, want 400", status)
		}
	})
	t.Run("access_denied by a deny:true user", func(t *testing.T) {
		d := devStart(t, env, devTV, nil)
		status, out := devHeadless(t, env, url.Values{"user_code": {d.UserCode}, "username": {"mallory"}})
		if status != http.StatusOK || out["status"] != "denied" {
			t.Fatalf("mallory: %d %v, want denied", status, out)
		}
		devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "access_denied")
	})
	t.Run("access_denied by action=deny", func(t *testing.T) {
		d := devStart(t, env, devTV, nil)
		if status, out := devHeadless(t, env, url.Values{"user_code": {d.UserCode}, "username": {"alice"}, "action": {"deny"}}); status != http.StatusOK || out["status"] != "denied" {
			t.Fatalf("deny: %d %v", status, out)
		}
		devWantError(t, devPoll(t, env, devTV, d.DeviceCode), "access_denied")
	})

	other := devStart(t, env, devCLI, nil)
	cases := []struct {
		name string
		cred exchCred
		form url.Values
		want string
	}{
		{"unknown device code", devTV, url.Values{"device_code": {"not-a-code"}}, "invalid_grant"},
		{"another client's code", devTV, url.Values{"device_code": {other.DeviceCode}}, "invalid_grant"},
		{"no device code", devTV, url.Values{}, "invalid_request"},
		{"device code twice", devTV, url.Values{"device_code": {"a", "b"}}, "invalid_request"},
		{"client without the grant", exchSupport, url.Values{"device_code": {other.DeviceCode}}, "unauthorized_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("grant_type", devGrant)
			r := exchToken(t, env, "acme", tc.cred, tc.form)
			if r.Error != tc.want || r.Status >= 500 {
				t.Errorf("got %d %s (%s), want %s", r.Status, r.Error, r.ErrorDescription, tc.want)
			}
		})
	}
}

func TestDeviceAuthorizationErrors(t *testing.T) {
	env := emulatortest.New(t, devConfig())
	cases := []struct {
		name   string
		cred   exchCred
		form   url.Values
		status int
		want   string
	}{
		{"scope not the client's", devTV, url.Values{"scope": {"postgres:support_db:read"}}, 400, "invalid_scope"},
		{"resource not the client's", devTV, url.Values{"resource": {exchUpstream}}, 400, "invalid_target"},
		{"resource not a URI", devTV, url.Values{"resource": {"zendesk"}}, 400, "invalid_target"},
		{"scope twice", devTV, url.Values{"scope": {"a", "b"}}, 400, "invalid_request"},
		{"wrong secret", exchCred{id: "cli-agent", secret: "nope"}, nil, 401, "invalid_client"},
		{"unknown client", exchCred{id: "nobody", post: true}, nil, 401, "invalid_client"},
		{"client without the grant", exchSupport, nil, 400, "unauthorized_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := devAuthorize(t, env, tc.cred, tc.form)
			if d.Status != tc.status || d.Error != tc.want {
				t.Errorf("got %d %s (%s), want %d %s", d.Status, d.Error, d.ErrorDescription, tc.status, tc.want)
			}
		})
	}
	// A named resource narrows to the client's other audience.
	d := devStart(t, env, devTV, url.Values{"resource": {exchPostgres}})
	list, _ := env.Server.DeviceCodes("acme", false)
	for _, c := range list {
		if c.UserCode == d.UserCode && !cmp.Equal(c.Audience, []string{exchPostgres}) {
			t.Errorf("audience = %v, want [%s]", c.Audience, exchPostgres)
		}
	}
}

// TestDevicePage approves on the HTML page, as a person would.
func TestDevicePage(t *testing.T) {
	env := emulatortest.New(t, devConfig())
	d := devStart(t, env, devTV, nil)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}

	page := func(res *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("page: %d %s", res.StatusCode, b)
		}
		return string(b)
	}
	html := page(browser.Get(d.VerificationURIComplete))
	if !strings.Contains(html, "Living-room agent") || !strings.Contains(html, d.UserCode) {
		t.Fatalf("the page does not show the client and the code:\n%s", html)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(html)
	if m == nil {
		t.Fatal("no form token on the page")
	}
	form := url.Values{"user_code": {d.UserCode}, "csrf": {m[1]}, "username": {"alice"}, "password": {"wrong"}, "action": {"approve"}}
	if html = page(browser.PostForm(d.VerificationURI, form)); !strings.Contains(html, "wrong password") {
		t.Fatalf("a wrong password was not refused:\n%s", html)
	}
	// Without the browser's cookie the form token is refused.
	if res, err := http.PostForm(d.VerificationURI, form); err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("form without its cookie: %v %v, want 403", res.StatusCode, err)
	}
	form.Set("password", "alice-password")
	if html = page(browser.PostForm(d.VerificationURI, form)); !strings.Contains(html, "connected") {
		t.Fatalf("approval failed:\n%s", html)
	}
	r := devPoll(t, env, devTV, d.DeviceCode)
	exchOK(t, r)
	if sub := exchClaims(t, r.AccessToken).Subject; sub != "user-alice" {
		t.Errorf("sub = %q, want user-alice", sub)
	}
}

func TestDeviceDiscovery(t *testing.T) {
	env := emulatortest.New(t, devConfig())
	res, err := http.Get(env.Issuer("acme") + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var md struct {
		DeviceEndpoint string   `json:"device_authorization_endpoint"`
		Grants         []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(res.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	if md.DeviceEndpoint != env.Issuer("acme")+"/device_authorization" {
		t.Errorf("device_authorization_endpoint = %q", md.DeviceEndpoint)
	}
	for _, g := range []string{devGrant, "urn:ietf:params:oauth:grant-type:jwt-bearer"} {
		if !strings.Contains(strings.Join(md.Grants, " "), g) {
			t.Errorf("grant_types_supported lacks %s: %v", g, md.Grants)
		}
	}
}

// TestDeviceInteropOAuth2 drives the grant with golang.org/x/oauth2's
// device flow client, which waits the interval before polling (5 s).
func TestDeviceInteropOAuth2(t *testing.T) {
	if testing.Short() {
		t.Skip("waits the 5 s polling interval")
	}
	env := emulatortest.New(t, devConfig())
	conf := &oauth2.Config{
		ClientID: "tv-agent",
		Scopes:   []string{"zendesk:tickets:read"},
		Endpoint: oauth2.Endpoint{DeviceAuthURL: env.Issuer("acme") + "/device_authorization", TokenURL: env.TokenURL("acme"), AuthStyle: oauth2.AuthStyleInParams},
	}
	ctx := t.Context()
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Server.ApproveDevice("acme", da.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatal(err)
	}
	if sub := exchClaims(t, tok.AccessToken).Subject; sub != "user-alice" {
		t.Errorf("sub = %q, want user-alice", sub)
	}
}
