// Package report renders a conformance.Report: JSON (the versioned
// contract, docs/REPORT-SCHEMA.md and schema.json), JUnit XML for CI test
// reporters, Markdown for a CI job summary or a pull request comment, and
// one self-contained HTML page for a person.
//
// Everything a target sent back (bodies, headers, claims of tokens it
// minted) is attacker-controlled. The Markdown and HTML renderers escape
// it, strip control and bidirectional-override characters, and bound its
// size; the JUnit renderer relies on encoding/xml's escaping and strips
// the same characters.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/agentsso/agentsso/conformance"
)

// Format names, as Render and `agentsso report --format` take them.
const (
	FormatJSON     = "json"
	FormatJUnit    = "junit"
	FormatMarkdown = "md"
	FormatHTML     = "html"
)

// ErrUnknownFormat is returned (wrapped) by Render for a format it does
// not know.
var ErrUnknownFormat = errors.New("unknown report format")

type format struct {
	name  string
	file  string // the file name WriteAll writes
	write func(io.Writer, *conformance.Report) error
}

var formats = []format{
	{FormatJSON, "report.json", WriteJSON},
	{FormatJUnit, "report.xml", WriteJUnit},
	{FormatMarkdown, "report.md", WriteMarkdown},
	{FormatHTML, "report.html", WriteHTML},
}

// Formats returns the format names Render accepts, in the order WriteAll
// writes them: json, junit, md, html.
func Formats() []string {
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = f.name
	}
	return names
}

// Render writes r to w in the named format (one of Formats()).
func Render(w io.Writer, format string, r *conformance.Report) error {
	for _, f := range formats {
		if f.name == format {
			return f.write(w, r)
		}
	}
	return fmt.Errorf("report: %w %q: want one of %s", ErrUnknownFormat, format, strings.Join(Formats(), ", "))
}

// WriteAll writes report.json, report.xml (JUnit), report.md and
// report.html into dir, creating dir (0755) if needed, and returns their
// paths in that order. Every format is rendered in memory first, so a
// rendering error writes nothing; each file is then written to a
// temporary file in dir, synced and renamed over the final name, so a
// crash leaves either the previous file or the complete new one, never a
// half report.
func WriteAll(dir string, r *conformance.Report) (paths []string, err error) {
	if r == nil {
		return nil, errors.New("report: nil report")
	}
	rendered := make([][]byte, len(formats))
	for i, f := range formats {
		var buf bytes.Buffer
		if err := f.write(&buf, r); err != nil {
			return nil, fmt.Errorf("report: rendering %s: %w", f.file, err)
		}
		rendered[i] = buf.Bytes()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	for i, f := range formats {
		p := filepath.Join(dir, f.file)
		if err := writeFileAtomic(p, rendered[i]); err != nil {
			return paths, fmt.Errorf("report: writing %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	syncDir(dir)
	return paths, nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// syncDir makes the renames durable where the platform allows it; a
// failure only weakens durability, never atomicity, so it is ignored.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// group is where a result is shown, in reading order.
type group int

const (
	groupFail     group = iota // fail (not expected), or a stale expected failure
	groupError                 // error (not expected), or an unknown status
	groupWarn                  // warn
	groupExpected              // fail, warn or error listed in the expected-failures file
	groupSkip                  // skip
	groupPass                  // pass
	numGroups
)

func classify(res *conformance.Result) group {
	switch {
	case res.Stale:
		return groupFail
	case res.Expected && res.Status != conformance.StatusPass && res.Status != conformance.StatusSkip:
		return groupExpected
	}
	switch res.Status {
	case conformance.StatusPass:
		return groupPass
	case conformance.StatusWarn:
		return groupWarn
	case conformance.StatusSkip:
		return groupSkip
	case conformance.StatusFail:
		return groupFail
	}
	return groupError // error, or a status this version does not know
}

// counts are computed from the results, so that every format shows the
// same numbers as the test cases it lists.
type counts struct {
	Total, Pass, Fail, Error, Warn, Skip, Expected, Stale int
}

func countResults(rs []conformance.Result) counts {
	var c counts
	c.Total = len(rs)
	for i := range rs {
		if rs[i].Stale {
			c.Stale++
			continue
		}
		switch classify(&rs[i]) {
		case groupPass:
			c.Pass++
		case groupFail:
			c.Fail++
		case groupError:
			c.Error++
		case groupWarn:
			c.Warn++
		case groupSkip:
			c.Skip++
		case groupExpected:
			c.Expected++
		}
	}
	return c
}

// grouped returns the indexes of r.Results per group, in report order.
func grouped(rs []conformance.Result) [numGroups][]int {
	var g [numGroups][]int
	for i := range rs {
		k := classify(&rs[i])
		g[k] = append(g[k], i)
	}
	return g
}

// verdictWord is PASS or FAIL: the report's verdict, or, when it is
// missing or unknown, the verdict the results imply.
func verdictWord(r *conformance.Report) string {
	switch r.Verdict {
	case "pass":
		return "PASS"
	case "fail":
		return "FAIL"
	}
	// The engine's rule (conformance.Report.finish): a failure, a stale
	// expected failure, an error outside a SHOULD, or a warning in a
	// strict run fails it.
	for i := range r.Results {
		res := &r.Results[i]
		switch classify(res) {
		case groupFail:
			return "FAIL"
		case groupError:
			if res.Severity != conformance.SHOULD {
				return "FAIL"
			}
		case groupWarn:
			if r.Strict {
				return "FAIL"
			}
		}
	}
	return "PASS"
}

// targetName is how a report names its target in one phrase.
func targetName(t conformance.TargetInfo) string {
	switch {
	case t.Name != "":
		return t.Name
	case t.URL != "":
		return t.URL
	}
	return "unnamed target"
}

// clean makes text from a target safe to show anywhere: valid UTF-8, no
// control characters but newline and tab (CR LF becomes LF), and no
// bidirectional overrides or isolates, which could make a line read
// differently from what it is.
func clean(s string) string {
	if isClean(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if unsafeRune(r) {
			b.WriteRune('\uFFFD')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isClean(s string) bool {
	for _, r := range s { // invalid UTF-8 comes out as RuneError
		if r == utf8.RuneError || unsafeRune(r) {
			return false
		}
	}
	return true
}

func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0): // C0, DEL, C1
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi embeddings, overrides, isolates
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	case r == 0xfffe || r == 0xffff: // noncharacters, invalid in XML
		return true
	}
	return false
}

// oneLine cleans s and folds it onto one line.
func oneLine(s string) string {
	s = clean(s)
	if strings.ContainsAny(s, "\n\t") {
		s = strings.Join(strings.Fields(s), " ")
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…", true
}

// header returns a header's value, matching the name case-insensitively
// (the engine may record "WWW-Authenticate" or Go's "Www-Authenticate").
func header(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
