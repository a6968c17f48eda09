package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance"
	"github.com/google/go-cmp/cmp"
)

// The JUnit shape as a CI reporter reads it, declared independently of
// the writer's types.
type xSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Suites   []xSuite `xml:"testsuite"`
}

type xSuite struct {
	Name     string  `xml:"name,attr"`
	Tests    int     `xml:"tests,attr"`
	Failures int     `xml:"failures,attr"`
	Errors   int     `xml:"errors,attr"`
	Skipped  int     `xml:"skipped,attr"`
	Time     float64 `xml:"time,attr"`
	Props    []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"properties>property"`
	Cases []xCase `xml:"testcase"`
}

type xCase struct {
	Classname string  `xml:"classname,attr"`
	Name      string  `xml:"name,attr"`
	Time      float64 `xml:"time,attr"`
	Failure   *struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	SystemOut string `xml:"system-out"`
}

func parseJUnit(t *testing.T, r *conformance.Report) xSuites {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, r); err != nil {
		t.Fatal(err)
	}
	var doc xSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("the JUnit XML does not parse: %v\n%s", err, buf.String())
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("%d test suites, want 1", len(doc.Suites))
	}
	return doc
}

func TestJUnitParsesAndCounts(t *testing.T) {
	r := fixture()
	doc := parseJUnit(t, r)
	s := doc.Suites[0]

	// Count what the test cases say, as a reporter would.
	var fail, errs, skip int
	kinds := map[string]string{}
	for _, c := range s.Cases {
		n := 0
		kind := "pass"
		if c.Failure != nil {
			fail, n, kind = fail+1, n+1, "failure:"+c.Failure.Type
		}
		if c.Error != nil {
			errs, n, kind = errs+1, n+1, "error"
		}
		if c.Skipped != nil {
			skip, n, kind = skip+1, n+1, "skipped"
		}
		if n > 1 {
			t.Errorf("test case %q has %d outcomes", c.Name, n)
		}
		id, _, _ := strings.Cut(c.Name, ": ")
		kinds[id] = kind
	}
	if s.Tests != len(r.Results) || len(s.Cases) != len(r.Results) {
		t.Errorf("tests=%d with %d test cases, want %d", s.Tests, len(s.Cases), len(r.Results))
	}
	if s.Failures != fail || s.Errors != errs || s.Skipped != skip {
		t.Errorf("suite says failures=%d errors=%d skipped=%d; its test cases say %d, %d, %d", s.Failures, s.Errors, s.Skipped, fail, errs, skip)
	}
	if doc.Tests != s.Tests || doc.Failures != s.Failures || doc.Errors != s.Errors || doc.Skipped != s.Skipped {
		t.Errorf("<testsuites> counts %d/%d/%d/%d differ from the suite's", doc.Tests, doc.Failures, doc.Errors, doc.Skipped)
	}
	want := map[string]string{
		"rs-baseline-control":              "pass",
		"jwt-alg-none":                     "pass",
		"jwt-alg-confusion-hs256":          "pass",
		"jwt-bad-signature":                "pass",
		"jwt-temporal":                     "failure:MUST",
		"iss-mismatch":                     "failure:stale-expected-failure",
		"tenant-issuer-confusion":          "pass",
		"aud-wrong-resource":               "skipped",
		"scope-insufficient":               "failure:MUST",
		"token-passthrough":                "failure:MUST",
		"revoked-token-rejected":           "pass",
		"jwt-header-key-injection":         "error",
		"dpop-bound-as-bearer":             "skipped",
		"context-binding-replay":           "skipped",
		"jwt-key-rotation":                 "pass",
		"audit-record-fields":              "skipped",
		"agent-no-token-to-other-audience": "failure:MUST",
		"agent-handles-401":                "pass",
	}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("test case outcomes (-want +got):\n%s", diff)
	}
	if s.Name != "agentsso conformance: acme-mcp-gateway" {
		t.Errorf("suite name = %q", s.Name)
	}
	if s.Time != 19.83 {
		t.Errorf("suite time = %v, want 19.83", s.Time)
	}

	byID := map[string]xCase{}
	for _, c := range s.Cases {
		id, _, _ := strings.Cut(c.Name, ": ")
		byID[id] = c
	}
	if c := byID["scope-insufficient"]; c.Classname != "agentsso.MUST" || c.Time != 0.022 ||
		!strings.Contains(c.Failure.Text, `WWW-Authenticate: Bearer realm="acme-mcp", error="invalid_token"`) {
		t.Errorf("scope-insufficient: classname %q, time %v, failure text:\n%s", c.Classname, c.Time, c.Failure.Text)
	}
	if c := byID["revoked-token-rejected"]; !strings.HasPrefix(c.SystemOut, "WARN: the revoked token was still accepted") ||
		!strings.Contains(c.SystemOut, "figure revocation_delay_ms=12400") {
		t.Errorf("warn system-out = %q", c.SystemOut)
	}
	if c := byID["aud-wrong-resource"]; !strings.HasPrefix(c.Skipped.Message, "expected failure") || strings.Count(c.Skipped.Message, "expected failure") != 1 {
		t.Errorf("expected failure's skipped message = %q", c.Skipped.Message)
	}
	if c := byID["dpop-bound-as-bearer"]; c.Skipped.Message != "the target does not declare the dpop feature" || c.Classname != "agentsso.MUST-if-declared" {
		t.Errorf("skip = %+v", c)
	}

	// An agent scenario's trace is in <system-out>, one line per request,
	// grouped per run; a scenario without a trace has none.
	if c := byID["agent-no-token-to-other-audience"]; !strings.HasPrefix(c.SystemOut, "Agent trace: 30 requests, 1 answered with an error\n") ||
		!strings.Contains(c.SystemOut, "\n  19. +119 ms agent → decoy POST /mcp (initialize) 200 · token access token #1 (aud rs1) (jti MOJJOaiA1JAJa4autGDzBw, sha256 39fd81ce8fa3b2d0)\n") ||
		!strings.Contains(c.SystemOut, "\n  11. +101 ms agent → rs2 POST /mcp (initialize) 401 · token access token #1 (aud rs1) (jti MOJJOaiA1JAJa4autGDzBw, sha256 39fd81ce8fa3b2d0) · invalid_token: the access token is not for this resource\n") {
		t.Errorf("agent failure's system-out:\n%s", c.SystemOut)
	}
	if c := byID["agent-handles-401"]; !strings.Contains(c.SystemOut, "Agent trace: 36 requests in 2 runs, 4 answered with an error\n"+
		`Run "one rejection": 17 requests, 1 answered with an error, 134 ms`+"\n  1. +0 ms agent → rs1 POST /mcp (initialize) 401\n") ||
		!strings.Contains(c.SystemOut, "\n"+`Run "rejected from the second call on": 19 requests, 3 answered with an error, 64 ms`+"\n") {
		t.Errorf("agent pass's system-out:\n%s", c.SystemOut)
	}
	if c := byID["jwt-alg-none"]; c.SystemOut != "" {
		t.Errorf("a gateway scenario has system-out %q", c.SystemOut)
	}

	props := map[string]string{}
	for _, p := range s.Props {
		props[p.Name] = p.Value
	}
	for name, want := range map[string]string{
		"agentsso.version":  "v0.3.0",
		"catalogue.hash":    r.Catalogue.Hash,
		"target.name":       "acme-mcp-gateway",
		"target.url":        "http://127.0.0.1:18080/mcp",
		"idp.tenant.acme":   "issuer=http://127.0.0.1:9400/t/acme backend=pkcs11 kid=acme-es256-2026-03 alg=ES256",
		"idp.tenant.globex": "issuer=http://127.0.0.1:9400/t/globex backend=memory kid=globex-rs256-1 alg=RS256",
		"verdict":           "fail",
	} {
		if props[name] != want {
			t.Errorf("property %s = %q, want %q", name, props[name], want)
		}
	}
}

// In a strict run a warning fails the run, so JUnit shows it as a failure.
func TestJUnitStrictWarn(t *testing.T) {
	r := fixture()
	r.Strict = true
	for _, c := range parseJUnit(t, r).Suites[0].Cases {
		if strings.HasPrefix(c.Name, "revoked-token-rejected:") {
			if c.Failure == nil || c.Failure.Type != "SHOULD" {
				t.Errorf("strict warn = %+v, want a failure of type SHOULD", c)
			}
			return
		}
	}
	t.Fatal("revoked-token-rejected not found")
}

// Target text that is not XML (control characters, "]]>", invalid UTF-8)
// still gives a document that parses.
func TestJUnitHostileText(t *testing.T) {
	r := hostile()
	doc := parseJUnit(t, r)
	var text strings.Builder
	for _, c := range doc.Suites[0].Cases {
		if c.Failure != nil {
			text.WriteString(c.Failure.Text)
		}
	}
	if !strings.Contains(text.String(), "]]>") {
		t.Error(`the failure text lost the "]]>" of the response body`)
	}
}

// TestText: a result as plain text carries what the JUnit failure shows
// (reason, steps) and then the agent's trace.
func TestText(t *testing.T) {
	rep := fixture()
	var withTrace *conformance.Result
	for i := range rep.Results {
		if len(rep.Results[i].Trace) > 0 && len(rep.Results[i].Evidence) > 0 {
			withTrace = &rep.Results[i]
			break
		}
	}
	if withTrace == nil {
		t.Fatal("the fixture has no result with evidence and a trace")
	}
	got := Text(withTrace)
	for _, want := range []string{withTrace.ID, "Reason: " + withTrace.Reason, "Step 1: " + withTrace.Evidence[0].Step, "Agent trace: "} {
		if !strings.Contains(got, want) {
			t.Errorf("Text lacks %q:\n%s", want, got)
		}
	}
	if i, j := strings.Index(got, "Step 1: "), strings.Index(got, "Agent trace: "); i > j {
		t.Errorf("the trace comes before the evidence:\n%s", got)
	}
}
