package report

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/agentsso/agentsso/conformance"
)

//go:embed report.html.tmpl
var htmlTemplateText string

//go:embed report.css
var htmlCSS string

// htmlJS opens every <details> before printing, so a printed report holds
// all the evidence. The page needs no script otherwise.
const htmlJS = `addEventListener("beforeprint",function(){document.querySelectorAll("details").forEach(function(d){d.open=true})});`

var htmlTemplate = template.Must(template.New("report.html").Funcs(template.FuncMap{
	"lower": strings.ToLower,
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}).Parse(htmlTemplateText))

// htmlCSP allows nothing but the page's own style sheet and script: the
// page loads nothing, even if a string escaped the template's escaping.
var htmlCSP = fmt.Sprintf("default-src 'none'; style-src '%s'; script-src '%s'; img-src data:; base-uri 'none'; form-action 'none'",
	cspHash(htmlCSS), cspHash(htmlJS))

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// WriteHTML writes r as one self-contained HTML page for a person: the
// verdict and counts at a glance with the run's provenance (agentsso
// version, catalogue hash, target, the IdP's key backends and kids), then
// failures with their evidence (what was sent, what came back, what the
// upstream received, what was expected, why it matters, the spec text),
// errors, warnings, and the collapsed expected failures, skips and
// passes. It loads nothing (inline CSS, a strict Content-Security-Policy),
// needs no script, and prints with all evidence open. Text from the
// target is escaped by html/template.
func WriteHTML(w io.Writer, r *conformance.Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	return htmlTemplate.Execute(w, newHTMLView(r))
}

type htmlView struct {
	CSP      string
	CSS      template.CSS
	JS       template.JS
	Word     string // PASS or FAIL
	Reason   string
	Target   htmlTarget
	Agentsso conformance.Build
	Cat      conformance.Catalogue
	IdPURL   string
	Tenants  []conformance.TenantKeys
	Started  string
	Duration string
	Schema   string
	Strict   bool
	Tiles    []htmlTile
	Sections []htmlSection
}

type htmlTarget struct {
	Name, Kind, URL, Audience, Tenant string
	Features                          []string
}

type htmlTile struct {
	Label, Class, Anchor string
	N                    int
}

type htmlSection struct {
	Anchor, Title, Intro, Class string
	Collapsed                   bool // results shown as closed <details>
	Results                     []htmlResult
}

type htmlResult struct {
	Anchor, ID, Title, Word, Class, Severity, Duration, Reason, Why string
	Stale, Expected                                                 bool
	Specs                                                           []htmlSpec
	Figures                                                         []figure
	Steps                                                           []htmlStep
	Trace                                                           *htmlTrace
}

// htmlTrace is an agent's trace as sequence diagrams, one per run, on
// the same lifelines. The diagram is a CSS grid: each lifeline owns two
// columns, so its centre is a grid line, and an arrow from lifeline i to
// lifeline j spans the grid lines 2i to 2j (classes s1…s10, e1…e10).
type htmlTrace struct {
	Summary string
	Cols    string // "n4": the grid's width in lifelines
	Lanes   []htmlLane
	Runs    []htmlRun
	Omitted int // lines left out past maxTraceLines
}

type htmlLane struct {
	Name  string
	Class string // "l3 k-rs": its place and its kind
}

type htmlRun struct {
	Name string
	Meta string
	Open bool
	Bad  bool // a check of this run did not hold
	Msgs []htmlMsg
}

type htmlMsg struct {
	Seq, At        string
	Class          string // err, chal or ""
	Place          string // "s1": where the label and the token start
	Line           string // "s1 e3", with " rtl" or " self"
	From, To       string
	Method, Path   string
	What, Status   string
	Times          int
	Token, TokenID string
	Leak           bool // a token sent to the decoy
	Note           string
}

type htmlSpec struct {
	ID, Text string
	URL      string // only http(s); html/template checks it again
}

type htmlStep struct {
	N                                int
	Title, Verdict, VerdictClass     string
	Brief                            string // "401 in 2 ms", for a collapsed step
	Collapsed                        bool   // a step that held, in a result that did not
	Request                          *htmlRequest
	Response                         *htmlResponse
	Upstream                         []htmlUpstream
	Expected, Note                   string
	HasExchange, PassthroughUpstream bool
}

type htmlRequest struct {
	Method, URL, Source string
	Headers             []kv
	Body, BodyNote      string
	Token               *htmlToken
}

type htmlResponse struct {
	Status         int
	StatusClass    string
	Duration       string
	Error          string
	WWWAuth        string
	HasWWWAuth     bool
	Headers        []kv
	Body, BodyNote string
}

