package report

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/agentsso/agentsso/conformance"
)

// MarkdownLimit is GitHub's limit on one step's job summary
// ($GITHUB_STEP_SUMMARY). WriteMarkdown always stays below it: evidence
// is left out, and then whole scenarios, with a note saying so.
const MarkdownLimit = 1 << 20

const (
	mdReserve     = 4 << 10  // kept free for the closing notes
	mdMaxEvidence = 64 << 10 // one scenario's evidence block at most
	mdMaxTenants  = 20
)

// mdWriter appends whole blocks while they fit in the budget, so that a
// cut never leaves an open <details>, code fence or table row.
type mdWriter struct {
	b       strings.Builder
	limit   int
	omitted int // scenarios not shown at all
	cut     int // scenarios shown without their evidence
}

func (m *mdWriter) fits(s string) bool { return m.b.Len()+len(s) <= m.limit }

// add appends s if it fits and reports whether it did.
func (m *mdWriter) add(s string) bool {
	if !m.fits(s) {
		return false
	}
	m.b.WriteString(s)
	return true
}

// WriteMarkdown writes r as GitHub-flavoured Markdown for a CI job summary
// or a pull request comment: a one-line verdict, the counts, failures and
// errors with their evidence (and an agent's trace, numbered per run) in
// <details> blocks, warnings, expected failures, and a compact table of
// skips and passes (an agent's trace there only as its length). Text from the target
// is escaped (or put in code spans and fences it cannot break out of);
// the whole stays under MarkdownLimit bytes.
func WriteMarkdown(w io.Writer, r *conformance.Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	m := &mdWriter{limit: MarkdownLimit - mdReserve}
	c := countResults(r.Results)
	g := grouped(r.Results)
	word := verdictWord(r)

	var h strings.Builder
	fmt.Fprintf(&h, "## agentsso conformance: %s for %s\n\n", word, mdCode(line(targetName(r.Target)), false))
	fmt.Fprintf(&h, "**%s**: %s\n\n", word, mdText(verdictSentence(r, c)))
	h.WriteString("| Total | Passed | Failed | Errors | Warnings | Skipped | Expected failures | Stale expected failures |\n")
	h.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&h, "| %d | %d | %d | %d | %d | %d | %d | %d |\n\n", c.Total, c.Pass, c.Fail, c.Error, c.Warn, c.Skip, c.Expected, c.Stale)
	h.WriteString(mdRunFacts(r))
	m.add(h.String())

	sections := []struct {
		title string
		g     group
	}{
		{"Failures", groupFail},
		{"Errors", groupError},
		{"Warnings", groupWarn},
	}
	for _, s := range sections {
		if len(g[s.g]) == 0 {
			continue
		}
		title := fmt.Sprintf("### %s (%d)\n\n", s.title, len(g[s.g]))
		if s.g == groupWarn && r.Strict {
			title = fmt.Sprintf("### Warnings (%d): failing, as this run is strict\n\n", len(g[s.g]))
		}
		if m.omitted > 0 || !m.add(title) {
			m.omitted += len(g[s.g])
			continue
		}
		for n, i := range g[s.g] {
			head, ev := mdResult(&r.Results[i])
			switch {
			case m.add(head + ev):
			case m.add(head + mdEvidenceCut + "\n\n"):
				m.cut++
			default:
				m.omitted += len(g[s.g]) - n
			}
			if m.omitted > 0 {
				break
			}
		}
	}

	mdTable(m, fmt.Sprintf("### Expected failures (%d)\n\nListed in the expected-failures file: they do not fail the run.\n\n", len(g[groupExpected])),
		"| Scenario | Severity | Status | Reason |\n|---|---|---|---|\n",
		g[groupExpected], func(i int) string {
			res := &r.Results[i]
			return fmt.Sprintf("| %s %s | %s | %s | %s |\n", mdCode(line(res.ID), true), mdText(line(res.Title)),
				mdText(line(string(res.Severity))), mdText(line(string(res.Status))), mdText(mdShort(res.Reason)))
		})

	rest := append(append([]int(nil), g[groupSkip]...), g[groupPass]...)
	mdTable(m, fmt.Sprintf("### Skipped and passed (%d skipped, %d passed)\n\n", len(g[groupSkip]), len(g[groupPass])),
		"| Result | Scenario | Severity | Notes |\n|---|---|---|---|\n",
		rest, func(i int) string {
			res := &r.Results[i]
			notes := ""
			if res.Status == conformance.StatusSkip {
				notes = mdShort(res.Reason)
			} else if fs := figures(res.Figures); len(fs) > 0 {
				var parts []string
				for _, f := range fs {
					parts = append(parts, f.Name+" "+f.Value)
				}
				notes = strings.Join(parts, ", ")
			}
			// An agent scenario that did not go wrong shows how long its
			// trace is, not the trace: a pull request comment stays short.
			if runs := traceRuns(res.Trace); len(runs) > 0 {
				if notes != "" {
					notes += "; "
				}
				notes += "trace: " + traceSummary(runs)
			}
			notes = mdText(notes)
			return fmt.Sprintf("| %s | %s %s | %s | %s |\n", statusWord(res), mdCode(line(res.ID), true), mdText(line(res.Title)),
				mdText(line(string(res.Severity))), notes)
		})

	// The closing notes use the reserve.
	m.limit = MarkdownLimit
	if m.cut > 0 {
		m.add(fmt.Sprintf("> [!NOTE]\n> The evidence of %d scenarios was left out to keep this summary under GitHub's 1 MiB limit: see report.html or report.json.\n\n", m.cut))
	}
	if m.omitted > 0 {
		m.add(fmt.Sprintf("> [!WARNING]\n> %d scenarios are not listed, to keep this summary under GitHub's 1 MiB limit: see report.html or report.json for all %d.\n\n", m.omitted, c.Total))
	}
	m.add(fmt.Sprintf("<sub>agentsso %s · report schema %s · full evidence in report.html and report.json</sub>\n",
		mdText(line(orUnknown(r.Agentsso.Version))), mdText(line(orUnknown(r.Schema)))))
	_, err := io.WriteString(w, m.b.String())
	return err
}

