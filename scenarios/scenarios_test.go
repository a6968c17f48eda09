package scenarios_test

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/scenarios"
)

var update = flag.Bool("update", false, "regenerate catalog.yaml")

// TestCatalogue loads every embedded scenario strictly and keeps the
// generated catalog.yaml in step with the files.
func TestCatalogue(t *testing.T) {
	cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Scenarios) == 0 || cs.Scenarios[0].ID != conformance.BaselineID {
		t.Fatalf("the baseline must load first, got %d scenarios", len(cs.Scenarios))
	}
	got := conformance.CatalogYAML(cs, scenarios.Version)
	if *update {
		if err := os.WriteFile("catalog.yaml", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("catalog.yaml")
	if err != nil {
		t.Fatalf("%v (run go test ./scenarios -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("catalog.yaml is stale (go test ./scenarios -update):\n%s", cmp.Diff(string(want), string(got)))
	}
}