type htmlUpstream struct {
	Method, Path string
	Token        *htmlToken
	Passthrough  bool
	Claims       string
}

type htmlToken struct {
	Label, JTI, SHA256, Header, Claims string
}

type kv struct{ K, V string }

func newHTMLView(r *conformance.Report) *htmlView {
	c := countResults(r.Results)
	v := &htmlView{
		CSP:    htmlCSP,
		CSS:    template.CSS(htmlCSS),
		JS:     template.JS(htmlJS),
		Word:   verdictWord(r),
		Reason: verdictSentence(r, c),
		Target: htmlTarget{
			Name:     line(targetName(r.Target)),
			Kind:     line(r.Target.Kind),
			URL:      line(r.Target.URL),
			Audience: line(r.Target.Audience),
			Tenant:   line(r.Target.Tenant),
		},
		Agentsso: conformance.Build{Version: line(r.Agentsso.Version), Digest: line(r.Agentsso.Digest), GoVersion: line(r.Agentsso.GoVersion)},
		Cat:      conformance.Catalogue{Version: line(r.Catalogue.Version), Hash: line(r.Catalogue.Hash)},
		IdPURL:   line(r.IdP.URL),
		Started:  fmtTime(r.Started),
		Duration: fmtDuration(r.Duration),
		Schema:   line(r.Schema),
		Strict:   r.Strict,
	}
	for _, f := range r.Target.Features {
		v.Target.Features = append(v.Target.Features, line(f))
	}
	for _, s := range r.Catalogue.Sources {
		v.Cat.Sources = append(v.Cat.Sources, line(s))
	}
	for _, t := range r.IdP.Tenants {
		v.Tenants = append(v.Tenants, conformance.TenantKeys{
			Tenant: line(t.Tenant), Issuer: line(t.Issuer), Backend: line(t.Backend), KID: line(t.KID), Alg: line(t.Alg),
		})
	}

	g := grouped(r.Results)
	v.Tiles = []htmlTile{
		{"Failed", "fail", "failures", c.Fail},
		{"Stale expected", "fail", "failures", c.Stale},
		{"Errors", "error", "errors", c.Error},
		{"Warnings", "warn", "warnings", c.Warn},
		{"Passed", "pass", "passed", c.Pass},
		{"Skipped", "skip", "skipped", c.Skip},
		{"Expected failures", "xfail", "expected", c.Expected},
	}
	warnIntro := "A SHOULD was not met. Warnings do not fail the run."
	if r.Strict {
		warnIntro = "A SHOULD was not met. This run is strict, so warnings fail it."
	}
	defs := []htmlSection{
		{Anchor: "failures", Title: "Failures", Class: "fail", Intro: "A MUST (or a declared feature's MUST) was violated, or an expected-failures entry is stale. These fail the run."},
		{Anchor: "errors", Title: "Errors", Class: "error", Intro: "The scenario could not be judged: an unexpected status, a timeout, or a failed baseline. An error in a MUST scenario fails the run."},
		{Anchor: "warnings", Title: "Warnings", Class: "warn", Intro: warnIntro},
		{Anchor: "expected", Title: "Expected failures", Class: "xfail", Collapsed: true, Intro: "Failures listed in the expected-failures file: known gaps that do not fail the run."},
		{Anchor: "skipped", Title: "Skipped", Class: "skip", Collapsed: true, Intro: "Not applicable to this target, or not exercised in this setup, with the reason."},
		{Anchor: "passed", Title: "Passed", Class: "pass", Collapsed: true},
	}
	order := []group{groupFail, groupError, groupWarn, groupExpected, groupSkip, groupPass}
	for k, sec := range defs {
		for _, i := range g[order[k]] {
			sec.Results = append(sec.Results, newHTMLResult(i, &r.Results[i]))
		}
		if len(sec.Results) > 0 {
			v.Sections = append(v.Sections, sec)
		}
	}
	return v
}

