package conformance

import (
	"errors"
	"strings"
	"testing"
)

const goodScenario = `id: x-test
title: t
kinds: [gateway]
severity: MUST
refs: [{id: RFC1}]
steps:
  - call: {token: {}, expect: accept}
`

func TestParseScenarioErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		field      string
	}{
		{"unknown key", goodScenario + "bogus: 1\n", 8, ""},
		{"unknown step key", strings.Replace(goodScenario, "expect: accept}", "expect: accept, speed: 1}", 1), 7, ""},
		{"bad id", strings.Replace(goodScenario, "id: x-test", "id: X_TEST", 1), 1, "id"},
		{"bad kind", strings.Replace(goodScenario, "[gateway]", "[gateway, toaster]", 1), 3, "kinds[1]"},
		{"bad severity", strings.Replace(goodScenario, "MUST", "MAY", 1), 4, "severity"},
		{"unknown mutation", strings.Replace(goodScenario, "token: {}", "token: {mutate: [alg-nun]}", 1), 7, "steps[0].call.token.mutate[0]"},
		{"bad outcome", strings.Replace(goodScenario, "expect: accept", "expect: maybe", 1), 7, "steps[0].call.expect"},
		{"foreign source", strings.Replace(goodScenario, "token: {}", "token: {}, from: 10.0.0.1", 1), 7, "steps[0].call.from"},
		{"unknown token name", strings.Replace(goodScenario, "token: {}", "token: {use: nope}", 1), 7, "steps[0].call.token.use"},
		{"two actions", goodScenario + "  - {call: {token: {}, expect: accept}, revoke: {token: a}}\n", 8, "steps[1]"},
		{"no refs", strings.Replace(goodScenario, "refs: [{id: RFC1}]\n", "", 1), 0, "refs"},
		{"bad duration", strings.Replace(goodScenario, "token: {}", "token: {lifetime: soon}", 1), 7, ""},
		{"unknown feature", goodScenario + "requires: [telepathy]\n", 8, "requires[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScenario("scenarios/x.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("parsed, want an error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.File != "scenarios/x.yaml" || (tc.line > 0 && pe.Line != tc.line) || (tc.field != "" && pe.Field != tc.field) {
				t.Fatalf("error %q: want line %d field %q (got line %d field %q)", err, tc.line, tc.field, pe.Line, pe.Field)
			}
		})
	}
}

func TestParseTargetErrors(t *testing.T) {
	good := "kind: gateway\nurl: http://127.0.0.1:9/mcp\ntool: t\nupstream: 127.0.0.1:10\n"
	tests := []struct{ name, yaml, field string }{
		{"bad kind", strings.Replace(good, "gateway", "toaster", 1), "kind"},
		{"bad url", strings.Replace(good, "http://127.0.0.1:9/mcp", "ftp://x", 1), "url"},
		{"no tool for mcp", strings.Replace(good, "tool: t\n", "", 1), "tool"},
		{"no upstream", strings.Replace(good, "upstream: 127.0.0.1:10\n", "", 1), "upstream"},
		{"foreign upstream", strings.Replace(good, "127.0.0.1:10", "10.0.0.1:10", 1), "upstream"},
		{"unknown feature", good + "features: [magic]\n", "features[0]"},
		{"zone needed", good + "features: [context-binding]\n", "zone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTarget("target.yaml", []byte(tc.yaml))
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Field != tc.field {
				t.Fatalf("error %v: want a *ParseError for %s", err, tc.field)
			}
		})
	}
	if _, err := ParseTarget("target.yaml", []byte(good+"bogus: 1\n")); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestParseChallenge(t *testing.T) {
	s, p := parseChallenge(`Bearer error="invalid_token", error_description="bad \"x\", y", resource_metadata="http://a/b"`)
	if s != "Bearer" || p["error"] != "invalid_token" || p["error_description"] != `bad "x", y` || p["resource_metadata"] != "http://a/b" {
		t.Fatalf("got %q %v", s, p)
	}
	s, p = parseChallenge(`DPoP algs="ES256 RS256", error=invalid_dpop_proof`)
	if s != "DPoP" || p["error"] != "invalid_dpop_proof" || p["algs"] != "ES256 RS256" {
		t.Fatalf("got %q %v", s, p)
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(goodScenario))
	f.Add([]byte("id: a\nsteps: [{call: {expect: {outcome: reject, status: [401]}}}]"))
	f.Add([]byte(goodAgentScenario))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseScenario("f.yaml", b)
		if err == nil && (s.ID == "" || (len(s.Steps) == 0 && s.Agent == nil)) {
			t.Fatal("a parsed scenario must have an id and steps (or an agent section)")
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	f.Add([]byte("kind: gateway\nurl: http://127.0.0.1:9/mcp\ntool: t\nupstream: 127.0.0.1:10\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseTarget("t.yaml", b)
	})
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer error="invalid_token", scope="a b"`)
	f.Fuzz(func(t *testing.T, s string) { _, _ = parseChallenge(s) })
}
