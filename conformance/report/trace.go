package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentsso/agentsso/conformance"
)

// An agent scenario's result carries the agent's trace: every request it
// (or the browser shim, on its behalf) made to the harness's servers, run
// by run. Every renderer shows it the same way: grouped per run, with
// consecutive identical requests (a retry loop) folded into one line
// that says how many there were.

const (
	maxTraceField = 300  // a path, a "what", a token label or a note in a trace line
	maxTraceLines = 1000 // folded lines per result a renderer shows at most
	maxLifelines  = 10   // HTML lifelines; more parties share the last one
)

// traceRun is one run (variant) of an agent scenario.
type traceRun struct {
	Name     string
	Requests int         // entries, before folding
	Errors   int         // entries answered with an error (not the 401 challenge)
	Lines    []traceLine // folded
	LastMS   float64     // at_ms of the last entry
}

// traceLine is one request, or several identical consecutive ones.
type traceLine struct {
	First, Last conformance.TraceEntry
	N           int // how many entries it stands for
	Num         int // its 1-based position among the run's entries
}

// traceRuns groups a trace by run, in order of first appearance (the
// engine writes runs one after another), and folds repeats.
func traceRuns(tr []conformance.TraceEntry) []traceRun {
	var runs []traceRun
	index := map[string]int{}
	for _, e := range tr {
		i, ok := index[e.Run]
		if !ok {
			i = len(runs)
			index[e.Run] = i
			runs = append(runs, traceRun{Name: e.Run})
		}
		r := &runs[i]
		r.Requests++
		if traceClass(&e) == "err" {
			r.Errors++
		}
		r.LastMS = max(r.LastMS, e.AtMS)
		if n := len(r.Lines); n > 0 && sameRequest(&r.Lines[n-1].Last, &e) {
			r.Lines[n-1].Last = e
			r.Lines[n-1].N++
			continue
		}
		r.Lines = append(r.Lines, traceLine{First: e, Last: e, N: 1, Num: r.Requests})
	}
	return runs
}

// sameRequest reports whether two entries differ only in time and
// sequence number.
func sameRequest(a, b *conformance.TraceEntry) bool {
	if a.From != b.From || a.To != b.To || a.Method != b.Method || a.Path != b.Path ||
		a.What != b.What || a.Status != b.Status || a.Note != b.Note || (a.Token == nil) != (b.Token == nil) {
		return false
	}
	return a.Token == nil || (a.Token.Label == b.Token.Label && a.Token.JTI == b.Token.JTI && a.Token.SHA256 == b.Token.SHA256)
}

// traceClass is "err" for a request answered with an error (or with no
// answer), "chal" for the 401 a server answers a request without a token
// (the challenge that starts discovery, not a fault), "" otherwise.
func traceClass(e *conformance.TraceEntry) string {
	switch {
	case e.Status == 401 && e.Token == nil && e.Note == "":
		return "chal"
	case e.Status >= 400 || e.Status <= 0:
		return "err"
	}
	return ""
}

// traceSummary is "135 requests in 2 runs, 117 answered with an error".
func traceSummary(runs []traceRun) string {
	var n, errs int
	for _, r := range runs {
		n += r.Requests
		errs += r.Errors
	}
	s := numbered(n, "request", "requests")
	if len(runs) > 1 {
		s += " in " + numbered(len(runs), "run", "runs")
	}
	if errs > 0 {
		s += ", " + strconv.Itoa(errs) + " answered with an error"
	}
	return s
}

// runMeta is "19 requests, 2 answered with an error, 11.6 s".
func runMeta(r *traceRun) string {
	s := numbered(r.Requests, "request", "requests")
	if r.Errors > 0 {
		s += ", " + strconv.Itoa(r.Errors) + " answered with an error"
	}
	if r.LastMS > 0 {
		s += ", " + fmtMS(r.LastMS)
	}
	return s
}