func newHTMLResult(i int, res *conformance.Result) htmlResult {
	h := htmlResult{
		Anchor:   fmt.Sprintf("r%d-%s", i+1, slug(res.ID)),
		ID:       line(res.ID),
		Title:    line(res.Title),
		Word:     statusWord(res),
		Class:    htmlClass(res),
		Severity: line(string(res.Severity)),
		Duration: fmtDuration(res.Duration),
		Reason:   prose(res.Reason, maxLine),
		Why:      prose(res.Why, maxProse),
		Stale:    res.Stale,
		Expected: res.Expected && classify(res) == groupExpected,
		Figures:  figures(res.Figures),
	}
	for _, s := range res.SpecRefs {
		spec := htmlSpec{ID: line(s.ID), Text: prose(s.Text, maxProse)}
		if u, err := url.Parse(s.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			spec.URL = line(s.URL)
		}
		h.Specs = append(h.Specs, spec)
	}
	if res.Duration == 0 && res.Status == conformance.StatusSkip {
		h.Duration = ""
	}
	h.Trace = newHTMLTrace(res, h.Class)
	for n := range res.Evidence {
		st := newHTMLStep(n+1, &res.Evidence[n])
		// In a result that went wrong, the steps that held are folded so
		// the one that did not stands out.
		st.Collapsed = st.Verdict == "ok" && (h.Class == "fail" || h.Class == "error" || h.Class == "warn")
		h.Steps = append(h.Steps, st)
	}
	return h
}

func newHTMLStep(n int, e *conformance.Evidence) htmlStep {
	s := htmlStep{
		N:        n,
		Title:    line(e.Step),
		Verdict:  line(e.Verdict),
		Expected: prose(e.Expected, maxLine),
		Note:     prose(e.Note, maxLine),
	}
	switch e.Verdict {
	case "ok":
		s.VerdictClass = "pass"
	case "mismatch":
		s.VerdictClass = "fail"
	case "error":
		s.VerdictClass = "error"
	default:
		s.VerdictClass = "skip"
	}
	if q := e.Request; q != nil {
		hq := &htmlRequest{Method: line(q.Method), URL: line(q.URL), Source: line(q.Source), Headers: kvs(q.Headers)}
		hq.Body, hq.BodyNote = body(q.Body, maxBody)
		if q.Token != nil {
			hq.Token = newHTMLToken(q.Token)
		}
		s.Request = hq
	}
	if p := e.Response; p != nil {
		hp := &htmlResponse{Status: p.Status, Duration: fmtMS(p.DurationMS), Error: line(p.Error), Headers: kvs(p.Headers)}
		switch {
		case p.Status >= 500 || p.Status == 0:
			hp.StatusClass = "error"
		case p.Status >= 400:
			hp.StatusClass = "reject"
		default:
			hp.StatusClass = "accept"
		}
		if v, ok := header(p.Headers, "WWW-Authenticate"); ok {
			hp.WWWAuth, hp.HasWWWAuth = line(v), true
			// Shown on its own; not again in the header list.
			hp.Headers = slices.DeleteFunc(hp.Headers, func(h kv) bool { return strings.EqualFold(h.K, "WWW-Authenticate") })
		}
		hp.Body, hp.BodyNote = body(p.Body, maxBody)
		s.Response = hp
		s.Brief = responseLine(p)
	}
	for j := range e.Upstream {
		u := &e.Upstream[j]
		hu := htmlUpstream{Method: line(u.Method), Path: line(u.Path), Passthrough: u.Passthrough}
		if u.Token != nil {
			hu.Token = newHTMLToken(u.Token)
		}
		if len(u.Claims) > 0 {
			hu.Claims = jsonText(u.Claims, true, maxClaims)
		}
		s.PassthroughUpstream = s.PassthroughUpstream || u.Passthrough
		s.Upstream = append(s.Upstream, hu)
	}
	s.HasExchange = s.Request != nil || s.Response != nil
	return s
}

func newHTMLToken(t *conformance.TokenRef) *htmlToken {
	h := &htmlToken{Label: line(t.Label), JTI: line(t.JTI), SHA256: line(t.SHA256)}
	if len(t.Header) > 0 {
		h.Header = jsonText(t.Header, false, maxClaims)
	}
	if len(t.Claims) > 0 {
		h.Claims = jsonText(t.Claims, true, maxClaims)
	}
	return h
}

func htmlClass(res *conformance.Result) string {
	switch classify(res) {
	case groupFail:
		return "fail"
	case groupError:
		return "error"
	case groupWarn:
		return "warn"
	case groupExpected:
		return "xfail"
	case groupSkip:
		return "skip"
	}
	return "pass"
}

func kvs(m map[string]string) []kv {
	var out []kv
	for _, k := range sortedKeys(m) {
		out = append(out, kv{line(k), line(m[k])})
	}
	return out
}

// slug makes an id usable in a fragment: lower-case letters, digits and
// dashes.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 64 {
			break
		}
	}
	return b.String()
}

