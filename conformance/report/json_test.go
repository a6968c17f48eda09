package report

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/conformance"
	"github.com/google/go-cmp/cmp"
)

func TestJSONRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, fixture()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fixture(), got); diff != "" {
		t.Errorf("ReadJSON(WriteJSON(r)) (-want +got):\n%s", diff)
	}
}

func TestReadJSONGolden(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fixture(), got); diff != "" {
		t.Errorf("golden report.json reads back differently (-fixture +read):\n%s", diff)
	}
}

func TestWriteJSONDefaults(t *testing.T) {
	r := &conformance.Report{Verdict: "pass", Results: []conformance.Result{{ID: "a", Status: conformance.StatusPass, Severity: conformance.MUST}}}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`"schema": "agentsso.report/v1"`, `"tenants": []`, `"spec_refs": []`} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteJSON output lacks %s:\n%s", want, out)
		}
	}
	if r.Schema != "" || r.Results[0].SpecRefs != nil {
		t.Error("WriteJSON modified its argument")
	}
	if _, err := ReadJSON(&buf); err != nil {
		t.Errorf("ReadJSON of a defaulted report: %v", err)
	}

	var empty bytes.Buffer
	if err := WriteJSON(&empty, &conformance.Report{Verdict: "pass"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(empty.String(), `"results": []`) {
		t.Errorf("a report without results is written without an empty results array:\n%s", empty.String())
	}

	// A figure JSON cannot hold is left out rather than failing the report.
	inf := &conformance.Report{Verdict: "fail", Results: []conformance.Result{{ID: "a", Status: conformance.StatusWarn, Severity: conformance.SHOULD,
		Figures: map[string]float64{"delay_ms": math.Inf(1), "nan": math.NaN(), "polls": 120}}}}
	var ib bytes.Buffer
	if err := WriteJSON(&ib, inf); err != nil {
		t.Fatalf("WriteJSON with an infinite figure: %v", err)
	}
	back, err := ReadJSON(&ib)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]float64{"polls": 120}, back.Results[0].Figures); diff != "" {
		t.Errorf("figures after a round trip (-want +got):\n%s", diff)
	}
	if len(inf.Results[0].Figures) != 3 {
		t.Error("WriteJSON modified the figures it was given")
	}

	var se *SchemaError
	if err := WriteJSON(&bytes.Buffer{}, &conformance.Report{Schema: "agentsso.report/v0"}); !errors.As(err, &se) {
		t.Errorf("WriteJSON with another schema = %v, want *SchemaError", err)
	}
}

