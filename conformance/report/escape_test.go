package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	gmhtml "github.com/yuin/goldmark/renderer/html"
	"golang.org/x/net/html"
)

// Strings a hostile target (or a hostile scenario file) can put into a
// report: in bodies and headers it answers with, in claims of tokens it
// mints for its upstream, in paths the upstream sees.
const (
	xss     = `<script>alert(1)</script>`
	jsLink  = `[click me](javascript:alert(document.cookie))`
	jsClose = `](javascript:alert(1))`
	pipes   = `a|b||c`
	ticks   = "``` `x` ``"
	img     = `<img src=x onerror=alert(2)>`
	details = "</details></summary><details open><summary>x"
	fence   = "```\n# injected heading\n```"
	ctrl    = "\x1b[31mred\x1b[0m\x00\u202Eevil\u2066"
	cdata   = "]]><evil/>"
	badUTF8 = "\xff\xfe\xfd"
)

// hostile is a report full of those strings in every field a renderer
// shows.
func hostile() *conformance.Report {
	tok := &conformance.TokenRef{
		Label: ticks + pipes, JTI: xss, SHA256: "0123456789abcdef",
		Header: map[string]any{"alg": xss, "kid": jsClose},
		Claims: map[string]any{"sub": img, "aud": []any{pipes, ticks}},
	}
	ev := conformance.Evidence{
		Step: xss + jsLink,
		Request: &conformance.Request{Method: "GET" + pipes, URL: "http://127.0.0.1:1/?q=" + xss + ticks, Source: img,
			Headers: map[string]string{xss: img}, Body: details + fence, Token: tok},
		Response: &conformance.Response{Status: 401, DurationMS: 1,
			Headers: map[string]string{"Www-Authenticate": `Bearer error="` + img + `"` + pipes + ticks, img: xss},
			Body:    "<html>" + xss + "\n" + fence + "\n" + details + "\n" + cdata + ctrl + badUTF8 + "\n" + jsLink + "\n| x | y |\n|---|---|"},
		Upstream: []conformance.Upstream{{Method: xss, Path: jsClose + pipes, Token: tok, Passthrough: true, Claims: map[string]any{"act": map[string]any{"sub": xss}}}},
		Expected: jsLink + pipes + ticks + xss,
		Verdict:  xss,
		Note:     details + ctrl,
	}
	spec := []conformance.SpecRef{
		{ID: jsLink, Text: xss + ticks + details, URL: "javascript:alert(1)"},
		{ID: "parens", URL: "https://example.com/a)b[c]"},
		{ID: "data", URL: "data:text/html,<script>alert(1)</script>"},
	}
	// An agent's trace: run names come from scenario files, paths and
	// notes from what the agent sent and the servers answered.
	trace := []conformance.TraceEntry{
		{Run: xss + pipes, Seq: 1, From: "- " + xss, To: img + ticks, Method: "GET" + pipes, Path: jsClose + ticks + details,
			What: fence, Status: 401, Token: tok, Note: details + ctrl + badUTF8},
		{Run: xss + pipes, Seq: 2, AtMS: 1, From: "1. x", To: "decoy", Method: xss, Path: "/?q=" + img, What: jsLink, Status: 200, Token: tok},
		{Run: xss + pipes, Seq: 3, AtMS: 2, From: "1. x", To: "decoy", Method: xss, Path: "/?q=" + img, What: jsLink, Status: 200, Token: tok},
		{Run: cdata + badUTF8, Seq: 1, From: "agent", To: "### " + xss, Method: "POST", Path: "/t/agents/token", What: "token: " + ticks, Status: -3,
			Token: &conformance.TokenRef{JTI: jsClose, SHA256: img}, Note: jsLink + "\n" + fence},
	}
	res := func(id string, st conformance.Status) conformance.Result {
		return conformance.Result{
			ID: id + xss + pipes, Title: jsLink + pipes + ticks + img, Status: st, Severity: conformance.MUST,
			Reason: jsClose + pipes + img + ctrl + badUTF8, Why: details + xss + "\n\n# heading", SpecRefs: spec,
			Evidence: []conformance.Evidence{ev}, Figures: map[string]float64{xss + "_ms": 1, pipes: 2},
			Duration: time.Millisecond, Trace: trace,
		}
	}
	results := []conformance.Result{
		res("fail", conformance.StatusFail),
		res("error", conformance.StatusError),
		res("warn", conformance.StatusWarn),
		res("skip", conformance.StatusSkip),
		res("pass", conformance.StatusPass),
	}
	xf := res("xfail", conformance.StatusFail)
	xf.Expected = true
	stale := res("stale", conformance.StatusPass)
	stale.Stale = true
	results = append(results, xf, stale)
	return &conformance.Report{
		Schema:    conformance.SchemaVersion,
		Agentsso:  conformance.Build{Version: xss, Digest: img, GoVersion: ticks},
		Catalogue: conformance.Catalogue{Version: pipes, Hash: jsClose, Sources: []string{xss}},
		Target: conformance.TargetInfo{Name: xss + pipes + ticks, Kind: img, URL: "javascript:alert(1)", Audience: jsLink,
			Tenant: details, Features: []string{xss, pipes}},
		IdP: conformance.IdPInfo{URL: jsLink, Tenants: []conformance.TenantKeys{
			{Tenant: xss, Issuer: jsLink, Backend: img, KID: ticks + pipes, Alg: details}}},
		Results:       results,
		Verdict:       "fail",
		VerdictReason: xss + jsLink + pipes + ticks + ctrl,
	}
}

