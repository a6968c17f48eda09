package report

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance"
	"github.com/google/go-cmp/cmp"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"golang.org/x/net/html"
)

// retryLoop is a run in which the agent hammers rs1 with a rejected
// token: 1 challenge, 3 setup requests, 50 identical rejections, a model
// call, 50 more rejections, a revocation.
func retryLoop(run string) []conformance.TraceEntry {
	tok := &conformance.TokenRef{Label: "access token #1 (aud rs1)", JTI: "j1", SHA256: "0123456789abcdef"}
	var tr []conformance.TraceEntry
	add := func(to, method, path, what string, status int, t *conformance.TokenRef, note string) {
		tr = append(tr, conformance.TraceEntry{Run: run, Seq: len(tr) + 1, AtMS: float64(len(tr)) * 1.5, From: "agent", To: to,
			Method: method, Path: path, What: what, Status: status, Token: t, Note: note})
	}
	add("rs1", "POST", "/mcp", "initialize", 401, nil, "")
	add("rs1", "GET", "/.well-known/oauth-protected-resource/mcp", "metadata", 200, nil, "")
	add("idp", "POST", "/t/agents/token", "token: client_credentials", 200, nil, "")
	add("rs1", "POST", "/mcp", "initialize", 200, tok, "")
	for range 50 {
		add("rs1", "POST", "/mcp", "tools/call notes_read", 401, tok, "invalid_token: the access token was revoked")
	}
	add("model", "POST", "/v1/chat/completions", "model", 200, nil, "")
	for range 50 {
		add("rs1", "POST", "/mcp", "tools/call notes_read", 401, tok, "invalid_token: the access token was revoked")
	}
	add("idp", "POST", "/t/agents/revoke", "revoke", 200, nil, "")
	return tr
}

func TestTraceRuns(t *testing.T) {
	tr := append(retryLoop("first"), retryLoop("second")...)
	// A different token is a different request, even with the same label.
	tr[10].Token = &conformance.TokenRef{Label: "access token #1 (aud rs1)", JTI: "j2", SHA256: "fedcba9876543210"}
	runs := traceRuns(tr)
	if len(runs) != 2 || runs[0].Name != "first" || runs[1].Name != "second" {
		t.Fatalf("runs = %+v", runs)
	}
	type line struct {
		Seq, Text string
		N         int
	}
	var got []line
	for _, l := range runs[0].Lines {
		got = append(got, line{l.seqText(), l.request(), l.N})
	}
	want := []line{
		{"1", "POST /mcp (initialize) 401", 1},
		{"2", "GET /.well-known/oauth-protected-resource/mcp (metadata) 200", 1},
		{"3", "POST /t/agents/token (token: client_credentials) 200", 1},
		{"4", "POST /mcp (initialize) 200", 1},
		{"5–10", "POST /mcp (tools/call notes_read) 401", 6},
		{"11", "POST /mcp (tools/call notes_read) 401", 1},
		{"12–54", "POST /mcp (tools/call notes_read) 401", 43},
		{"55", "POST /v1/chat/completions (model) 200", 1},
		{"56–105", "POST /mcp (tools/call notes_read) 401", 50},
		{"106", "POST /t/agents/revoke (revoke) 200", 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("folded lines (-want +got):\n%s", diff)
	}
	// The challenge (a 401 to a request without a token) is no error.
	if r := runs[1]; r.Requests != 106 || r.Errors != 100 || r.LastMS != 105*1.5 {
		t.Errorf("second run: %d requests, %d errors, last at %v ms", r.Requests, r.Errors, r.LastMS)
	}
	if got, want := traceSummary(runs), "212 requests in 2 runs, 200 answered with an error"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if got, want := runs[1].Lines[4].atText(), "+6 ms – +80 ms"; got != want {
		t.Errorf("a folded line's time is %q, want %q", got, want)
	}

	for _, tt := range []struct {
		e    conformance.TraceEntry
		want string
	}{
		{conformance.TraceEntry{Status: 401}, "chal"},
		{conformance.TraceEntry{Status: 401, Note: "invalid_client: …"}, "err"},
		{conformance.TraceEntry{Status: 401, Token: &conformance.TokenRef{}}, "err"},
		{conformance.TraceEntry{Status: 403}, "err"},
		{conformance.TraceEntry{Status: 0}, "err"},
		{conformance.TraceEntry{Status: 503}, "err"},
		{conformance.TraceEntry{Status: 303}, ""},
		{conformance.TraceEntry{Status: 200, Token: &conformance.TokenRef{}}, ""},
	} {
		if got := traceClass(&tt.e); got != tt.want {
			t.Errorf("traceClass(%+v) = %q, want %q", tt.e, got, tt.want)
		}
	}
	if traceRuns(nil) != nil || traceText(nil) != "" || mdTrace(nil) != "" {
		t.Error("a result without a trace renders a trace")
	}
}

// The Markdown trace is a numbered list per run whose numbers are the
// requests' own, also after a folded line, and only failures, errors and
// warnings show it: a passing scenario shows its length.
func TestMarkdownTrace(t *testing.T) {
	fail := conformance.Result{ID: "agent-handles-401", Title: "t", Status: conformance.StatusFail, Severity: conformance.MUST,
		Reason: "r", Trace: append(retryLoop("one rejection"), retryLoop("")...)}
	pass := conformance.Result{ID: "agent-pkce-s256", Title: "t", Status: conformance.StatusPass, Severity: conformance.MUST,
		Reason: "every check held", Trace: retryLoop("S256 advertised")}
	none := conformance.Result{ID: "jwt-alg-none", Title: "t", Status: conformance.StatusFail, Severity: conformance.MUST, Reason: "r"}
	r := &conformance.Report{Verdict: "fail", Results: []conformance.Result{fail, pass, none}}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	raw := md.String()
	for _, want := range []string{
		"<details><summary>Agent trace: 212 requests in 2 runs, 200 answered with an error</summary>\n\n**Run: one rejection** · 106 requests, 100 answered with an error, 158 ms\n\n1. agent → rs1 `POST /mcp` (initialize) 401\n",
		"\n5. agent → rs1 `POST /mcp` (tools/call notes\\_read) **401** **×50** (5–54) · access token \\#1 (aud rs1) · invalid\\_token: the access token was revoked\n",
		"| PASS | `agent-pkce-s256` t | MUST | trace: 106 requests, 100 answered with an error |",
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, raw)
		}
	}
	if n := strings.Count(raw, "Agent trace:"); n != 1 {
		t.Errorf("%d trace blocks, want 1 (the failure's)", n)
	}

	out := renderGFM(t, md.Bytes())
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	// Each <ol> starts at the number of its first request, and has one
	// item per folded line.
	var lists []string
	walk(doc, func(e *html.Node) {
		if e.Data != "ol" {
			return
		}
		start := "1"
		for _, a := range e.Attr {
			if a.Key == "start" {
				start = a.Val
			}
		}
		items := 0
		for c := e.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && c.Data == "li" {
				items++
			}
		}
		lists = append(lists, fmt.Sprintf("%s+%d", start, items))
	})
	want := []string{"1+5", "55+2", "106+1", "1+5", "55+2", "106+1"}
	if diff := cmp.Diff(want, lists); diff != "" {
		t.Errorf("ordered lists as start+items (-want +got):\n%s\n%s", diff, out)
	}
}

