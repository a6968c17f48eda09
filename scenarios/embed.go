// Package scenarios is agentsso's scenario catalogue: one YAML file per
// scenario, embedded in the binary. The step language is documented in
// docs/SCENARIOS.md; catalog.yaml is generated from the files and checked
// by a test.
package scenarios

import (
	"embed"
	"io/fs"
)

//go:embed *.yaml
var files embed.FS

// Version of the catalogue; bump it when a scenario's meaning changes.
const Version = "2026.11-1"

// FS is the embedded catalogue.
func FS() fs.FS { return files }
