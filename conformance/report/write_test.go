package report

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance"
	"github.com/google/go-cmp/cmp"
)

// big is a report whose full evidence is far above GitHub's 1 MiB
// job-summary limit.
func big(failures int) *conformance.Report {
	r := fixture()
	tmpl := r.Results[4] // jwt-temporal: two steps, bodies, claims
	tmpl.Evidence = append([]conformance.Evidence(nil), tmpl.Evidence...)
	for i := range tmpl.Evidence {
		resp := *tmpl.Evidence[i].Response
		resp.Body = strings.Repeat("x", 2000) + "\n" + strings.Repeat("```|<>", 8)
		tmpl.Evidence[i].Response = &resp
	}
	r.Results = nil
	for i := range failures {
		res := tmpl
		res.ID = fmt.Sprintf("generated-%04d", i)
		res.Reason = strings.Repeat("a long reason ", 100)
		r.Results = append(r.Results, res)
	}
	return r
}

func TestMarkdownStaysUnderLimit(t *testing.T) {
	var small bytes.Buffer
	if err := WriteMarkdown(&small, big(100)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(small.String(), "1 MiB limit") {
		t.Errorf("a %d-byte summary was shortened", small.Len())
	}
	for _, n := range []int{300, 1000, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := big(n)
			var md bytes.Buffer
			if err := WriteMarkdown(&md, r); err != nil {
				t.Fatal(err)
			}
			if md.Len() >= MarkdownLimit {
				t.Fatalf("Markdown is %d bytes, over the %d-byte limit", md.Len(), MarkdownLimit)
			}
			out := md.String()
			if !strings.Contains(out, "1 MiB limit") {
				t.Error("the Markdown was shortened without a note saying so")
			}
			if open, closed := strings.Count(out, "<details>"), strings.Count(out, "</details>"); open != closed {
				t.Errorf("%d <details> but %d </details>: a block was cut", open, closed)
			}
			if !strings.HasSuffix(out, "</sub>\n") {
				t.Errorf("the Markdown does not end with its footer: %q", out[max(0, len(out)-200):])
			}
			// The first failures keep their evidence.
			if !strings.Contains(out, "#### FAIL `generated-0000`") || !strings.Contains(out, "Evidence: 2 steps") {
				t.Error("the first failure lost its evidence")
			}
		})
	}
}

func TestWriteAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "run1")
	r := fixture()
	paths, err := WriteAll(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, "report.json"), filepath.Join(dir, "report.xml"),
		filepath.Join(dir, "report.md"), filepath.Join(dir, "report.html"),
	}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	for i, f := range Formats() {
		var buf bytes.Buffer
		if err := Render(&buf, f, r); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("%s differs from Render(%s)", paths[i], f)
		}
		fi, err := os.Stat(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", paths[i], fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("dir: %v, %v; want mode 0755", fi.Mode().Perm(), err)
	}

	// Writing again replaces the files and still leaves no temporary file.
	r.Verdict = "pass"
	if _, err := WriteAll(dir, r); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"report.html", "report.json", "report.md", "report.xml"}, names); diff != "" {
		t.Errorf("files in the output directory (-want +got):\n%s", diff)
	}
	back, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if got, err := ReadJSON(back); err != nil || got.Verdict != "pass" {
		t.Errorf("report.json after the second write: verdict %v, %v", got, err)
	}
}

// A report that cannot be rendered writes nothing at all.
func TestWriteAllRenderErrorWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	r := fixture()
	r.Schema = "agentsso.report/v0"
	var se *SchemaError
	if _, err := WriteAll(dir, r); !errors.As(err, &se) {
		t.Fatalf("WriteAll = %v, want a *SchemaError", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the output directory exists after a failed render: %v", err)
	}
}

// A failed write (here: the final name is a directory, so the rename
// fails) removes its temporary file and keeps the files written before.
func TestWriteAllFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "report.md"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md", "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	paths, err := WriteAll(dir, fixture())
	if err == nil {
		t.Fatal("WriteAll succeeded over a directory named report.md")
	}
	if len(paths) != 2 {
		t.Errorf("paths = %v, want the two files written before the failure", paths)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestNilReport(t *testing.T) {
	for _, f := range Formats() {
		if err := Render(&bytes.Buffer{}, f, nil); err == nil {
			t.Errorf("Render(%s, nil) succeeded", f)
		}
	}
	if _, err := WriteAll(t.TempDir(), nil); err == nil {
		t.Error("WriteAll(nil) succeeded")
	}
}
