package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentsso/agentsso/conformance"
)

// Limits on text from a target, per format. Report bodies are already
// cut to 2 KiB by the engine; these bound what a renderer shows of any
// string, whatever the report holds.
const (
	maxLine    = 1 << 10 // one-line fields: reasons, headers, URLs, messages
	maxProse   = 4 << 10 // why-it-matters, spec text
	maxBody    = 2 << 10 // a response or request body excerpt
	maxClaims  = 2 << 10 // a token's decoded header or claims, as JSON
	maxMDBody  = 1 << 10 // a body excerpt in Markdown
	maxMDProse = 1 << 10 // prose in Markdown
)

// fmtDuration shows a duration as a person reads it: 0.4 ms, 120 ms, 4.2 s.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 ms"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
	case d < time.Second-time.Millisecond/2:
		return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return d.Round(time.Second).String()
}

// fmtMS shows a response time in milliseconds.
func fmtMS(ms float64) string {
	return fmtDuration(time.Duration(ms * float64(time.Millisecond)))
}

// seconds is a JUnit time attribute: seconds with millisecond precision.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// fmtTime shows the run's start in UTC.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// figure is one measurement, named and valued for a person.
type figure struct {
	Key   string // as in the JSON, e.g. revocation_delay_ms
	Name  string // revocation delay
	Value string // 12400 ms
}

var unitSuffixes = []struct{ suffix, unit string }{
	{"_ms", "ms"}, {"_seconds", "s"}, {"_s", "s"}, {"_bytes", "bytes"}, {"_percent", "%"},
}

func figures(m map[string]float64) []figure {
	var out []figure
	for _, k := range sortedKeys(m) {
		name, unit := k, ""
		for _, u := range unitSuffixes {
			if s, ok := strings.CutSuffix(k, u.suffix); ok && s != "" {
				name, unit = s, u.unit
				break
			}
		}
		v := strconv.FormatFloat(m[k], 'f', -1, 64)
		if unit != "" {
			v += " " + unit
		}
		out = append(out, figure{Key: oneLine(k), Name: oneLine(strings.ReplaceAll(name, "_", " ")), Value: v})
	}
	return out
}

// jsonText renders decoded token parts and claims: keys sorted, no HTML
// escaping (every renderer escapes for its own format), cut to max bytes.
func jsonText(v any, indent bool, max int) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("(cannot show: %v)", err)
	}
	s, _ := truncate(clean(strings.TrimRight(buf.String(), "\n")), max)
	return s
}

// tokenText names a token on one line: label, jti and hash, never the
// token.
func tokenText(t *conformance.TokenRef) string {
	var parts []string
	if t.Label != "" {
		parts = append(parts, "label "+strconv.Quote(t.Label))
	}
	if t.JTI != "" {
		parts = append(parts, "jti "+t.JTI)
	}
	parts = append(parts, "sha256 "+t.SHA256)
	s, _ := truncate(oneLine(strings.Join(parts, ", ")), maxLine)
	return s
}

// line cleans, folds and bounds a one-line field.
func line(s string) string {
	s, _ = truncate(oneLine(s), maxLine)
	return s
}

// prose cleans and bounds a paragraph, keeping its line breaks.
func prose(s string, max int) string {
	s, _ = truncate(strings.TrimSpace(clean(s)), max)
	return s
}

// body returns a body excerpt and a note when it had to be cut.
func body(s string, max int) (string, string) {
	s = clean(s)
	if t, cut := truncate(s, max); cut {
		return t, fmt.Sprintf("first %d of %d bytes shown", len(t)-len("…"), len(s))
	}
	return s, ""
}

// requestLine is "GET https://… from 127.0.0.2:51234".
func requestLine(q *conformance.Request) string {
	s := q.Method + " " + q.URL
	if q.Source != "" {
		s += " from " + q.Source
	}
	return line(s)
}

// responseLine is "401 in 2 ms", or the transport error.
func responseLine(p *conformance.Response) string {
	if p.Error != "" && p.Status == 0 {
		return line("no response: " + p.Error)
	}
	s := strconv.Itoa(p.Status) + " in " + fmtMS(p.DurationMS)
	if p.Error != "" {
		s += " (" + p.Error + ")"
	}
	return line(s)
}

// upstreamLine is "POST /v1/tools with token label …, passthrough".
func upstreamLine(u *conformance.Upstream) string {
	s := u.Method + " " + u.Path
	if u.Token != nil {
		s += " with token " + tokenText(u.Token)
	} else {
		s += " with no token"
	}
	if u.Passthrough {
		s += ": the very token the harness sent to the target (passthrough)"
	}
	return line(s)
}

