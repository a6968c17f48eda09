package refgw

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChallengeParamEscaping(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"error_description", `plain text`, `error_description="plain text"`},
		{"error_description", "quote \" backslash \\ newline \r\n tab \t é", `error_description="quote ? backslash ? newline ?? tab ? ??"`},
	} {
		if got := challengeParam(tc.name, tc.value); got != tc.want {
			t.Errorf("challengeParam(%q) = %q, want %q", tc.value, got, tc.want)
		}
	}
	if got, want := quotedParam("resource_metadata", "http://h/a\"b\\c\r\n"), `resource_metadata="http://h/a\"b\\c"`; got != want {
		t.Errorf("quotedParam = %q, want %q", got, want)
	}
}

func TestNormalizeHTU(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"https://GW.example:443/api?x=1#f", "https://gw.example/api", true},
		{"http://gw.example:80", "http://gw.example/", true},
		{"HTTP://[::1]:80/a", "http://[::1]/a", true},
		{"http://127.0.0.1:8080/a", "http://127.0.0.1:8080/a", true},
		{"ftp://gw.example/a", "", false},
		{"http://user@gw.example/a", "", false},
		{"/relative", "", false},
	} {
		got, ok := normalizeHTU(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("normalizeHTU(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseClaims(t *testing.T) {
	c, err := parseClaims([]byte(`{"iss":"i","sub":"s","aud":"a","exp":1e300,"iat":1.5,"scope":"a  b","act":{"sub":"x","act":{"sub":"y"}},"cnf":{"jkt":"k"},"ctx":{"net":["10.1.2.3/8"],"zone":"z"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.exp.Year() != 9999 || c.iat.UnixMilli() != 1500 {
		t.Errorf("exp %v iat %v", c.exp, c.iat)
	}
	if diff := cmp.Diff([]string{"a", "b"}, c.presentedScopes()); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	if c.currentActor() != "x" || len(c.act) != 2 || c.jkt != "k" || c.ctx.nets[0].String() != "10.0.0.0/8" {
		t.Errorf("claims %+v", c)
	}
	deep := `{"sub":"a"}`
	for i := 0; i < maxActDepth; i++ {
		deep = `{"sub":"a","act":` + deep + `}`
	}
	for _, bad := range []string{
		`null`, `[]`, `{"iss":1}`, `{"aud":[1]}`, `{"exp":"1"}`, `{"act":"x"}`, `{"act":{"sub":""}}`,
		`{"act":` + deep + `}`, `{"act":{"SUB":"x"}}`, `{"act":{"sub":"x","act":null}}`, `{"cnf":"x"}`, `{"cnf":{"jkt":""}}`, `{"ctx":{"net":"10.0.0.0/8"}}`, `{"ctx":null}`,
	} {
		if _, err := parseClaims([]byte(bad)); err == nil {
			t.Errorf("parseClaims(%s) accepted", bad)
		}
	}
}

func TestReplayCache(t *testing.T) {
	var c replayCache
	now := time.Unix(1000, 0)
	if !c.add("k", now, now.Add(time.Minute)) || c.add("k", now.Add(30*time.Second), now.Add(time.Minute)) {
		t.Fatal("a jti was accepted twice within its window")
	}
	if !c.add("k", now.Add(2*time.Minute), now.Add(3*time.Minute)) {
		t.Error("an expired entry still blocks")
	}
}

func TestIntrospectionParsing(t *testing.T) {
	c := &tokenClaims{iss: "i", sub: "s", clientID: "agent"}
	for _, tc := range []struct {
		body   string
		active bool
		reason bool
		err    bool
	}{
		{`{"active":true,"iss":"i","sub":"s","client_id":"agent"}`, true, false, false},
		{`{"active":false}`, false, false, false},
		{`{"active":"true"}`, false, false, true},
		{`{}`, false, false, true},
		{`{"active":true,"client_id":"other"}`, true, true, false},
		{`{"active":true,"scope":["a"]}`, false, false, true},
		{`{"active":true,"aud":[1]}`, false, false, true},
	} {
		ans, err := parseIntrospection(json.RawMessage(tc.body), c)
		if (err != nil) != tc.err || (err == nil && (ans.active != tc.active || (ans.reason != "") != tc.reason)) {
			t.Errorf("%s: %+v, %v", tc.body, ans, err)
		}
	}
}
