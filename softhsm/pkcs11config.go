package softhsm

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// PKCS11Config selects a PKCS#11 token and logs in to it.
//
// The token can be given field by field or as an RFC 7512 URI, e.g.
//
//	pkcs11:token=agentsso?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234
//
// The URI's attributes fill the fields left empty; a field set both ways
// to different values is an error naming both. The configuration layer
// resolves environment variables and *_FILE indirections: PIN holds the
// value itself. PINs are never logged: String redacts them.
type PKCS11Config struct {
	// URI is an optional RFC 7512 "pkcs11:" URI. Path attributes: token,
	// manufacturer, model, serial. Query attributes: module-path,
	// pin-value, pin-source (a file holding the PIN, as a path or a
	// file: URI).
	URI string `mapstructure:"uri" json:"uri,omitempty"`
	// Module is the path of the PKCS#11 library (.so).
	Module string `mapstructure:"module" json:"module,omitempty"`
	// Token is the token label. Slots are looked up by label because
	// modules such as SoftHSM2 reassign slot IDs.
	Token string `mapstructure:"token" json:"token,omitempty"`
	// PIN is the user PIN value.
	PIN string `mapstructure:"pin" json:"-"`
	// PINFile is a file holding the user PIN (trailing newline ignored).
	// At most one of PIN and PINFile may be set.
	PINFile string `mapstructure:"pin_file" json:"pin_file,omitempty"`
	// Manufacturer, Model and Serial, when set, must also match the
	// token (RFC 7512 manufacturer=, model=, serial=).
	Manufacturer string `mapstructure:"manufacturer" json:"manufacturer,omitempty"`
	Model        string `mapstructure:"model" json:"model,omitempty"`
	Serial       string `mapstructure:"serial" json:"serial,omitempty"`
	// Sessions is the size of the session pool; 0 means 4.
	Sessions int `mapstructure:"sessions" json:"sessions,omitempty"`
}

// String describes the configuration with the PIN redacted.
func (c PKCS11Config) String() string {
	uri := c.URI
	if u, err := ParsePKCS11URI(uri); err == nil {
		if u.PINValue != "" {
			u.PINValue = "REDACTED"
		}
		uri = u.Encode()
	} else if uri != "" {
		uri = "(unparsable)"
	}
	pin := ""
	if c.PIN != "" {
		pin = "REDACTED"
	}
	return fmt.Sprintf("PKCS11Config{URI:%q Module:%q Token:%q PIN:%q PINFile:%q Sessions:%d}",
		uri, c.Module, c.Token, pin, c.PINFile, c.Sessions)
}

// GoString redacts the PIN for %#v as well.
func (c PKCS11Config) GoString() string { return c.String() }

// Resolve merges URI into the fields, reads PINFile and checks that a
// module, a token and a PIN are known. The result has URI and PINFile
// cleared and PIN set.
func (c PKCS11Config) Resolve() (PKCS11Config, error) {
	if c.URI != "" {
		u, err := ParsePKCS11URI(c.URI)
		if err != nil {
			return c, cfgErr("keys.pkcs11.uri", "%w", err)
		}
		merge := func(field string, dst *string, attr, val string) error {
			switch {
			case val == "":
			case *dst == "":
				*dst = val
			case *dst != val:
				if field == "keys.pkcs11.pin" {
					return cfgErr("keys.pkcs11.uri", "%s conflicts with %s (set the PIN in one place only)", attr, field)
				}
				return cfgErr("keys.pkcs11.uri", "%s=%q conflicts with %s %q (set it in one place only)", attr, val, field, *dst)
			}
			return nil
		}
		for _, m := range []struct {
			field string
			dst   *string
			attr  string
			val   string
		}{
			{"keys.pkcs11.module", &c.Module, "module-path", u.ModulePath},
			{"keys.pkcs11.token", &c.Token, "token", u.Token},
			{"keys.pkcs11.manufacturer", &c.Manufacturer, "manufacturer", u.Manufacturer},
			{"keys.pkcs11.model", &c.Model, "model", u.Model},
			{"keys.pkcs11.serial", &c.Serial, "serial", u.Serial},
			{"keys.pkcs11.pin", &c.PIN, "pin-value", u.PINValue},
			{"keys.pkcs11.pin_file", &c.PINFile, "pin-source", u.PINSource},
		} {
			if err := merge(m.field, m.dst, m.attr, m.val); err != nil {
				return c, err
			}
		}
		c.URI = ""
	}
	if c.PIN != "" && c.PINFile != "" {
		return c, cfgErr("keys.pkcs11.pin", "conflicts with keys.pkcs11.pin_file (or the URI's pin-value with pin-source): set one")
	}
	if c.PINFile != "" {
		b, err := os.ReadFile(c.PINFile)
		if err != nil {
			return c, cfgErr("keys.pkcs11.pin_file", "%w", err)
		}
		c.PIN = strings.TrimRight(string(b), "\r\n")
		c.PINFile = ""
		if c.PIN == "" {
			return c, cfgErr("keys.pkcs11.pin_file", "the file is empty (write the user PIN into it)")
		}
	}
	switch {
	case c.Module == "":
		return c, cfgErr("keys.pkcs11.module", "required (path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so, or module-path= in keys.pkcs11.uri)")
	case c.Token == "":
		return c, cfgErr("keys.pkcs11.token", "required (the token label, or token= in keys.pkcs11.uri)")
	case c.PIN == "":
		return c, cfgErr("keys.pkcs11.pin", "required (the user PIN, keys.pkcs11.pin_file, or pin-value=/pin-source= in keys.pkcs11.uri)")
	case c.Sessions < 0:
		return c, cfgErr("keys.pkcs11.sessions", "%d is negative (use 0 for the default of 4)", c.Sessions)
	}
	return c, nil
}