func renderGFM(t *testing.T, md []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := goldmark.New(goldmark.WithExtensions(extension.GFM)).Convert(md, &out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// A long trace is cut to mdMaxTrace with a note, and the block is closed.
func TestMarkdownTraceBudget(t *testing.T) {
	var tr []conformance.TraceEntry
	for i := range 5000 {
		tr = append(tr, conformance.TraceEntry{Seq: i + 1, From: "agent", To: "rs1", Method: "POST", Path: fmt.Sprintf("/mcp/%d", i), Status: 200})
	}
	s := mdTrace(tr)
	if len(s) > mdMaxTrace+200 {
		t.Errorf("the trace block is %d bytes, over %d", len(s), mdMaxTrace)
	}
	if !strings.Contains(s, "The rest of the trace is left out here") || !strings.HasSuffix(s, "</details>\n\n") {
		t.Errorf("a cut trace block ends %q", s[max(0, len(s)-200):])
	}
}

// htmlTraceOf renders a report and returns the trace diagrams of its
// results by result id.
func htmlTraceOf(t *testing.T, r *conformance.Report) map[string]*html.Node {
	t.Helper()
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&page)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*html.Node{}
	walk(doc, func(e *html.Node) {
		if hasClass(e, "result") {
			id := attr(e, "id")
			out[id[strings.Index(id, "-")+1:]] = e
		}
	})
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, c string) bool {
	return n.Type == html.ElementNode && strings.Contains(" "+attr(n, "class")+" ", " "+c+" ")
}

func findAll(n *html.Node, pred func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	walk(n, func(e *html.Node) {
		if pred(e) {
			out = append(out, e)
		}
	})
	return out
}

func TestHTMLTrace(t *testing.T) {
	r := fixture()
	res := htmlTraceOf(t, r)

	// The failing scenario: one run, open, on the lifelines present in
	// their fixed order.
	leak := res["agent-no-token-to-other-audience"]
	runs := findAll(leak, func(e *html.Node) bool { return e.Data == "details" && hasClass(e, "run") })
	if len(runs) != 1 || attr(runs[0], "open") == "" && !hasAttr(runs[0], "open") {
		t.Fatalf("%d runs, want 1, open", len(runs))
	}
	var lanes []string
	for _, e := range findAll(leak, func(e *html.Node) bool { return hasClass(e, "lh") }) {
		lanes = append(lanes, textOf(e)+" "+attr(e, "class"))
	}
	wantLanes := []string{"agent lh l1 k-actor", "browser lh l2 k-actor", "idp lh l3 k-as", "rs1 lh l4 k-rs", "rs2 lh l5 k-rs", "decoy lh l6 k-decoy", "model lh l7 k-model"}
	if diff := cmp.Diff(wantLanes, lanes); diff != "" {
		t.Errorf("lifelines (-want +got):\n%s", diff)
	}
	// One row per request (two revocations folded), each arrow from its
	// sender's lifeline to its receiver's.
	msgs := findAll(leak, func(e *html.Node) bool { return hasClass(e, "msg") && !hasClass(e, "head") })
	if len(msgs) != 29 {
		t.Fatalf("%d rows, want 29", len(msgs))
	}
	row := func(i int) (class, line, text string) {
		m := msgs[i]
		ln := findAll(m, func(e *html.Node) bool { return hasClass(e, "ln") })[0]
		return attr(m, "class"), attr(ln, "class"), strings.Join(strings.Fields(textOf(m)), " ")
	}
	for _, tt := range []struct {
		i                    int
		class, line, snippet string
	}{
		{0, "msg chal", "ln s1 e4", "POST /mcp — initialize — 401"},
		{4, "msg ", "ln s2 e3", "browser → idp: GET /t/agents/authorize — authorize — 303"},
		{10, "msg err", "ln s1 e5", "invalid_token: the access token is not for this resource"},
		{18, "msg ", "ln s1 e6", "access token #1 (aud rs1)a token sent to the decoy"},
		{21, "msg ", "ln s1 e7", "the model API key"},
		{28, "msg ", "ln s1 e3", "29–30+120 ms – +122 ms agent → idp: POST /t/agents/revoke — revoke — 200 ×2"},
	} {
		class, line, text := row(tt.i)
		if class != tt.class || line != tt.line || !strings.Contains(text, tt.snippet) {
			t.Errorf("row %d: class %q line %q text %q; want %q, %q, containing %q", tt.i, class, line, text, tt.class, tt.line, tt.snippet)
		}
	}
	if n := len(findAll(leak, func(e *html.Node) bool { return hasClass(e, "leak") && hasClass(e, "tk") })); n != 4 {
		t.Errorf("%d tokens marked as sent to the decoy, want 4", n)
	}

	// The passing scenario: its two runs folded, named.
	pass := res["agent-handles-401"]
	var names []string
	for _, d := range findAll(pass, func(e *html.Node) bool { return e.Data == "details" && hasClass(e, "run") }) {
		if hasAttr(d, "open") {
			t.Error("a run of a passing scenario is open")
		}
		names = append(names, textOf(findAll(d, func(e *html.Node) bool { return hasClass(e, "rn") })[0]))
	}
	if diff := cmp.Diff([]string{"one rejection", "rejected from the second call on"}, names); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	// Scenarios without a trace have no diagram.
	if n := len(findAll(res["jwt-temporal"], func(e *html.Node) bool { return hasClass(e, "sq") })); n != 0 {
		t.Errorf("jwt-temporal has %d trace diagrams", n)
	}

	// In a failing scenario with several runs, the runs whose checks did
	// not hold are open and the others folded.
	r.Results[len(r.Results)-1].Status = conformance.StatusFail
	r.Results[len(r.Results)-1].Evidence[2].Verdict = "mismatch"
	var open []bool
	for _, d := range findAll(htmlTraceOf(t, r)["agent-handles-401"], func(e *html.Node) bool { return e.Data == "details" && hasClass(e, "run") }) {
		open = append(open, hasAttr(d, "open") && hasClass(d, "bad"))
	}
	if diff := cmp.Diff([]bool{false, true}, open); diff != "" {
		t.Errorf("runs open and marked (-want +got):\n%s", diff)
	}
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

// At 100+ requests the diagram stays bounded: repeats fold, and past
// maxTraceLines the rest is left out with a note; past maxLifelines
// parties share the last lifeline.
func TestHTMLTraceBounds(t *testing.T) {
	var tr []conformance.TraceEntry
	for i := range maxTraceLines + 40 {
		tr = append(tr, conformance.TraceEntry{Seq: i + 1, From: "agent", To: fmt.Sprintf("srv%02d", i%14), Method: "GET", Path: "/", Status: 200})
	}
	res := &conformance.Result{ID: "agent-x", Status: conformance.StatusFail, Severity: conformance.MUST, Trace: tr}
	v := newHTMLTrace(res, "fail")
	if v.Omitted != 40 || len(v.Runs[0].Msgs) != maxTraceLines {
		t.Errorf("%d rows shown, %d omitted; want %d and 40", len(v.Runs[0].Msgs), v.Omitted, maxTraceLines)
	}
	if len(v.Lanes) != maxLifelines || v.Cols != "n10" || v.Lanes[maxLifelines-1].Name != "6 others" {
		t.Errorf("lanes %+v (%s)", v.Lanes, v.Cols)
	}
	// srv13 shares the last lifeline: its arrow ends there.
	if got := v.Runs[0].Msgs[13].Line; got != "s1 e10" {
		t.Errorf("the arrow to a shared lifeline is %q", got)
	}
	folded := newHTMLTrace(&conformance.Result{Trace: retryLoop("")}, "fail")
	if n := len(folded.Runs[0].Msgs); n != 8 || folded.Runs[0].Msgs[4].Times != 50 {
		t.Errorf("a 106-request retry loop is %d rows (want 8), the loop ×%d", n, folded.Runs[0].Msgs[4].Times)
	}
}