func TestReadJSONErrors(t *testing.T) {
	valid := func(edit func(string) string) string {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, fixture()); err != nil {
			t.Fatal(err)
		}
		return edit(buf.String())
	}
	tests := []struct {
		name    string
		in      string
		wantErr any    // *SchemaError or *ValidationError, matched with errors.As
		field   string // the field a ValidationError names
		mention string // the error text must contain this
	}{
		{name: "unknown version", in: `{"schema":"agentsso.report/v2","results":{}}`, wantErr: &SchemaError{}, mention: `field "schema" is "agentsso.report/v2"`},
		{name: "empty version", in: `{"schema":""}`, wantErr: &SchemaError{}, mention: `field "schema" is ""`},
		{name: "no version", in: `{"results":[]}`, wantErr: &SchemaError{}, mention: `field "schema" is missing`},
		{name: "version not a string", in: `{"schema":1}`, mention: "not a JSON report object"},
		{name: "not an object", in: `[1,2]`, mention: "not a JSON report object"},
		{name: "not JSON", in: `<html>`, mention: "not a JSON report object"},
		{name: "empty", in: ``, mention: "not a JSON report object"},
		{name: "trailing data", in: valid(func(s string) string { return s + "{}" }), mention: "after top-level value"},
		{name: "bad verdict", in: valid(func(s string) string { return strings.Replace(s, `"verdict": "fail"`, `"verdict": "maybe"`, 1) }),
			wantErr: &ValidationError{}, field: "verdict"},
		{name: "unknown status", in: valid(func(s string) string { return strings.Replace(s, `"status": "warn"`, `"status": "flaky"`, 1) }),
			wantErr: &ValidationError{}, field: "results[10].status"},
		{name: "unknown severity", in: valid(func(s string) string { return strings.Replace(s, `"severity": "SHOULD"`, `"severity": "MAY"`, 1) }),
			wantErr: &ValidationError{}, field: "results[10].severity"},
		{name: "no id", in: valid(func(s string) string { return strings.Replace(s, `"id": "jwt-alg-none"`, `"id": ""`, 1) }),
			wantErr: &ValidationError{}, field: "results[1].id"},
		{name: "no results", in: `{"schema":"agentsso.report/v1","verdict":"pass"}`, wantErr: &ValidationError{}, field: "results"},
		{name: "trace entry to nobody", in: valid(func(s string) string { return strings.Replace(s, `"to": "decoy"`, `"to": ""`, 1) }),
			wantErr: &ValidationError{}, field: "results[16].trace[18].to"},
		{name: "trace entry from nobody", in: `{"schema":"agentsso.report/v1","verdict":"pass","results":[{"id":"a","status":"pass","severity":"MUST","trace":[{"seq":1,"to":"rs1"}]}]}`,
			wantErr: &ValidationError{}, field: "results[0].trace[0].from", mention: `field "results[0].trace[0].from" is empty`},
		{name: "wrong type", in: `{"schema":"agentsso.report/v1","results":[{"id":7}]}`, mention: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadJSON(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ReadJSON = %+v, want an error", r)
			}
			switch want := tt.wantErr.(type) {
			case *SchemaError:
				if !errors.As(err, &want) {
					t.Errorf("error %v is not a *SchemaError", err)
				}
			case *ValidationError:
				if !errors.As(err, &want) {
					t.Fatalf("error %v is not a *ValidationError", err)
				}
				if want.Field != tt.field {
					t.Errorf("ValidationError.Field = %q, want %q", want.Field, tt.field)
				}
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// Fields a later v1 adds are ignored, as docs/REPORT-SCHEMA.md promises.
func TestReadJSONIgnoresUnknownFields(t *testing.T) {
	in := `{"schema":"agentsso.report/v1","verdict":"pass","later_field":{"x":1},
	        "results":[{"id":"a","status":"pass","severity":"MUST","later":true}]}`
	r, err := ReadJSON(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 1 || r.Results[0].ID != "a" {
		t.Errorf("ReadJSON = %+v", r)
	}
}

// FuzzReadJSON: ReadJSON never panics, and whatever it accepts every
// renderer can render, and writes back to an equal report.
func FuzzReadJSON(f *testing.F) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, fixture()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"schema":"agentsso.report/v1","verdict":"pass","results":[]}`))
	f.Add([]byte(`{"schema":"agentsso.report/v1","verdict":"fail","results":[{"id":"x","status":"error","severity":"MUST","evidence":[{"step":"s","request":null,"response":{"status":0,"error":"timeout"},"upstream":[{}]}],"figures":{"a_ms":1e308}}]}`))
	f.Add([]byte(`{"schema":"agentsso.report/v1","verdict":"fail","results":[{"id":"<script>","status":"fail","severity":"SHOULD","stale_expected":true,"spec_refs":[{"id":"](javascript:x)","url":"javascript:alert(1)"}]}]}`))
	f.Add([]byte(`{"schema":"agentsso.report/v1","verdict":"fail","results":[{"id":"agent-x","status":"fail","severity":"MUST","evidence":[{"step":"r: c","verdict":"mismatch"}],"trace":[{"run":"r","seq":1,"from":"agent","to":"decoy","method":"POST","path":"/mcp","status":200,"token":{"sha256":"0123456789abcdef","label":"l"}},{"run":"r","seq":2,"from":"agent","to":"decoy","method":"POST","path":"/mcp","status":200,"token":{"sha256":"0123456789abcdef","label":"l"}},{"seq":1,"from":"browser","to":"idp","status":0,"note":"x"}]}]}`))
	f.Add([]byte(`{"schema":"agentsso.report/v2"}`))
	f.Add([]byte(`{"schema":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadJSON(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, format := range Formats() {
			if err := Render(&bytes.Buffer{}, format, r); err != nil {
				t.Fatalf("Render(%s) of an accepted report: %v", format, err)
			}
		}
		var out bytes.Buffer
		if err := WriteJSON(&out, r); err != nil {
			t.Fatalf("WriteJSON of an accepted report: %v", err)
		}
		again, err := ReadJSON(&out)
		if err != nil {
			t.Fatalf("ReadJSON(WriteJSON(r)): %v", err)
		}
		// WriteJSON writes missing arrays as [], so compare the normalized form.
		if diff := cmp.Diff(normalize(r), again); diff != "" {
			t.Fatalf("round trip changed the report (-first +second):\n%s", diff)
		}
	})
}