// walk calls f for every element node under n.
func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}

// checkDOM asserts that a rendered page holds no active content from the
// report: no script but the allowed ones, no element that loads or runs
// something, no event handler, no link but http(s) and fragments.
func checkDOM(t *testing.T, doc *html.Node, scripts, h1s int) {
	t.Helper()
	n, nh1 := 0, 0
	walk(doc, func(e *html.Node) {
		switch e.Data {
		case "script":
			n++
		case "h1":
			nh1++
		case "img", "iframe", "object", "embed", "form", "input", "svg", "math", "base", "link":
			t.Errorf("the page has a <%s> element", e.Data)
		}
		for _, a := range e.Attr {
			key, val := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
			if strings.HasPrefix(key, "on") {
				t.Errorf("<%s> has an event handler %s=%q", e.Data, a.Key, a.Val)
			}
			if (key == "href" || key == "src") && !strings.HasPrefix(val, "#") && !strings.HasPrefix(val, "https://") && !strings.HasPrefix(val, "http://") {
				t.Errorf("<%s %s=%q>: a link that is neither http(s) nor a fragment", e.Data, a.Key, a.Val)
			}
		}
	})
	if n != scripts {
		t.Errorf("the page has %d <script> elements, want %d", n, scripts)
	}
	if nh1 != h1s {
		t.Errorf("the page has %d <h1> elements, want %d: a heading came from the report's text", nh1, h1s)
	}
}

