package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// adminMaxBody bounds the body of an admin request.
const adminMaxBody = 1 << 20

// RequestError is an admin request that cannot be served as sent. Field
// names the offending field (a JSON path such as "claims.aud" or
// "clients[0].lifetimes.access_token", or "body"), Msg says what is wrong
// and how to fix it.
type RequestError struct {
	Field string
	Msg   string
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Msg }

func badField(field, format string, a ...any) error {
	return &RequestError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// decodeJSON reads the request body into dst strictly: one JSON object,
// no unknown fields, nothing after it. Errors are *RequestError naming
// the field, or *http.MaxBytesError.
func decodeJSON(r *http.Request, dst any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return mbe
		}
		return badField("body", "could not be read: %v", err)
	}
	return decodeJSONBytes(b, dst)
}

func decodeJSONBytes(b []byte, dst any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return badField("body", "empty: send a JSON object (Content-Type: application/json)")
	}
	if err := jsonObjectOnly(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, dst)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badField("body", "has data after the JSON object: send exactly one object")
	}
	return nil
}

// jsonObjectOnly checks that b is syntactically valid JSON and an object.
func jsonObjectOnly(b []byte) error {
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return badField("body", "not valid JSON at byte offset %d: %v", se.Offset, se)
		}
		return badField("body", "not valid JSON: %v", err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' {
		return badField("body", "want a JSON object ({...})")
	}
	return nil
}

var unknownFieldRE = regexp.MustCompile(`^json: unknown field "(.*)"$`)

// jsonError turns an encoding/json error into a *RequestError naming the
// field.
func jsonError(err error, dst any) error {
	var re *RequestError
	if errors.As(err, &re) {
		return re
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := te.Field
		if f == "" {
			f = "body"
		}
		return badField(f, "has a JSON %s where %s is wanted", te.Value, jsonKind(te.Type))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return badField("body", "not valid JSON at byte offset %d: %v", se.Offset, se)
	}
	if m := unknownFieldRE.FindStringSubmatch(err.Error()); m != nil {
		msg := "unknown field"
		if known := jsonFields(dst); len(known) > 0 {
			msg += "; known fields: " + strings.Join(known, ", ")
		}
		return badField(m[1], "%s", msg)
	}
	return badField("body", "%v", err)
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// jsonFields lists the JSON field names of the struct dst points to.
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	if f, ok := dst.(interface{ jsonFieldNames() []string }); ok {
		return f.jsonFieldNames()
	}
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// parseDuration parses a JSON duration string such as "90s" for field f.
func parseDuration(f, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badField(f, "%q is not a duration: want a string such as \"90s\", \"10m\" or \"-15m\"", s)
	}
	return d, nil
}

// --- configuration structs as JSON ---
//
// The configuration types carry YAML tags only (they are read from a YAML
// file). JSON is YAML, so the admin API decodes a configuration object
// with the YAML decoder, strictly, and so accepts exactly the names and
// values of the configuration file: snake_case keys, durations as strings
// such as "10m".

// decodeConfigJSON decodes the JSON object b into the configuration
// struct dst points to.
func decodeConfigJSON(b []byte, dst any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return badField("body", "empty: send a JSON object (Content-Type: application/json)")
	}
	if err := jsonObjectOnly(b); err != nil {
		return err
	}
	if err := yamlStrict(b, dst); err != nil {
		return configDecodeError(b, dst, err)
	}
	return nil
}

func yamlStrict(b []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(dst)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

var (
	yamlLineRE    = regexp.MustCompile(`line \d+: `)
	yamlUnknownRE = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// configDecodeError names the field a YAML decoding error is about.
func configDecodeError(b []byte, dst any, err error) error {
	t := reflect.TypeOf(dst).Elem()
	field := locateConfigError(b, t, "")
	if field == "" {
		field = "body"
	}
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = yamlLineRE.ReplaceAllString(msg, "")
	if m := yamlUnknownRE.FindStringSubmatch(msg); m != nil {
		return badField(field, "unknown field: configuration objects use the configuration file's snake_case names (see docs/ADMIN.md)")
	}
	msg = strings.ReplaceAll(msg, "!!str", "string")
	msg = strings.ReplaceAll(msg, "!!int", "number")
	msg = strings.ReplaceAll(msg, "!!float", "number")
	msg = strings.ReplaceAll(msg, "!!bool", "boolean")
	msg = strings.ReplaceAll(msg, "!!seq", "array")
	msg = strings.ReplaceAll(msg, "!!map", "object")
	msg = strings.ReplaceAll(msg, "time.Duration", "a duration (want a string such as \"10m\")")
	return badField(field, "%s", msg)
}

// locateConfigError finds the path of the first field of the JSON object
// b that does not decode into type t.
func locateConfigError(b []byte, t reflect.Type, path string) string {
	var obj map[string]json.RawMessage
	if t.Kind() != reflect.Struct || json.Unmarshal(b, &obj) != nil {
		return path
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		single, _ := json.Marshal(map[string]json.RawMessage{k: obj[k]})
		if yamlStrict(single, reflect.New(t).Interface()) == nil {
			continue
		}
		p := k
		if path != "" {
			p = path + "." + k
		}
		ft := yamlFieldType(t, k)
		switch {
		case ft == nil:
			return p
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}):
			return locateConfigError(obj[k], ft, p)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			var arr []json.RawMessage
			if json.Unmarshal(obj[k], &arr) != nil {
				return p
			}
			for i, e := range arr {
				if yamlStrict(e, reflect.New(ft.Elem()).Interface()) != nil {
					return locateConfigError(e, ft.Elem(), fmt.Sprintf("%s[%d]", p, i))
				}
			}
		}
		return p
	}
	return path
}

func yamlFieldType(t reflect.Type, name string) reflect.Type {
	for i := range t.NumField() {
		n, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if n == name {
			return t.Field(i).Type
		}
	}
	return nil
}

// configJSON renders a configuration value as JSON with the
// configuration file's names and duration strings.
func configJSON(v any) (json.RawMessage, error) {
	y, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := yaml.Unmarshal(y, &generic); err != nil {
		return nil, err
	}
	return json.Marshal(generic)
}