func statusWord(res *conformance.Result) string {
	switch {
	case res.Stale:
		return "STALE"
	case res.Expected && classify(res) == groupExpected:
		return "XFAIL"
	}
	return strings.ToUpper(line(string(res.Status)))
}

// Text renders one result as plain text: what a JUnit failure shows of it
// (status, reason, spec references, each step's evidence), then the
// agent's trace when it has one. Tests log it for a scenario that surprised
// them.
func Text(res *conformance.Result) string {
	var b strings.Builder
	writeText(&b, res)
	if t := traceText(res.Trace); t != "" {
		b.WriteString("\n" + t + "\n")
	}
	return b.String()
}

// writeText writes a result as plain text: the body of a JUnit failure
// or error, which CI systems show verbatim.
func writeText(b *strings.Builder, res *conformance.Result) {
	fmt.Fprintf(b, "%s: %s\n", line(res.ID), line(res.Title))
	fmt.Fprintf(b, "Status: %s   Severity: %s   Duration: %s\n", statusWord(res), line(string(res.Severity)), fmtDuration(res.Duration))
	if res.Stale {
		b.WriteString("This scenario is listed in the expected-failures file but passed: remove the entry.\n")
	}
	if res.Reason != "" {
		fmt.Fprintf(b, "Reason: %s\n", line(res.Reason))
	}
	if res.Why != "" {
		fmt.Fprintf(b, "Why it matters: %s\n", prose(res.Why, maxProse))
	}
	for _, s := range res.SpecRefs {
		fmt.Fprintf(b, "Spec %s", line(s.ID))
		if s.URL != "" {
			fmt.Fprintf(b, " <%s>", line(s.URL))
		}
		if s.Text != "" {
			fmt.Fprintf(b, ": “%s”", oneLine(prose(s.Text, maxProse)))
		}
		b.WriteString("\n")
	}
	for _, f := range figures(res.Figures) {
		fmt.Fprintf(b, "Figure %s: %s\n", f.Name, f.Value)
	}
	for i := range res.Evidence {
		e := &res.Evidence[i]
		fmt.Fprintf(b, "\nStep %d: %s", i+1, line(e.Step))
		if e.Verdict != "" {
			fmt.Fprintf(b, " [%s]", line(e.Verdict))
		}
		b.WriteString("\n")
		if q := e.Request; q != nil {
			fmt.Fprintf(b, "  Sent: %s\n", requestLine(q))
			if q.Token != nil {
				writeTokenText(b, "  Token: ", q.Token)
			}
			if q.Body != "" {
				s, note := body(q.Body, maxBody)
				fmt.Fprintf(b, "  Request body:\n%s\n", indentText(s, "    "))
				if note != "" {
					fmt.Fprintf(b, "    (%s)\n", note)
				}
			}
		}
		if p := e.Response; p != nil {
			fmt.Fprintf(b, "  Received: %s\n", responseLine(p))
			if v, ok := header(p.Headers, "WWW-Authenticate"); ok {
				fmt.Fprintf(b, "    WWW-Authenticate: %s\n", line(v))
			}
			if p.Body != "" {
				s, note := body(p.Body, maxBody)
				fmt.Fprintf(b, "  Response body:\n%s\n", indentText(s, "    "))
				if note != "" {
					fmt.Fprintf(b, "    (%s)\n", note)
				}
			}
		}
		for j := range e.Upstream {
			u := &e.Upstream[j]
			fmt.Fprintf(b, "  Upstream received: %s\n", upstreamLine(u))
			if len(u.Claims) > 0 {
				fmt.Fprintf(b, "    claims: %s\n", jsonText(u.Claims, false, maxClaims))
			}
		}
		if e.Expected != "" {
			fmt.Fprintf(b, "  Expected: %s\n", line(e.Expected))
		}
		if e.Note != "" {
			fmt.Fprintf(b, "  Note: %s\n", line(e.Note))
		}
	}
}

func writeTokenText(b *strings.Builder, prefix string, t *conformance.TokenRef) {
	fmt.Fprintf(b, "%s%s\n", prefix, tokenText(t))
	if len(t.Header) > 0 {
		fmt.Fprintf(b, "    header: %s\n", jsonText(t.Header, false, maxClaims))
	}
	if len(t.Claims) > 0 {
		fmt.Fprintf(b, "    claims: %s\n", jsonText(t.Claims, false, maxClaims))
	}
}

func indentText(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
