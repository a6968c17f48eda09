package emulator_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// FuzzDeviceRequest posts arbitrary form bodies to the device
// authorization endpoint, to the token endpoint as a device_code grant,
// and to the verification endpoint: never a panic, never a 5xx.
func FuzzDeviceRequest(f *testing.F) {
	env := emulatortest.New(f, devConfig())
	d := devStart(f, env, devTV, nil)
	seeds := []string{
		"",
		"client_id=tv-agent",
		"client_id=tv-agent&scope=zendesk:tickets:read+offline_access",
		"client_id=tv-agent&resource=https://mcp.acme.test/postgres",
		"client_id=tv-agent&resource=%zz",
		"client_id=tv-agent&scope=&scope=x",
		"client_id=cli-agent&client_secret=cli-agent-secret",
		"client_id=tv-agent&device_code=" + d.DeviceCode,
		"client_id=tv-agent&device_code=&device_code=x",
		"client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=a.b.c",
		"user_code=" + d.UserCode + "&username=alice",
		"user_code=bcdf-ghjk&username=mallory&action=deny",
		"user_code=" + d.UserCode + "&csrf=1.x&username=alice&password=alice-password",
		"client_id=https://127.0.0.1:1/client.json",
		strings.Repeat("a=b&", 1000),
	}
	for _, s := range seeds {
		f.Add(s, uint8(0))
	}
	post := func(t *testing.T, endpoint, body string, basic bool) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth("cli-agent", "cli-agent-secret")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v (did the handler panic?)", endpoint, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 {
			t.Fatalf("POST %s %q: %d %s", endpoint, body, res.StatusCode, b)
		}
	}
	f.Fuzz(func(t *testing.T, body string, mode uint8) {
		basic := mode&1 == 1
		post(t, env.Issuer("acme")+"/device_authorization", body, basic)
		post(t, env.TokenURL("acme"), "grant_type="+url.QueryEscape(devGrant)+"&"+body, basic)
		post(t, env.Issuer("acme")+"/device", body, false)
	})
}
