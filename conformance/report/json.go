package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/agentsso/agentsso/conformance"
)

//go:embed schema.json
var schemaJSON []byte

// JSONSchema returns the JSON Schema (draft 2020-12) of the report JSON
// that WriteJSON writes and ReadJSON reads.
func JSONSchema() []byte { return bytes.Clone(schemaJSON) }

// SchemaError is returned by ReadJSON for a document whose "schema" field
// is missing or names a schema version this agentsso cannot read.
type SchemaError struct {
	Got     string
	Missing bool // the document has no "schema" field
}

func (e *SchemaError) Error() string {
	if e.Missing {
		return fmt.Sprintf("report: field \"schema\" is missing: not an agentsso report (want %q)", conformance.SchemaVersion)
	}
	return fmt.Sprintf("report: field \"schema\" is %q, which this agentsso cannot read (want %q)", e.Got, conformance.SchemaVersion)
}

// ValidationError is returned by Validate and ReadJSON for a report that
// breaks the schema's rules; Field is a JSON path such as
// "results[3].status".
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("report: field %q %s", e.Field, e.Reason)
}

// WriteJSON writes r as indented JSON: fields in the order of
// docs/REPORT-SCHEMA.md, map keys sorted, results in report order, so the
// same report always gives the same bytes. An empty Schema is written as
// conformance.SchemaVersion; missing arrays are written as []; figures
// that are NaN or infinite are left out (JSON has no such numbers).
func WriteJSON(w io.Writer, r *conformance.Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	out := normalize(r)
	if out.Schema != conformance.SchemaVersion {
		return &SchemaError{Got: out.Schema}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// HTML escaping stays on (<, >, & as \u003c, \u003e, \u0026): target
	// bodies are attacker-controlled and a published report.json may end
	// up inside a web page. Every JSON parser decodes it back.
	return enc.Encode(out)
}

// normalize returns a shallow copy of r with the defaults WriteJSON
// writes; it never modifies r.
func normalize(r *conformance.Report) *conformance.Report {
	out := *r
	if out.Schema == "" {
		out.Schema = conformance.SchemaVersion
	}
	if out.IdP.Tenants == nil {
		out.IdP.Tenants = []conformance.TenantKeys{}
	}
	out.Results = make([]conformance.Result, len(r.Results))
	copy(out.Results, r.Results)
	for i := range out.Results {
		res := &out.Results[i]
		if res.SpecRefs == nil {
			res.SpecRefs = []conformance.SpecRef{}
		}
		res.Figures = finite(res.Figures)
	}
	return &out
}

// finite drops NaN and infinite figures, which JSON cannot hold: a
// measurement that never converged must not cost the whole report.
func finite(m map[string]float64) map[string]float64 {
	ok := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	for _, v := range m {
		if !ok(v) {
			out := make(map[string]float64, len(m))
			for k, v := range m {
				if ok(v) {
					out[k] = v
				}
			}
			return out
		}
	}
	return m
}

// ReadJSON reads a report that WriteJSON wrote. It rejects a document
// whose "schema" field is missing or unknown (*SchemaError), one that is
// not a single JSON object (trailing data included), and one that fails Validate
// (*ValidationError). Fields it does not know are ignored: later versions
// of the same schema only add fields.
func ReadJSON(rd io.Reader) (*conformance.Report, error) {
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	// The schema is checked before anything else, so that a report of
	// another version gets this error rather than a type mismatch.
	var probe struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("report: not a JSON report object: %w", err)
	}
	if probe.Schema == nil || *probe.Schema != conformance.SchemaVersion {
		if probe.Schema == nil {
			return nil, &SchemaError{Missing: true}
		}
		return nil, &SchemaError{Got: *probe.Schema}
	}
	var r conformance.Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := Validate(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks the rules of the schema that JSON decoding alone does
// not: the schema version, the verdict, that every result has an id, a
// known status and a known severity, and that every trace entry names
// who sent it and who received it. The renderers do not need it
// (they show whatever they are given); ReadJSON applies it, and the
// engine's tests can.
func Validate(r *conformance.Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	if r.Schema != conformance.SchemaVersion {
		return &SchemaError{Got: r.Schema}
	}
	if r.Verdict != "pass" && r.Verdict != "fail" {
		return &ValidationError{"verdict", fmt.Sprintf("is %q: want \"pass\" or \"fail\"", r.Verdict)}
	}
	if r.Results == nil {
		return &ValidationError{"results", "is missing: want an array"}
	}
	for i := range r.Results {
		res := &r.Results[i]
		field := func(name string) string { return fmt.Sprintf("results[%d].%s", i, name) }
		if res.ID == "" {
			return &ValidationError{field("id"), "is empty"}
		}
		switch res.Status {
		case conformance.StatusPass, conformance.StatusFail, conformance.StatusWarn, conformance.StatusSkip, conformance.StatusError:
		default:
			return &ValidationError{field("status"), fmt.Sprintf("is %q: want pass, fail, warn, skip or error", res.Status)}
		}
		switch res.Severity {
		case conformance.MUST, conformance.SHOULD, conformance.MUSTIfDeclared:
		default:
			return &ValidationError{field("severity"), fmt.Sprintf("is %q: want MUST, SHOULD or MUST-if-declared", res.Severity)}
		}
		for j := range res.Trace {
			e := &res.Trace[j]
			switch {
			case e.From == "":
				return &ValidationError{field(fmt.Sprintf("trace[%d].from", j)), "is empty"}
			case e.To == "":
				return &ValidationError{field(fmt.Sprintf("trace[%d].to", j)), "is empty"}
			}
		}
	}
	return nil
}
