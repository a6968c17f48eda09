package report

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/agentsso/agentsso/conformance"
)

// JUnit XML in the shape GitHub Actions test reporters, GitLab and
// Jenkins read: <testsuites> holding one <testsuite>, one <testcase> per
// result, in report order.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *junitSkipped `xml:"skipped"`
	SystemOut *junitText    `xml:"system-out"`
}

type junitText struct {
	Text string `xml:",cdata"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	// CDATA keeps the details' line breaks readable in the file;
	// encoding/xml splits any "]]>" in it.
	Details string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// WriteJUnit writes r as JUnit XML. The mapping (documented in
// docs/REPORT-SCHEMA.md):
//
//   - fail: <failure type="<severity>"> with the reason as message and the
//     evidence as text.
//   - error: <error type="error">, likewise.
//   - skip: <skipped message="<reason>"/>.
//   - warn: a passing test case with <system-out>WARN: <reason></system-out>.
//     A violated SHOULD does not fail the run (the exit status is 0), and
//     CI reporters mark any <failure> red, so a warning stays green but
//     visible. In a --strict run (Report.Strict) a warning fails the run
//     and is written as <failure type="SHOULD">.
//   - an expected failure: <skipped message="expected failure: <reason>"/>,
//     since it does not fail the run.
//   - a stale expected failure (listed, but passed):
//     <failure type="stale-expected-failure">, since it fails the run
//     until the entry is removed.
//
// An agent scenario's trace goes into <system-out> as plain text, one
// line per request, grouped per run, after any WARN line and figures.
//
// The class name is agentsso.<severity> and the test name "<id>: <title>",
// so reporters group scenarios by severity.
func WriteJUnit(w io.Writer, r *conformance.Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	suite := junitSuite{
		Name:       "agentsso conformance: " + line(targetName(r.Target)),
		Tests:      len(r.Results),
		Time:       seconds(r.Duration),
		Properties: junitProperties(r),
	}
	if !r.Started.IsZero() {
		suite.Timestamp = r.Started.UTC().Format("2006-01-02T15:04:05") // the JUnit schema's form: no zone
	}
	for i := range r.Results {
		c := junitTestCase(r, &r.Results[i])
		switch {
		case c.Failure != nil:
			suite.Failures++
		case c.Error != nil:
			suite.Errors++
		case c.Skipped != nil:
			suite.Skipped++
		}
		suite.Cases = append(suite.Cases, c)
	}
	doc := junitSuites{
		Name:     "agentsso conformance",
		Tests:    suite.Tests,
		Failures: suite.Failures,
		Errors:   suite.Errors,
		Skipped:  suite.Skipped,
		Time:     suite.Time,
		Suites:   []junitSuite{suite},
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func junitProperties(r *conformance.Report) []junitProperty {
	var ps []junitProperty
	add := func(name, value string) {
		if value != "" {
			ps = append(ps, junitProperty{name, line(value)})
		}
	}
	add("agentsso.schema", r.Schema)
	add("agentsso.version", r.Agentsso.Version)
	add("agentsso.digest", r.Agentsso.Digest)
	add("agentsso.go_version", r.Agentsso.GoVersion)
	add("catalogue.version", r.Catalogue.Version)
	add("catalogue.hash", r.Catalogue.Hash)
	add("target.name", r.Target.Name)
	add("target.kind", r.Target.Kind)
	add("target.url", r.Target.URL)
	add("target.audience", r.Target.Audience)
	add("target.tenant", r.Target.Tenant)
	add("target.features", strings.Join(r.Target.Features, ","))
	add("idp.url", r.IdP.URL)
	for _, t := range r.IdP.Tenants {
		v := fmt.Sprintf("issuer=%s backend=%s kid=%s", t.Issuer, t.Backend, t.KID)
		if t.Alg != "" {
			v += " alg=" + t.Alg
		}
		add("idp.tenant."+t.Tenant, v)
	}
	add("verdict", r.Verdict)
	add("verdict_reason", r.VerdictReason)
	if r.Strict {
		add("strict", "true")
	}
	return ps
}

func junitTestCase(r *conformance.Report, res *conformance.Result) junitCase {
	c := junitCase{
		Classname: "agentsso",
		Name:      line(res.ID) + ": " + line(res.Title),
		Time:      seconds(res.Duration),
	}
	if res.Severity != "" {
		c.Classname += "." + line(string(res.Severity))
	}
	reason := line(res.Reason)
	details := func() string {
		var b strings.Builder
		writeText(&b, res)
		return b.String()
	}
	var out []string
	switch g := classify(res); {
	case res.Stale:
		c.Failure = &junitProblem{
			Message: "stale expected failure: listed in the expected-failures file but passed; remove the entry",
			Type:    "stale-expected-failure",
			Details: details(),
		}
	case g == groupFail:
		c.Failure = &junitProblem{Message: reason, Type: line(string(res.Severity)), Details: details()}
	case g == groupError:
		c.Error = &junitProblem{Message: reason, Type: "error", Details: details()}
	case g == groupExpected:
		msg := reason
		if !strings.HasPrefix(msg, "expected failure") { // the engine may have said so already
			msg = "expected failure: " + msg
		}
		c.Skipped = &junitSkipped{Message: msg}
	case g == groupSkip:
		c.Skipped = &junitSkipped{Message: reason}
	case g == groupWarn && r.Strict:
		c.Failure = &junitProblem{Message: "WARN (strict): " + reason, Type: line(string(res.Severity)), Details: details()}
	case g == groupWarn:
		out = append(out, "WARN: "+reason)
	}
	for _, k := range sortedKeys(res.Figures) {
		out = append(out, fmt.Sprintf("figure %s=%s", line(k), strconv.FormatFloat(res.Figures[k], 'f', -1, 64)))
	}
	if t := traceText(res.Trace); t != "" {
		out = append(out, t)
	}
	if len(out) > 0 {
		c.SystemOut = &junitText{strings.Join(out, "\n")}
	}
	return c
}
