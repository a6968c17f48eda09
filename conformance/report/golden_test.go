package report

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./conformance/report -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-golden +got); if the change is intended, run go test ./conformance/report -update:\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	files := map[string]string{FormatJSON: "report.json", FormatJUnit: "report.xml", FormatMarkdown: "report.md", FormatHTML: "report.html"}
	for _, f := range Formats() {
		t.Run(f, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Render(&buf, f, fixture()); err != nil {
				t.Fatal(err)
			}
			golden(t, files[f], buf.Bytes())
			if dir := t.ArtifactDir(); dir != "" {
				os.WriteFile(filepath.Join(dir, files[f]), buf.Bytes(), 0o644)
			}
		})
	}
}

// The renderers must not change the report they are given.
func TestRenderDoesNotModify(t *testing.T) {
	r := fixture()
	r.Results[2].SpecRefs = nil
	r.IdP.Tenants = nil
	want := fixture()
	want.Results[2].SpecRefs = nil
	want.IdP.Tenants = nil
	for _, f := range Formats() {
		if err := Render(&bytes.Buffer{}, f, r); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("rendering changed the report (-before +after):\n%s", diff)
	}
}

func TestRenderUnknownFormat(t *testing.T) {
	err := Render(&bytes.Buffer{}, "pdf", fixture())
	if !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("Render(pdf) = %v, want ErrUnknownFormat", err)
	}
	if want := `report: unknown report format "pdf": want one of json, junit, md, html`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestFormats(t *testing.T) {
	got := Formats()
	got[0] = "changed"
	if diff := cmp.Diff([]string{"json", "junit", "md", "html"}, Formats()); diff != "" {
		t.Errorf("Formats() (-want +got):\n%s", diff)
	}
}