// PKCS11URI holds the attributes of an RFC 7512 URI that agentsso uses.
type PKCS11URI struct {
	// Path attributes.
	Token, Manufacturer, Model, Serial string
	// Query attributes.
	ModulePath, PINValue, PINSource string
}

// ParsePKCS11URI parses an RFC 7512 "pkcs11:" URI. Attributes that would
// select something agentsso chooses itself (object, id, type, slot-id)
// or that it cannot honour (module-name) are rejected rather than
// silently ignored, as is any attribute given twice.
func ParsePKCS11URI(s string) (PKCS11URI, error) {
	var u PKCS11URI
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return u, fmt.Errorf("%q does not start with \"pkcs11:\"", redactURI(s))
	}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	set := func(part, kv string) error {
		if kv == "" {
			return nil // empty component, e.g. a trailing ';'
		}
		k, raw, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%s attribute %q is not name=value", part, redactAttr(kv))
		}
		if k == "pin-source" {
			// A file: URI or a plain path; checked before unescaping so
			// that Encode's output reads back unchanged.
			if p, ok := strings.CutPrefix(raw, "file:"); ok {
				raw = strings.TrimPrefix(p, "//")
			}
		}
		v, err := url.PathUnescape(raw)
		if err != nil {
			return fmt.Errorf("%s attribute %q: bad percent-encoding", part, k)
		}
		if seen[k] {
			return fmt.Errorf("attribute %q given twice", k)
		}
		seen[k] = true
		var dst *string
		switch part + ":" + k {
		case "path:token":
			dst = &u.Token
		case "path:manufacturer":
			dst = &u.Manufacturer
		case "path:model":
			dst = &u.Model
		case "path:serial":
			dst = &u.Serial
		case "query:module-path":
			dst = &u.ModulePath
		case "query:pin-value":
			dst = &u.PINValue
		case "query:pin-source":
			dst = &u.PINSource
		case "path:object", "path:id", "path:type":
			return fmt.Errorf("attribute %q is not supported: agentsso names its own keys (give the token only)", k)
		case "path:slot-id", "path:slot-description", "path:slot-manufacturer":
			return fmt.Errorf("attribute %q is not supported: slot IDs change, select the token with token= (and serial=)", k)
		case "query:module-name":
			return errors.New("attribute \"module-name\" is not supported: give module-path= with the library's full path")
		default:
			return fmt.Errorf("%s attribute %q is not supported (want token, manufacturer, model, serial; ?module-path, pin-value, pin-source)", part, k)
		}
		*dst = v
		return nil
	}
	for kv := range strings.SplitSeq(path, ";") {
		if err := set("path", kv); err != nil {
			return PKCS11URI{}, err
		}
	}
	if query != "" {
		for kv := range strings.SplitSeq(query, "&") {
			if err := set("query", kv); err != nil {
				return PKCS11URI{}, err
			}
		}
	}
	if u.PINValue != "" && u.PINSource != "" {
		return PKCS11URI{}, errors.New("pin-value conflicts with pin-source: give one")
	}
	return u, nil
}

// Encode formats u as a "pkcs11:" URI that ParsePKCS11URI reads back
// unchanged. It includes the PIN value: do not log it.
func (u PKCS11URI) Encode() string {
	var path, query []string
	add := func(dst *[]string, k, v string) {
		if v != "" {
			*dst = append(*dst, k+"="+escape(v))
		}
	}
	add(&path, "token", u.Token)
	add(&path, "manufacturer", u.Manufacturer)
	add(&path, "model", u.Model)
	add(&path, "serial", u.Serial)
	add(&query, "module-path", u.ModulePath)
	add(&query, "pin-value", u.PINValue)
	add(&query, "pin-source", u.PINSource)
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// escape percent-encodes everything but RFC 3986 unreserved characters
// and '/', which is common in paths and safe in both URI parts.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '/' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// redactURI hides a pin-value in a string that failed to parse.
func redactURI(s string) string {
	if i := strings.Index(s, "pin-value="); i >= 0 {
		return s[:i] + "pin-value=REDACTED"
	}
	return s
}

func redactAttr(kv string) string {
	if strings.HasPrefix(kv, "pin-value") {
		return "pin-value=REDACTED"
	}
	return kv
}
