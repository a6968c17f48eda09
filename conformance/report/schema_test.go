package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSONSchema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func instance(t *testing.T, data []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGoldenJSONMatchesSchema(t *testing.T) {
	sch := compileSchema(t)
	data, err := os.ReadFile(filepath.Join("testdata", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(instance(t, data)); err != nil {
		t.Errorf("testdata/report.json does not match schema.json:\n%v", err)
	}

	// The smallest report WriteJSON writes matches too.
	var min bytes.Buffer
	if err := WriteJSON(&min, &conformance.Report{Verdict: "pass"}); err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(instance(t, min.Bytes())); err != nil {
		t.Errorf("an empty report does not match schema.json:\n%v\n%s", err, min.String())
	}
}

// The schema rejects what ReadJSON rejects, so it is not vacuous.
func TestSchemaRejects(t *testing.T) {
	sch := compileSchema(t)
	data, err := os.ReadFile(filepath.Join("testdata", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(map[string]any){
		"other version":   func(m map[string]any) { m["schema"] = "agentsso.report/v2" },
		"no results":      func(m map[string]any) { delete(m, "results") },
		"unknown verdict": func(m map[string]any) { m["verdict"] = "maybe" },
		"unknown status":  func(m map[string]any) { result(m, 0)["status"] = "flaky" },
		"unknown sev":     func(m map[string]any) { result(m, 0)["severity"] = "MAY" },
		"no id":           func(m map[string]any) { delete(result(m, 0), "id") },
		"figure string":   func(m map[string]any) { result(m, 4)["figures"] = map[string]any{"x_ms": "12"} },
		"full token hash": func(m map[string]any) {
			ev := result(m, 0)["evidence"].([]any)[0].(map[string]any)
			ev["request"].(map[string]any)["token"].(map[string]any)["sha256"] = strings.Repeat("ab", 32)
		},
		"bad start": func(m map[string]any) { m["started"] = "yesterday" },
		"trace without to": func(m map[string]any) {
			delete(result(m, 16)["trace"].([]any)[3].(map[string]any), "to")
		},
		"trace with empty from": func(m map[string]any) { result(m, 16)["trace"].([]any)[0].(map[string]any)["from"] = "" },
		"trace status text":     func(m map[string]any) { result(m, 17)["trace"].([]any)[0].(map[string]any)["status"] = "401" },
		"trace token full hash": func(m map[string]any) {
			result(m, 16)["trace"].([]any)[7].(map[string]any)["token"].(map[string]any)["sha256"] = strings.Repeat("ab", 32)
		},
		"trace not an array": func(m map[string]any) { result(m, 16)["trace"] = map[string]any{} },
	} {
		t.Run(name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			edit(m)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(instance(t, b)); err == nil {
				t.Error("schema.json accepted it")
			}
		})
	}
}

func result(m map[string]any, i int) map[string]any {
	return m["results"].([]any)[i].(map[string]any)
}

// Every JSON field of conformance.Report is in schema.json and in
// docs/REPORT-SCHEMA.md, and neither names a field the Go types lack: a
// field added to result.go fails this test until it is documented.
func TestSchemaAndDocsCoverTheTypes(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	defs, _ := schema["$defs"].(map[string]any)
	resolve := func(s map[string]any) map[string]any {
		for {
			ref, ok := s["$ref"].(string)
			if !ok {
				return s
			}
			next, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
			if !ok {
				t.Fatalf("schema.json: unresolvable $ref %q", ref)
			}
			s = next
		}
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "REPORT-SCHEMA.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := docSections(string(doc))

	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, s map[string]any, path string)
	walk = func(typ reflect.Type, s map[string]any, path string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		s = resolve(s)
		switch typ.Kind() {
		case reflect.Slice:
			items, _ := s["items"].(map[string]any)
			if items == nil {
				t.Errorf("schema.json: %s is not an array with items", path)
				return
			}
			walk(typ.Elem(), items, path+"[]")
			return
		case reflect.Struct:
			if typ == reflect.TypeFor[time.Time]() {
				return
			}
		default:
			return
		}
		if seen[typ] {
			return
		}
		seen[typ] = true
		props, _ := s["properties"].(map[string]any)
		fields, ok := sections[path]
		if !ok {
			t.Errorf("docs/REPORT-SCHEMA.md has no section ### `%s`", path)
		}
		goNames := map[string]bool{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			goNames[name] = true
			sub, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("schema.json: %s has no property %q (Go field %s.%s)", path, name, typ.Name(), f.Name)
				continue
			}
			if ok && !fields[name] {
				t.Errorf("docs/REPORT-SCHEMA.md: section `%s` has no row for `%s`", path, name)
			}
			child := name
			if path != "report" {
				child = path + "." + name
			}
			walk(f.Type, sub, child)
		}
		for name := range props {
			if !goNames[name] {
				t.Errorf("schema.json: %s has property %q, which %s does not have", path, name, typ.Name())
			}
		}
		for name := range fields {
			if !goNames[name] {
				t.Errorf("docs/REPORT-SCHEMA.md: section `%s` documents `%s`, which %s does not have", path, name, typ.Name())
			}
		}
	}
	walk(reflect.TypeFor[conformance.Report](), schema, "report")
}

// docSections reads "### `path`" headings and the "| `field` |" rows of
// the table under each.
func docSections(doc string) map[string]map[string]bool {
	heading := regexp.MustCompile("^### `([^`]+)`")
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	out := map[string]map[string]bool{}
	var cur map[string]bool
	for l := range strings.Lines(doc) {
		if m := heading.FindStringSubmatch(l); m != nil {
			cur = map[string]bool{}
			out[m[1]] = cur
			continue
		}
		if strings.HasPrefix(l, "#") {
			cur = nil
			continue
		}
		if m := row.FindStringSubmatch(l); m != nil && cur != nil {
			cur[m[1]] = true
		}
	}
	return out
}