const mdEvidenceCut = "_Evidence left out to keep this summary under GitHub's 1 MiB limit: see report.html or report.json._"

// mdTable writes a section with a table, row by row while rows fit.
func mdTable(m *mdWriter, title, head string, rows []int, row func(int) string) {
	if len(rows) == 0 {
		return
	}
	if m.omitted > 0 || !m.add(title+head) {
		m.omitted += len(rows)
		return
	}
	for n, i := range rows {
		if !m.add(row(i)) {
			m.omitted += len(rows) - n
			break
		}
	}
	m.b.WriteString("\n")
}

// verdictSentence is the report's verdict reason, or one made from the
// counts.
func verdictSentence(r *conformance.Report, c counts) string {
	if r.VerdictReason != "" {
		return line(r.VerdictReason)
	}
	return fmt.Sprintf("%d failed, %d errors, %d stale expected failures, %d warnings of %d scenarios.", c.Fail, c.Error, c.Stale, c.Warn, c.Total)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// mdRunFacts is the run's provenance: target, agentsso, catalogue, keys.
func mdRunFacts(r *conformance.Report) string {
	var b strings.Builder
	t := r.Target
	fmt.Fprintf(&b, "- **Target:** %s", mdCode(line(targetName(t)), false))
	if t.Kind != "" {
		fmt.Fprintf(&b, " (%s)", mdText(line(t.Kind)))
	}
	if t.URL != "" && t.URL != targetName(t) {
		fmt.Fprintf(&b, " at %s", mdCode(line(t.URL), false))
	}
	if t.Audience != "" {
		fmt.Fprintf(&b, ", audience %s", mdCode(line(t.Audience), false))
	}
	if t.Tenant != "" {
		fmt.Fprintf(&b, ", trusts tenant %s", mdCode(line(t.Tenant), false))
	}
	if len(t.Features) > 0 {
		fmt.Fprintf(&b, ", declares %s", mdCode(line(strings.Join(t.Features, ", ")), false))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- **agentsso:** %s", mdCode(line(orUnknown(r.Agentsso.Version)), false))
	if r.Agentsso.Digest != "" {
		fmt.Fprintf(&b, ", binary sha256 %s", mdCode(line(r.Agentsso.Digest), false))
	}
	if r.Agentsso.GoVersion != "" {
		fmt.Fprintf(&b, ", %s", mdText(line(r.Agentsso.GoVersion)))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- **Catalogue:** %s, sha256 %s", mdCode(line(orUnknown(r.Catalogue.Version)), false), mdCode(line(orUnknown(r.Catalogue.Hash)), false))
	if len(r.Catalogue.Sources) > 0 {
		fmt.Fprintf(&b, ", with %s", mdCode(line(strings.Join(r.Catalogue.Sources, ", ")), false))
	}
	b.WriteString("\n")
	if r.IdP.URL != "" || len(r.IdP.Tenants) > 0 {
		fmt.Fprintf(&b, "- **IdP:** %s", mdCode(line(orUnknown(r.IdP.URL)), false))
		for i, k := range r.IdP.Tenants {
			if i == mdMaxTenants {
				fmt.Fprintf(&b, "; and %d more tenants", len(r.IdP.Tenants)-i)
				break
			}
			sep := ";"
			if i == 0 {
				sep = ":"
			}
			fmt.Fprintf(&b, "%s tenant %s signs with %s key %s", sep, mdCode(line(k.Tenant), false), mdText(line(orUnknown(k.Backend))), mdCode(line(k.KID), false))
			if k.Alg != "" {
				fmt.Fprintf(&b, " (%s)", mdText(line(k.Alg)))
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "- **Run:** started %s, took %s", mdText(fmtTime(r.Started)), fmtDuration(r.Duration))
	if r.Strict {
		b.WriteString(", strict (a warning fails the run)")
	}
	b.WriteString("\n\n")
	return b.String()
}

// mdResult renders one failure, error or warning: the head (always
// shown) and the evidence block (left out when the budget is short).
func mdResult(res *conformance.Result) (head, evidence string) {
	var b strings.Builder
	fmt.Fprintf(&b, "#### %s %s: %s\n\n", statusWord(res), mdCode(line(res.ID), false), mdText(line(res.Title)))
	fmt.Fprintf(&b, "**%s** · %s", mdText(line(orUnknown(string(res.Severity)))), fmtDuration(res.Duration))
	if res.Reason != "" {
		fmt.Fprintf(&b, " · %s", mdText(line(res.Reason)))
	}
	b.WriteString("\n\n")
	if res.Stale {
		b.WriteString("This scenario is listed in the expected-failures file but passed: remove the entry, which fails the run until then.\n\n")
	}
	if res.Why != "" {
		fmt.Fprintf(&b, "**Why it matters:** %s\n\n", mdText(oneLine(prose(res.Why, maxMDProse))))
	}
	if len(res.SpecRefs) > 0 {
		b.WriteString("**Spec:**\n\n")
		for _, s := range res.SpecRefs {
			fmt.Fprintf(&b, "- %s", mdSpecID(s))
			if s.Text != "" {
				fmt.Fprintf(&b, ": “%s”", mdText(oneLine(prose(s.Text, maxMDProse))))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if fs := figures(res.Figures); len(fs) > 0 {
		b.WriteString("**Figures:** ")
		for i, f := range fs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %s", mdText(f.Name), mdText(f.Value))
		}
		b.WriteString("\n\n")
	}
	return b.String(), mdEvidence(res.Evidence) + mdTrace(res.Trace)
}

// mdSpecID links a spec id to its URL when the URL is a plain http(s)
// URL that cannot break the link syntax; otherwise it is shown as code.
func mdSpecID(s conformance.SpecRef) string {
	id := mdText(line(s.ID))
	if s.URL == "" {
		return "**" + id + "**"
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(s.URL) > maxLine ||
		strings.ContainsAny(s.URL, " <>()[]\\\"'`|\n\r\t") || s.URL != line(s.URL) {
		return "**" + id + "** " + mdCode(line(s.URL), false)
	}
	return "[" + id + "](" + s.URL + ")"
}

// mdEvidence renders the steps in a collapsed <details> block, cut to
// mdMaxEvidence with a note.
func mdEvidence(steps []conformance.Evidence) string {
	if len(steps) == 0 {
		return ""
	}
	var b strings.Builder
	noun := "steps"
	if len(steps) == 1 {
		noun = "step"
	}
	fmt.Fprintf(&b, "<details><summary>Evidence: %d %s</summary>\n\n", len(steps), noun)
	for i := range steps {
		s := mdStep(i+1, &steps[i])
		if b.Len()+len(s) > mdMaxEvidence {
			fmt.Fprintf(&b, "_%d more steps left out here: see report.html or report.json._\n\n", len(steps)-i)
			break
		}
		b.WriteString(s)
	}
	b.WriteString("</details>\n\n")
	return b.String()
}

func mdStep(n int, e *conformance.Evidence) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Step %d: %s**", n, mdText(line(e.Step)))
	if e.Verdict != "" {
		fmt.Fprintf(&b, " · %s", mdCode(line(e.Verdict), false))
	}
	b.WriteString("\n\n")
	var fences []string
	if q := e.Request; q != nil {
		fmt.Fprintf(&b, "- Sent: %s\n", mdCode(requestLine(q), false))
		if t := q.Token; t != nil {
			b.WriteString("- Token: " + mdToken(t) + "\n")
			if len(t.Header) > 0 {
				fmt.Fprintf(&b, "  - header: %s\n", mdCode(jsonText(t.Header, false, maxClaims), false))
			}
			if len(t.Claims) > 0 {
				fmt.Fprintf(&b, "  - claims: %s\n", mdCode(jsonText(t.Claims, false, maxClaims), false))
			}
		}
	}
	if p := e.Response; p != nil {
		fmt.Fprintf(&b, "- Received: %s\n", mdCode(responseLine(p), false))
		if v, ok := header(p.Headers, "WWW-Authenticate"); ok {
			fmt.Fprintf(&b, "  - %s\n", mdCode("WWW-Authenticate: "+line(v), false))
		}
		if p.Body != "" {
			s, note := body(p.Body, maxMDBody)
			fences = append(fences, mdBlock("Response body", s, note))
		}
	}
	for j := range e.Upstream {
		u := &e.Upstream[j]
		fmt.Fprintf(&b, "- Upstream received: %s", mdCode(line(u.Method+" "+u.Path), false))
		if u.Token != nil {
			b.WriteString(" with token " + mdToken(u.Token))
		} else {
			b.WriteString(" with no token")
		}
		if u.Passthrough {
			b.WriteString(": **the very token the harness sent to the target (passthrough)**")
		}
		b.WriteString("\n")
		if len(u.Claims) > 0 {
			fmt.Fprintf(&b, "  - claims: %s\n", mdCode(jsonText(u.Claims, false, maxClaims), false))
		}
	}
	if e.Expected != "" {
		fmt.Fprintf(&b, "- Expected: %s\n", mdText(line(e.Expected)))
	}
	if e.Note != "" {
		fmt.Fprintf(&b, "- Note: %s\n", mdText(line(e.Note)))
	}
	b.WriteString("\n")
	for _, f := range fences {
		b.WriteString(f)
	}
	return b.String()
}

// mdMaxTrace bounds one scenario's trace block.
const mdMaxTrace = 16 << 10

// mdTrace renders an agent scenario's trace in a collapsed <details>
// block: per run, a numbered list with one line per request
// ("1. agent → idp `POST /t/agents/token` (token: authorization\_code)
// 200"), consecutive identical requests folded into one line.
func mdTrace(tr []conformance.TraceEntry) string {
	runs := traceRuns(tr)
	if len(runs) == 0 {
		return ""
	}
	var b strings.Builder
	// The summary is made of numbers and fixed words only: no escaping.
	fmt.Fprintf(&b, "<details><summary>Agent trace: %s</summary>\n\n", traceSummary(runs))
	for _, r := range runs {
		switch {
		case r.Name != "":
			fmt.Fprintf(&b, "**Run: %s** · %s\n\n", mdText(tfield(r.Name)), runMeta(&r))
		case len(runs) > 1: // a heading ends the previous run's list
			fmt.Fprintf(&b, "**The agent's run** · %s\n\n", runMeta(&r))
		}
		for i := range r.Lines {
			l := &r.Lines[i]
			item := mdTraceItem(l)
			if b.Len()+len(item) > mdMaxTrace {
				fmt.Fprintf(&b, "\n_The rest of the trace is left out here: see report.html or report.json._\n\n</details>\n\n")
				return b.String()
			}
			b.WriteString(item)
			if l.N > 1 && i < len(r.Lines)-1 {
				// A folded line stands for several numbers: end the list
				// so that the next one starts at its own number.
				b.WriteString("\n<!-- -->\n\n")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("</details>\n\n")
	return b.String()
}

// mdTraceItem is one list item: "13. agent → rs1 `POST /mcp`
// (tools/call notes\_read) **401** · access token \#1 (aud rs1) ·
// invalid\_token: …".
func mdTraceItem(l *traceLine) string {
	e := &l.First
	var b strings.Builder
	fmt.Fprintf(&b, "%d. %s → %s %s", l.Num, mdParty(e.From), mdParty(e.To), mdCode(tfield(e.Method)+" "+tfield(e.Path), false))
	if w := tfield(e.What); w != "" {
		fmt.Fprintf(&b, " (%s)", mdText(w))
	}
	if traceClass(e) == "err" {
		fmt.Fprintf(&b, " **%s**", statusText(e.Status))
	} else {
		fmt.Fprintf(&b, " %s", statusText(e.Status))
	}
	if l.N > 1 {
		fmt.Fprintf(&b, " **×%d** (%s)", l.N, l.seqText())
	}
	if e.Token != nil {
		fmt.Fprintf(&b, " · %s", mdText(tokenName(e.Token)))
	}
	if e.Note != "" {
		fmt.Fprintf(&b, " · %s", mdText(tfield(e.Note)))
	}
	b.WriteString("\n")
	return b.String()
}

// mdParty shows a party's name as it is when it is a plain name (agent,
// rs1, idp), and as code otherwise: at the start of a list item, text
// such as "- x" or "1. x" would open a nested list.
func mdParty(s string) string {
	s = party(s)
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return mdCode(s, false)
		}
	}
	return s
}

// mdToken names a token: label, jti and hash, all as code.
func mdToken(t *conformance.TokenRef) string {
	var parts []string
	if t.Label != "" {
		parts = append(parts, "label "+mdCode(line(t.Label), false))
	}
	if t.JTI != "" {
		parts = append(parts, "jti "+mdCode(line(t.JTI), false))
	}
	parts = append(parts, "sha256 "+mdCode(line(orUnknown(t.SHA256)), false))
	return strings.Join(parts, ", ")
}

// mdBlock is a captioned fenced code block holding text from the target.
func mdBlock(caption, s, note string) string {
	if note != "" {
		caption += " (" + note + ")"
	}
	return caption + ":\n\n" + mdFence(s) + "\n"
}

// mdShort is a reason cut short for a table cell.
func mdShort(s string) string {
	s, _ = truncate(oneLine(s), 300)
	return s
}

// mdText escapes one line of text for Markdown prose and table cells:
// every ASCII punctuation character that Markdown, GitHub's extensions
// (tables, strikethrough, math, autolinked <…>) or HTML give a meaning
// mid-line is backslash-escaped, so "<script>" stays text and
// "](javascript:" never becomes a link ("(", "!" and "{" mean nothing
// once "[" and "]" are escaped; "-", "+", "=" and digits matter only at
// the start of a line, where this text never goes). The caller has made
// s one line.
func mdText(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch r {
		case '\\', '`', '*', '_', '[', ']', '<', '>', '#', '|', '~', '$', '&':
			b.WriteByte('\\')
		case '\n', '\r':
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mdCode puts one line of text in a code span whose fence is longer than
// any run of backticks in it. In a table cell (inTable) a "|" is escaped
// as GitHub requires even inside code spans.
func mdCode(s string, inTable bool) string {
	s = oneLine(s)
	if s == "" {
		return "_(empty)_"
	}
	fence := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || (strings.HasPrefix(s, " ") && strings.HasSuffix(s, " ")) {
		s = " " + s + " "
	}
	if inTable {
		s = strings.ReplaceAll(s, "|", `\|`)
	}
	return fence + s + fence
}

// mdFence puts text in a fenced code block that no line of it can close.
func mdFence(s string) string {
	n := max(3, longestRun(s, '`')+1)
	fence := strings.Repeat("`", n)
	return fence + "text\n" + strings.TrimRight(s, "\n") + "\n" + fence + "\n"
}

func longestRun(s string, c byte) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}