// laneOrder places the parties of an agent's world: the actors (the
// agent, the browser shim, the user approving a device request), the
// authorization servers, the MCP servers, the decoy, the model.
var laneOrder = map[string]int{"agent": 0, "browser": 1, "user": 1, "idp": 2, "rs1": 4, "rs2": 5, "decoy": 7, "model": 9}

func laneRank(name string) int {
	if r, ok := laneOrder[name]; ok {
		return r
	}
	switch {
	case strings.HasPrefix(name, "idp"), strings.HasPrefix(name, "as"):
		return 3
	case strings.HasPrefix(name, "rs"):
		return 6
	}
	return 8
}

func laneKind(name string) string {
	switch r := laneRank(name); {
	case r <= 1:
		return "k-actor"
	case r <= 3:
		return "k-as"
	case r <= 6:
		return "k-rs"
	case name == "decoy":
		return "k-decoy"
	case name == "model":
		return "k-model"
	}
	return "k-other"
}

func newHTMLTrace(res *conformance.Result, class string) *htmlTrace {
	runs := traceRuns(res.Trace)
	if len(runs) == 0 {
		return nil
	}
	// Lifelines: the parties present, in a fixed order (then by first
	// appearance); past maxLifelines, the rest share the last one.
	var names []string
	seen := map[string]bool{}
	for _, e := range res.Trace {
		for _, p := range []string{party(e.From), party(e.To)} {
			if !seen[p] {
				seen[p] = true
				names = append(names, p)
			}
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return laneRank(a) - laneRank(b) })
	lane := map[string]int{}
	t := &htmlTrace{Summary: traceSummary(runs)}
	for _, n := range names {
		if len(t.Lanes) == maxLifelines-1 && len(names) > maxLifelines {
			lane[n] = maxLifelines
			continue
		}
		t.Lanes = append(t.Lanes, htmlLane{Name: n, Class: fmt.Sprintf("l%d %s", len(t.Lanes)+1, laneKind(n))})
		lane[n] = len(t.Lanes)
	}
	if len(names) > maxLifelines {
		t.Lanes = append(t.Lanes, htmlLane{Name: fmt.Sprintf("%d others", len(names)-maxLifelines+1), Class: fmt.Sprintf("l%d k-other", maxLifelines)})
	}
	t.Cols = fmt.Sprintf("n%d", len(t.Lanes))

	// Which runs are open: in a result that went wrong, those whose
	// checks did not hold (all of them if none can be told apart).
	failing := class == "fail" || class == "error" || class == "warn"
	bad := map[string]bool{}
	for _, e := range res.Evidence {
		if e.Verdict == "mismatch" || e.Verdict == "error" {
			for _, r := range runs {
				if r.Name != "" && strings.HasPrefix(e.Step, r.Name+": ") {
					bad[r.Name] = true
				}
			}
		}
	}
	shown := 0
	for _, r := range runs {
		hr := htmlRun{Name: tfield(r.Name), Meta: runMeta(&r),
			Open: failing && (len(runs) == 1 || len(bad) == 0 || bad[r.Name])}
		hr.Bad = hr.Open
		for i := range r.Lines {
			if shown == maxTraceLines {
				t.Omitted += len(r.Lines) - i
				break
			}
			shown++
			hr.Msgs = append(hr.Msgs, newHTMLMsg(&r.Lines[i], lane))
		}
		t.Runs = append(t.Runs, hr)
	}
	return t
}

func newHTMLMsg(l *traceLine, lane map[string]int) htmlMsg {
	e := &l.First
	from, to := party(e.From), party(e.To)
	m := htmlMsg{
		Seq: l.seqText(), At: l.atText(), Class: traceClass(e),
		From: from, To: to,
		Method: tfield(e.Method), Path: tfield(e.Path), What: tfield(e.What), Status: statusText(e.Status),
		Times: l.N, Note: tfield(e.Note),
	}
	if e.Token != nil {
		m.Token, m.TokenID = tokenName(e.Token), tokenIDs(e.Token)
		// The decoy never asks for a token (docs/AGENTS.md): any token
		// it receives is a leak, whatever it answered.
		m.Leak = to == "decoy"
	}
	a, b := lane[from], lane[to]
	lo, hi := min(a, b), max(a, b)
	m.Place = fmt.Sprintf("s%d", lo)
	switch {
	case a == b:
		m.Line = fmt.Sprintf("s%d self", lo)
	case a < b:
		m.Line = fmt.Sprintf("s%d e%d", lo, hi)
	default:
		m.Line = fmt.Sprintf("s%d e%d rtl", lo, hi)
	}
	return m
}