func TestMarkdownEscapesHostileText(t *testing.T) {
	var md bytes.Buffer
	if err := WriteMarkdown(&md, hostile()); err != nil {
		t.Fatal(err)
	}
	// Render it as GitHub would (GFM), but with raw HTML passed through
	// rather than sanitized, so that anything not escaped shows.
	gm := goldmark.New(goldmark.WithExtensions(extension.GFM), goldmark.WithRendererOptions(gmhtml.WithUnsafe()))
	var out bytes.Buffer
	if err := gm.Convert(md.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&out)
	if err != nil {
		t.Fatal(err)
	}
	checkDOM(t, doc, 0, 0)

	// Every <details> is one the renderer opened for evidence and for the
	// agent's trace: two per failure, error and warning (the stale one
	// carries evidence too).
	var nDetails int
	walk(doc, func(e *html.Node) {
		if e.Data == "details" {
			nDetails++
			for _, a := range e.Attr {
				if a.Key == "open" {
					t.Error("a <details open> came from the report's text")
				}
			}
		}
	})
	if nDetails != 8 {
		t.Errorf("%d <details> elements, want 8", nDetails)
	}
	// Each trace is numbered lists of its own: nothing in a party's name
	// or a path opened a nested list or a heading.
	walk(doc, func(e *html.Node) {
		if (e.Data == "ol" || e.Data == "ul") && e.Parent != nil && e.Parent.Data == "li" && e.Parent.Parent.Data == "ol" {
			t.Errorf("a nested list came from the report's text: %q", textOf(e))
		}
	})

	// Every table row has as many cells as its header: "|" in text does
	// not split cells.
	walk(doc, func(tbl *html.Node) {
		if tbl.Data != "table" {
			return
		}
		want := -1
		walk(tbl, func(tr *html.Node) {
			if tr.Data != "tr" {
				return
			}
			cells := 0
			for c := tr.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.ElementNode && (c.Data == "td" || c.Data == "th") {
					cells++
				}
			}
			if want < 0 {
				want = cells
			} else if cells != want {
				t.Errorf("a table row has %d cells, its header %d: %q", cells, want, textOf(tr))
			}
		})
	})

	// The hostile strings are shown as text, not dropped.
	text := textOf(doc)
	for _, s := range []string{xss, jsClose, pipes, "`x`", img} {
		if !strings.Contains(text, s) {
			t.Errorf("the rendered Markdown does not show %q as text", s)
		}
	}
	raw := md.String()
	for _, s := range []string{"\x1b", "\x00", "\u202E", "\u2066", "\xff"} {
		if strings.Contains(raw, s) {
			t.Errorf("the Markdown contains %q", s)
		}
	}
}

func TestHTMLEscapesHostileText(t *testing.T) {
	var page bytes.Buffer
	if err := WriteHTML(&page, hostile()); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(page.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	checkDOM(t, doc, 1, 1)
	walk(doc, func(e *html.Node) {
		if e.Data == "script" && textOf(e) != htmlJS {
			t.Errorf("unexpected script %q", textOf(e))
		}
		// The CSP allows the style sheet by hash: the page must carry
		// exactly those bytes, or a browser shows it unstyled.
		if e.Data == "style" && !strings.Contains(htmlCSP, cspHash(textOf(e))) {
			t.Error("the <style> element does not match the hash in the Content-Security-Policy")
		}
		if e.Data == "meta" {
			for _, a := range e.Attr {
				if a.Key == "content" && strings.HasPrefix(a.Val, "default-src") && a.Val != htmlCSP {
					t.Errorf("CSP = %q, want %q", a.Val, htmlCSP)
				}
			}
		}
	})
	text := textOf(doc)
	for _, s := range []string{xss, jsLink, img, fence, cdata} {
		if !strings.Contains(text, s) {
			t.Errorf("the page does not show %q as text", s)
		}
	}
	raw := page.String()
	for _, s := range []string{"\x1b", "\x00", "\u202E", "\u2066", "\xff"} {
		if strings.Contains(raw, s) {
			t.Errorf("the page contains %q", s)
		}
	}
	if !strings.Contains(raw, `http-equiv="Content-Security-Policy"`) {
		t.Error("the page has no Content-Security-Policy")
	}
}

func TestMdCode(t *testing.T) {
	for _, tt := range []struct {
		in      string
		inTable bool
		want    string
	}{
		{"plain", false, "`plain`"},
		{"a`b", false, "``a`b``"},
		{"`a", false, "`` `a ``"},
		{"a``b```c", false, "````a``b```c````"},
		{"a|b", true, "`a\\|b`"},
		{"a|b", false, "`a|b`"},
		{"", false, "_(empty)_"},
		{"line\nbreak", false, "`line break`"},
	} {
		if got := mdCode(tt.in, tt.inTable); got != tt.want {
			t.Errorf("mdCode(%q, %v) = %q, want %q", tt.in, tt.inTable, got, tt.want)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\n\tok":     "plain text\n\tok",
		"crlf\r\nline":         "crlf\nline",
		"esc\x1b[0m":           "esc\uFFFD[0m",
		"nul\x00":              "nul\uFFFD",
		"bidi\u202Eevil\u2069": "bidi\uFFFDevil\uFFFD",
		"bad\xffutf8":          "bad\uFFFDutf8",
		"c1\u0085":             "c1\uFFFD",
		"non\uFFFEchar":        "non\uFFFDchar",
		"ünïcödé ✓":            "ünïcödé ✓",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