func numbered(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// tfield cleans and bounds one field of a trace entry.
func tfield(s string) string {
	s, _ = truncate(oneLine(s), maxTraceField)
	return s
}

// party names a lifeline.
func party(s string) string {
	if s = tfield(s); s == "" {
		return "(unnamed)"
	}
	return s
}

// statusText is the answer's status, or "no response".
func statusText(status int) string {
	if status <= 0 {
		return "no response"
	}
	return strconv.Itoa(status)
}

// seqText is "13", or "14–113" for a folded line.
func (l *traceLine) seqText() string {
	if l.N == 1 {
		return strconv.Itoa(l.Num)
	}
	return strconv.Itoa(l.Num) + "–" + strconv.Itoa(l.Num+l.N-1)
}

// atText is "+107 ms", or "+11.4 s – +11.6 s" for a folded line.
func (l *traceLine) atText() string {
	first, last := "+"+fmtAt(l.First.AtMS), "+"+fmtAt(l.Last.AtMS)
	if l.N > 1 && last != first {
		return first + " – " + last
	}
	return first
}

func fmtAt(ms float64) string {
	if ms <= 0 {
		return "0 ms"
	}
	return fmtDuration(time.Duration(ms * float64(time.Millisecond)))
}

// request is "POST /t/agents/token (token: refresh_token) 401".
func (l *traceLine) request() string {
	e := &l.First
	s := tfield(e.Method) + " " + tfield(e.Path)
	if w := tfield(e.What); w != "" {
		s += " (" + w + ")"
	}
	return s + " " + statusText(e.Status)
}

// tokenName is the token's label, or its jti or hash when it has none.
func tokenName(t *conformance.TokenRef) string {
	switch {
	case t.Label != "":
		return tfield(t.Label)
	case t.JTI != "":
		return "jti " + tfield(t.JTI)
	}
	return "sha256 " + tfield(t.SHA256)
}

// tokenIDs is "jti …, sha256 …".
func tokenIDs(t *conformance.TokenRef) string {
	var parts []string
	if t.JTI != "" {
		parts = append(parts, "jti "+tfield(t.JTI))
	}
	parts = append(parts, "sha256 "+tfield(orUnknown(t.SHA256)))
	return strings.Join(parts, ", ")
}

// text is the whole line as plain text, for JUnit:
// "agent → rs1 POST /mcp (tools/call notes_read) 401 · token access token #1 (aud rs1), jti …, sha256 … · invalid_token: …".
func (l *traceLine) text() string {
	e := &l.First
	s := party(e.From) + " → " + party(e.To) + " " + l.request()
	if l.N > 1 {
		s += fmt.Sprintf(" ×%d", l.N)
	}
	if e.Token != nil {
		s += " · token " + tokenName(e.Token) + " (" + tokenIDs(e.Token) + ")"
	}
	if e.Note != "" {
		s += " · " + tfield(e.Note)
	}
	return s
}

// traceText writes a result's trace as plain text lines, for JUnit's
// <system-out>.
func traceText(tr []conformance.TraceEntry) string {
	runs := traceRuns(tr)
	if len(runs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Agent trace: %s", traceSummary(runs))
	shown := 0
	for _, r := range runs {
		b.WriteString("\n")
		switch {
		case r.Name != "":
			fmt.Fprintf(&b, "Run %q: %s\n", tfield(r.Name), runMeta(&r))
		case len(runs) > 1:
			fmt.Fprintf(&b, "The agent's run: %s\n", runMeta(&r))
		}
		for i := range r.Lines {
			if shown == maxTraceLines {
				fmt.Fprintf(&b, "  … the rest is left out here: see report.html or report.json\n")
				return strings.TrimRight(b.String(), "\n")
			}
			l := &r.Lines[i]
			fmt.Fprintf(&b, "  %s. %s %s\n", l.seqText(), l.atText(), l.text())
			shown++
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
