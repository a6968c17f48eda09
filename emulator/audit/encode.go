package audit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// prefixSpace is the room Write keeps at the head of a line buffer for
// `{"seq":N,"time":"T"`, which it can only fill in under the lock: 7 bytes
// of `{"seq":`, at most 19 digits, 9 bytes of `,"time":"`, 24 bytes of
// time and a quote make 60.
const prefixSpace = 64

// appendPrefix appends `{"seq":N,"time":"T"`.
func appendPrefix(b []byte, seq int64, t time.Time) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"time":"`...)
	b = appendTime(b, t)
	return append(b, '"')
}

// appendTime appends t in UTC as 2006-01-02T15:04:05.000Z, truncating to
// the millisecond like time.Format does. The year must be in [0, 9999].
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(b,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+mo/10), byte('0'+mo%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':',
		byte('0'+mi/10), byte('0'+mi%10), ':',
		byte('0'+s/10), byte('0'+s%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// appendBody appends the fields after time, the closing brace and a
// newline.
func appendBody(b []byte, e *Event) ([]byte, error) {
	b = appendStringField(b, `,"tenant":`, e.Tenant)
	b = append(b, `,"endpoint":`...)
	b = appendString(b, e.Endpoint)
	b = appendStringField(b, `,"method":`, e.Method)
	b = appendStringField(b, `,"source":`, e.Source)
	b = appendStringField(b, `,"client_id":`, e.ClientID)
	b = appendStringField(b, `,"sub":`, e.Sub)
	b = appendStringsField(b, `,"act":`, e.Act)
	b = appendStringField(b, `,"grant_type":`, e.GrantType)
	b = appendStringsField(b, `,"scopes_requested":`, e.ScopesRequested)
	b = appendStringsField(b, `,"scopes_granted":`, e.ScopesGranted)
	b = appendStringsField(b, `,"aud":`, e.Aud)
	b = appendStringField(b, `,"jti":`, e.Jti)
	b = appendStringField(b, `,"grant_id":`, e.GrantID)
	b = append(b, `,"decision":`...)
	b = appendString(b, e.Decision)
	b = appendStringField(b, `,"reason":`, e.Reason)
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	if len(e.Extra) > 0 {
		// Rare and free-form: leave it to encoding/json, which sorts the
		// keys and writes compact output (no newline can slip in).
		x, err := json.Marshal(e.Extra)
		if err != nil {
			return b, fmt.Errorf("%w: extra: %v; keep Extra to plain JSON values", ErrInvalidEvent, err)
		}
		b = append(b, `,"extra":`...)
		b = append(b, x...)
	}
	return append(b, '}', '\n'), nil
}

func appendStringField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, name...)
	return appendString(b, s)
}

func appendStringsField(b []byte, name string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, name...)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// noEscape[c] is true for the ASCII bytes a JSON string holds as they are.
var noEscape = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Like encoding/json, it writes
// invalid UTF-8 as U+FFFD and escapes U+2028 and U+2029; unlike it, it
// leaves <, > and & alone (the log is not HTML).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if noEscape[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
