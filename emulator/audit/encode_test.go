package audit

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// plainEvent has Event's fields and tags but not its MarshalJSON, so
// encoding/json encodes it the standard way.
type plainEvent Event

func TestMarshalMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 987000000, time.UTC)
	tests := []Event{
		{Seq: 1, Time: at, Endpoint: "token", Decision: DecisionAllow},
		{
			Seq: 1 << 62, Time: at, Tenant: "acme", Endpoint: "token", Method: "POST",
			Source: "[::1]:1234", ClientID: "c", Sub: "s", Act: []string{"a", "b"},
			GrantType: "client_credentials", ScopesRequested: []string{"x"},
			ScopesGranted: []string{"x", "y"}, Aud: []string{"https://rs"}, Jti: "j",
			GrantID: "g", Decision: DecisionDeny, Reason: "invalid_scope: y", Status: 400,
			Extra: map[string]any{"z": 1.5, "a": []any{"q", nil, true}},
		},
		{Seq: 2, Time: at, Endpoint: "e\u2028\u2029\x00\x1f\x7f\"\\/<>&", Decision: "d\xc3\x28 \xed\xa0\x80 ü 𝄞"},
		{Seq: 3, Time: at, Endpoint: "x", Decision: "y", Act: []string{""}, Aud: []string{}},
	}
	for _, e := range tests {
		ours, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		std, err := json.Marshal(plainEvent(e))
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]any
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatalf("our output is not JSON: %v: %s", err, ours)
		}
		if err := json.Unmarshal(std, &b); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(b, a); diff != "" {
			t.Errorf("MarshalJSON differs from encoding/json (-std +ours):\n%s\nours: %s", diff, ours)
		}
	}
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 2, 3, 4, 5, 6, 7000000, time.FixedZone("x", -7*3600-1800)),
	} {
		want := tm.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(appendTime(nil, tm)); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "abc", "\"\\\n\r\t\x00", "\xff", "\u2028", "é🔑", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: not a JSON string: %v", s, b, err)
		}
		std, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var want string
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("appendString(%q) decodes to %q, encoding/json to %q", s, got, want)
		}
		if strings.ContainsAny(string(b), "\n\r") {
			t.Fatalf("appendString(%q) = %q holds a line break", s, b)
		}
	})
}

// TestBackgroundSync checks that the background goroutine fsyncs the file
// once per interval when something was written, and not otherwise.
func TestBackgroundSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	synctest.Test(t, func(t *testing.T) {
		l, err := Open(path, Options{SyncInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := l.Write(Event{Endpoint: "token", Decision: DecisionAllow}); err != nil {
			t.Fatal(err)
		}
		if !l.dirty.Load() {
			t.Fatal("not dirty after Write")
		}
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if !l.dirty.Load() {
			t.Fatal("synced before the interval")
		}
		time.Sleep(600 * time.Millisecond)
		synctest.Wait()
		if l.dirty.Load() {
			t.Fatal("still dirty one interval after Write")
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	e := Event{
		Tenant: "acme", Endpoint: "token", Method: "POST", Source: "127.0.0.1:54321",
		ClientID: "agent-1", Sub: "user-42", Act: []string{"agent-1", "orchestrator"},
		GrantType:       "urn:ietf:params:oauth:grant-type:token-exchange",
		ScopesRequested: []string{"read", "write"}, ScopesGranted: []string{"read"},
		Aud: []string{"https://api.example.test"}, Jti: "jti-1", GrantID: "grant-7",
		Decision: DecisionAllow, Status: 200,
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = appendBody(appendPrefix(buf[:0], 1, time.Time{}), &e)
	}
	b.SetBytes(int64(len(buf)))
}
