package audit_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator/audit"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)

// clock is a fake time source that steps one millisecond per call.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func openLog(t testing.TB, path string) *audit.Log {
	t.Helper()
	c := &clock{t: t0}
	l, err := audit.Open(path, audit.Options{Now: c.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func logPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "audit", "audit.jsonl")
}

func write(t testing.TB, l *audit.Log, e audit.Event) int64 {
	t.Helper()
	seq, err := l.Write(e)
	if err != nil {
		t.Fatalf("Write(%+v): %v", e, err)
	}
	return seq
}

func readAll(t testing.TB, path string, q audit.Query) []audit.Event {
	t.Helper()
	var all []audit.Event
	for {
		p, err := audit.Read(path, q)
		if err != nil {
			t.Fatalf("Read(%+v): %v", q, err)
		}
		all = append(all, p.Events...)
		if !p.More {
			return all
		}
		q.Cursor = p.Next
	}
}

func tokenEvent(i int) audit.Event {
	return audit.Event{
		Tenant:          "acme",
		Endpoint:        "token",
		Method:          "POST",
		Source:          "127.0.0.1:54321",
		ClientID:        fmt.Sprintf("agent-%d", i%3),
		Sub:             "user-42",
		Act:             []string{"agent-1", "orchestrator"},
		GrantType:       "urn:ietf:params:oauth:grant-type:token-exchange",
		ScopesRequested: []string{"read", "write"},
		ScopesGranted:   []string{"read"},
		Aud:             []string{"https://api.example.test"},
		Jti:             fmt.Sprintf("jti-%d", i),
		GrantID:         "grant-7",
		Decision:        audit.DecisionAllow,
		Status:          200,
	}
}

func TestRoundTrip(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)

	full := tokenEvent(1)
	full.Extra = map[string]any{"cnf": map[string]any{"jkt": "abc"}, "n": 3, "ok": true}
	deny := audit.Event{
		Tenant:   "globex",
		Endpoint: "introspect",
		ClientID: "rs-1",
		Decision: audit.DecisionDeny,
		Reason:   "invalid_client: \"bad\" \\ assertion\n<script>&\t\x01 \u2028 café 🔑",
		Status:   401,
	}
	explicit := audit.Event{
		Time:     time.Date(2030, 1, 2, 3, 4, 5, 678999999, time.FixedZone("CET", 3600)),
		Endpoint: "admin.mint",
		Decision: audit.DecisionError,
		Reason:   "bad utf-8: \xff\xfe",
	}
	for _, e := range []audit.Event{full, deny, explicit} {
		write(t, l, e)
	}

	full.Seq, full.Time = 1, t0.Add(1*time.Millisecond).Truncate(time.Millisecond)
	full.Extra = map[string]any{"cnf": map[string]any{"jkt": "abc"}, "n": float64(3), "ok": true}
	deny.Seq, deny.Time = 2, t0.Add(2*time.Millisecond).Truncate(time.Millisecond)
	explicit.Seq, explicit.Time = 3, time.Date(2030, 1, 2, 2, 4, 5, 678000000, time.UTC)
	explicit.Reason = "bad utf-8: \ufffd\ufffd"
	want := []audit.Event{full, deny, explicit}

	got := readAll(t, path, audit.Query{})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events read back (-want +got):\n%s", diff)
	}

	// Time is UTC with milliseconds; empty fields are left out.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if wantLine := `{"seq":3,"time":"2030-01-02T02:04:05.678Z","endpoint":"admin.mint","decision":"error","reason":"bad utf-8: \ufffd\ufffd"}`; lines[2] != wantLine {
		t.Errorf("line 3 = %s\nwant     %s", lines[2], wantLine)
	}
	// MarshalJSON writes what Write writes.
	m, err := deny.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(m) != lines[1] {
		t.Errorf("MarshalJSON = %s\nline      = %s", m, lines[1])
	}
}

// TestLineInFileBeforeClose shows that an event is in the file (at least in
// the OS page cache, which survives the process being killed) as soon as
// Write returns, without Close or Sync.
func TestLineInFileBeforeClose(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.Options{SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 1; i <= 3; i++ {
		seq := write(t, l, tokenEvent(i))
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(raw, []byte("\n")) {
			t.Fatalf("after Write %d the file does not end with a newline: %q", i, raw)
		}
		lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
		if len(lines) != i {
			t.Fatalf("after Write %d the file has %d lines, want %d", i, len(lines), i)
		}
		var e audit.Event
		if err := json.Unmarshal(lines[i-1], &e); err != nil {
			t.Fatalf("last line: %v", err)
		}
		if e.Seq != seq || e.Jti != fmt.Sprintf("jti-%d", i) {
			t.Errorf("last line has seq %d jti %q, want %d jti-%d", e.Seq, e.Jti, seq, i)
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, each = 8, 400
	path := logPath(t)
	l := openLog(t, path)

	var wg sync.WaitGroup
	seqs := make([][]int64, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := tokenEvent(i)
				e.Jti = fmt.Sprintf("w%d-%d", w, i)
				e.Extra = map[string]any{"pad": strings.Repeat("x", i%97)}
				seq, err := l.Write(e)
				if err != nil {
					t.Errorf("Write: %v", err)
					return
				}
				seqs[w] = append(seqs[w], seq)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Every writer saw its seqs increase.
	for w, s := range seqs {
		for i := 1; i < len(s); i++ {
			if s[i] <= s[i-1] {
				t.Fatalf("writer %d got seq %d after %d", w, s[i], s[i-1])
			}
		}
	}
	// The file holds writers*each intact lines, seq 1..N in file order, and
	// every event once.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	seen := map[string]bool{}
	n := int64(0)
	for sc.Scan() {
		n++
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d is not intact: %v: %s", n, err, sc.Bytes())
		}
		if e.Seq != n {
			t.Fatalf("line %d has seq %d", n, e.Seq)
		}
		if seen[e.Jti] {
			t.Fatalf("event %s written twice", e.Jti)
		}
		seen[e.Jti] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Errorf("file has %d lines, want %d", n, writers*each)
	}
}

func TestRestartContinuesSeq(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		write(t, l, tokenEvent(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, path)
	if seq := write(t, l, tokenEvent(3)); seq != 4 {
		t.Errorf("first seq after restart = %d, want 4", seq)
	}
	l.Close()

	var got []int64
	for _, e := range readAll(t, path, audit.Query{}) {
		got = append(got, e.Seq)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4}, got); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
}

// TestRestartAfterTornWrite plays a process killed in the middle of a
// write: the torn line is cut off on the next Open and seq continues after
// the last whole event.
func TestRestartAfterTornWrite(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, l, tokenEvent(0))
	write(t, l, tokenEvent(1))
	l.Close()
	appendFile(t, path, `{"seq":3,"time":"2026-05-01T12:00:00.000Z","endpo`)

	l = openLog(t, path)
	if seq := write(t, l, tokenEvent(2)); seq != 3 {
		t.Errorf("seq after torn write = %d, want 3", seq)
	}
	var jtis []string
	for _, e := range readAll(t, path, audit.Query{}) {
		jtis = append(jtis, e.Jti)
	}
	if diff := cmp.Diff([]string{"jti-0", "jti-1", "jti-2"}, jtis); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestRestartKeepsUnterminatedEvent: a last line that is a whole event but
// lost its newline (an editor) is kept and ended.
func TestRestartKeepsUnterminatedEvent(t *testing.T) {
	path := logPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, `{"seq":41,"time":"2026-05-01T12:00:00.000Z","endpoint":"jwks","decision":"allow"}`)
	l := openLog(t, path)
	if seq := write(t, l, tokenEvent(0)); seq != 42 {
		t.Errorf("seq = %d, want 42", seq)
	}
	if got := readAll(t, path, audit.Query{}); len(got) != 2 {
		t.Errorf("read %d events, want 2", len(got))
	}
}

func TestOpenCorruptLastLine(t *testing.T) {
	path := logPath(t)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, l, tokenEvent(0))
	l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "not json\n")

	_, err = audit.Open(path, audit.Options{})
	var ce *audit.CorruptLineError
	if !errors.As(err, &ce) || !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("Open = %v, want a *CorruptLineError", err)
	}
	if ce.Offset != fi.Size() {
		t.Errorf("Offset = %d, want %d", ce.Offset, fi.Size())
	}
}

func TestOpenLocked(t *testing.T) {
	switch runtime.GOOS {
	case "linux", "darwin", "freebsd", "netbsd", "openbsd", "dragonfly":
	default:
		t.Skipf("no flock(2) on %s", runtime.GOOS)
	}
	path := logPath(t)
	openLog(t, path)
	if _, err := audit.Open(path, audit.Options{}); !errors.Is(err, audit.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestWriteInvalid(t *testing.T) {
	tests := []struct {
		name string
		e    audit.Event
	}{
		{"no endpoint", audit.Event{Decision: audit.DecisionAllow}},
		{"no decision", audit.Event{Endpoint: "token"}},
		{"unknown decision", audit.Event{Endpoint: "token", Decision: "granted"}},
		{"unencodable extra", audit.Event{Endpoint: "token", Decision: audit.DecisionAllow, Extra: map[string]any{"c": make(chan int)}}},
		{"huge extra", audit.Event{Endpoint: "token", Decision: audit.DecisionAllow, Extra: map[string]any{"x": strings.Repeat("x", audit.MaxLineSize)}}},
		{"year 10000", audit.Event{Endpoint: "token", Decision: audit.DecisionAllow, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	path := logPath(t)
	l := openLog(t, path)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := l.Write(tt.e); !errors.Is(err, audit.ErrInvalidEvent) {
				t.Errorf("Write = %v, want ErrInvalidEvent", err)
			}
		})
	}
	// Nothing was written and no seq used up.
	if seq := write(t, l, tokenEvent(0)); seq != 1 {
		t.Errorf("seq after rejected events = %d, want 1", seq)
	}
}

func TestClosed(t *testing.T) {
	l, err := audit.Open(logPath(t), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := l.Write(tokenEvent(0)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if err := l.Sync(); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Sync after Close = %v, want ErrClosed", err)
	}
}

func TestDiscard(t *testing.T) {
	l := audit.Discard
	seq, err := l.Write(tokenEvent(0))
	if seq != 0 || err != nil {
		t.Errorf("Discard.Write = %d, %v; want 0, nil", seq, err)
	}
	if err := l.Sync(); err != nil {
		t.Errorf("Discard.Sync = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Discard.Close = %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := audit.Open("", audit.Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	dir := t.TempDir()
	if _, err := audit.Open(dir, audit.Options{}); err == nil {
		t.Error("Open(a directory) succeeded")
	}
}

// writeMixed writes 30 events: tenants acme/globex alternate, endpoints
// cycle token/introspect/revoke, every fifth is a deny.
func writeMixed(t *testing.T, path string) []audit.Event {
	t.Helper()
	l := openLog(t, path)
	var all []audit.Event
	for i := range 30 {
		e := audit.Event{
			Tenant:   []string{"acme", "globex"}[i%2],
			Endpoint: []string{"token", "introspect", "revoke"}[i%3],
			ClientID: fmt.Sprintf("c%d", i%4),
			Decision: audit.DecisionAllow,
			Jti:      fmt.Sprint(i),
		}
		if i%5 == 0 {
			e.Decision = audit.DecisionDeny
		}
		e.Seq = write(t, l, e)
		all = append(all, e)
	}
	return all
}

func seqsOf(es []audit.Event) []int64 {
	s := []int64{}
	for _, e := range es {
		s = append(s, e.Seq)
	}
	return s
}

func TestReadPaging(t *testing.T) {
	path := logPath(t)
	all := writeMixed(t, path)

	var got []int64
	q := audit.Query{Limit: 7}
	pages := 0
	for {
		p, err := audit.Read(path, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, seqsOf(p.Events)...)
		if p.More && len(p.Events) != 7 {
			t.Errorf("page %d has %d events and More", pages, len(p.Events))
		}
		if !p.More {
			// The last page ends at the end of the file.
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if p.Next != fi.Size() {
				t.Errorf("last Next = %d, want file size %d", p.Next, fi.Size())
			}
			// Reading on from there gives nothing more.
			q.Cursor = p.Next
			if p2, err := audit.Read(path, q); err != nil || len(p2.Events) != 0 || p2.More || p2.Next != p.Next {
				t.Errorf("Read past the end = %+v, %v; want an empty page at %d", p2, err, p.Next)
			}
			break
		}
		q.Cursor = p.Next
	}
	if pages != 5 {
		t.Errorf("read %d pages, want 5", pages)
	}
	if diff := cmp.Diff(seqsOf(all), got); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
}

func TestReadFilters(t *testing.T) {
	path := logPath(t)
	all := writeMixed(t, path)
	filter := func(keep func(audit.Event) bool) []int64 {
		s := []int64{}
		for _, e := range all {
			if keep(e) {
				s = append(s, e.Seq)
			}
		}
		return s
	}
	tests := []struct {
		name string
		q    audit.Query
		want []int64
	}{
		{"all", audit.Query{}, filter(func(audit.Event) bool { return true })},
		{"tenant", audit.Query{Tenant: "globex"}, filter(func(e audit.Event) bool { return e.Tenant == "globex" })},
		{"endpoint", audit.Query{Endpoint: "revoke"}, filter(func(e audit.Event) bool { return e.Endpoint == "revoke" })},
		{"client", audit.Query{ClientID: "c3"}, filter(func(e audit.Event) bool { return e.ClientID == "c3" })},
		{"decision", audit.Query{Decision: audit.DecisionDeny}, []int64{1, 6, 11, 16, 21, 26}},
		{"since", audit.Query{SinceSeq: 27}, []int64{28, 29, 30}},
		{"combined", audit.Query{Tenant: "acme", Endpoint: "token", Decision: audit.DecisionDeny}, []int64{1}},
		{"no match", audit.Query{Tenant: "initech"}, []int64{}},
		{"small pages", audit.Query{Tenant: "acme", Limit: 2}, filter(func(e audit.Event) bool { return e.Tenant == "acme" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seqsOf(readAll(t, path, tt.q))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("seqs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadLimit(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	for i := range audit.MaxLimit + 5 {
		write(t, l, tokenEvent(i))
	}
	for _, tt := range []struct{ limit, want int }{{0, audit.DefaultLimit}, {1, 1}, {5000, audit.MaxLimit}} {
		p, err := audit.Read(path, audit.Query{Limit: tt.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != tt.want || !p.More {
			t.Errorf("Limit %d: %d events, More %v; want %d, true", tt.limit, len(p.Events), p.More, tt.want)
		}
	}
}

func TestReadTornLastLine(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	write(t, l, tokenEvent(0))
	write(t, l, tokenEvent(1))
	l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	line, err := json.Marshal(audit.Event{Seq: 3, Time: t0, Endpoint: "token", Decision: audit.DecisionAllow, Jti: "late"})
	if err != nil {
		t.Fatal(err)
	}
	half := len(line) / 2
	appendFile(t, path, string(line[:half]))

	p, err := audit.Read(path, audit.Query{})
	if err != nil {
		t.Fatalf("Read with a torn last line: %v", err)
	}
	if len(p.Events) != 2 || p.More || p.Next != fi.Size() {
		t.Errorf("Read = %d events, More %v, Next %d; want 2, false, %d", len(p.Events), p.More, p.Next, fi.Size())
	}

	// Once the line is whole, reading on from Next gets it.
	appendFile(t, path, string(line[half:])+"\n")
	p, err = audit.Read(path, audit.Query{Cursor: p.Next})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 1 || p.Events[0].Jti != "late" {
		t.Errorf("Read on = %+v, want the finished event", p.Events)
	}
}

func TestReadCorruptMiddleLine(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	write(t, l, tokenEvent(0))
	l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "{\"seq\":2,\"time\":\"yesterday\"}\n")
	appendFile(t, path, `{"seq":3,"time":"2026-05-01T12:00:00.000Z","endpoint":"token","decision":"allow"}`+"\n")

	_, err = audit.Read(path, audit.Query{})
	var ce *audit.CorruptLineError
	if !errors.As(err, &ce) || !errors.Is(err, audit.ErrCorrupt) {
		t.Fatalf("Read = %v, want a *CorruptLineError", err)
	}
	if ce.Offset != fi.Size() {
		t.Errorf("Offset = %d, want %d", ce.Offset, fi.Size())
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("byte offset %d", fi.Size())) {
		t.Errorf("error %q does not name the offset", err)
	}
}

func TestReadBadQuery(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	write(t, l, tokenEvent(0))
	write(t, l, tokenEvent(1))
	for _, q := range []audit.Query{
		{Cursor: -1},
		{Cursor: 5},       // inside the first line
		{Cursor: 1 << 40}, // past the end
		{Limit: -1},
		{Decision: "denied"},
	} {
		if _, err := audit.Read(path, q); !errors.Is(err, audit.ErrInvalidQuery) {
			t.Errorf("Read(%+v) = %v, want ErrInvalidQuery", q, err)
		}
	}
	if _, err := audit.Read(filepath.Join(t.TempDir(), "missing"), audit.Query{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read(missing file) = %v, want os.ErrNotExist", err)
	}
}

func TestReadEmpty(t *testing.T) {
	path := logPath(t)
	openLog(t, path)
	p, err := audit.Read(path, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(audit.Page{Events: []audit.Event{}}, p); diff != "" {
		t.Errorf("page of an empty log (-want +got):\n%s", diff)
	}
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func FuzzRead(f *testing.F) {
	valid := `{"seq":1,"time":"2026-05-01T12:00:00.000Z","tenant":"acme","endpoint":"token","decision":"allow"}` + "\n" +
		`{"seq":2,"time":"2026-05-01T12:00:00.001Z","endpoint":"introspect","decision":"deny","extra":{"a":[1,"x"]}}` + "\n"
	f.Add([]byte(""), 0)
	f.Add([]byte(valid), 1)
	f.Add([]byte(valid+`{"seq":3,"ti`), 2)
	f.Add([]byte(valid+"garbage\n"+valid), 1)
	f.Add([]byte("\n\n  \n"+valid), 3)
	f.Add([]byte(`{"seq":9223372036854775807,"time":"2026-05-01T12:00:00.000Z","endpoint":"x","decision":"allow"}`+"\n"), 1)
	f.Add([]byte(`{"seq":-5}`), 1)
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		q := audit.Query{Limit: limit%20 + 1}
		if q.Limit <= 0 {
			q.Limit = 1
		}
		for range len(data) + 2 {
			p, err := audit.Read(path, q)
			if err != nil {
				break
			}
			if p.Next < q.Cursor || p.Next > int64(len(data)) {
				t.Fatalf("Next %d outside [%d, %d]", p.Next, q.Cursor, len(data))
			}
			if p.Next > 0 && data[p.Next-1] != '\n' {
				t.Fatalf("Next %d is not at a line start", p.Next)
			}
			if len(p.Events) > q.Limit {
				t.Fatalf("%d events for limit %d", len(p.Events), q.Limit)
			}
			if !p.More {
				break
			}
			if p.Next == q.Cursor {
				t.Fatalf("More without progress at %d", p.Next)
			}
			q.Cursor = p.Next
		}

		// Open recovers the tail or refuses; after a successful Open a
		// written event can be read back from where the file ended.
		l, err := audit.Open(path, audit.Options{SyncInterval: -1})
		if err != nil {
			return
		}
		defer l.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := l.Write(audit.Event{Endpoint: "token", Decision: audit.DecisionAllow})
		if err != nil {
			return // e.g. seq exhausted
		}
		p, err := audit.Read(path, audit.Query{Cursor: fi.Size()})
		if err != nil {
			t.Fatalf("Read of the new event at %d: %v", fi.Size(), err)
		}
		if len(p.Events) != 1 || p.Events[0].Seq != seq {
			t.Fatalf("read back %+v, want one event with seq %d", p.Events, seq)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	l, err := audit.Open(filepath.Join(b.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := tokenEvent(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Write(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteParallel(b *testing.B) {
	l, err := audit.Open(filepath.Join(b.TempDir(), "audit.jsonl"), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := tokenEvent(1)
		for pb.Next() {
			if _, err := l.Write(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := l.Write(tokenEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.Read(path, audit.Query{Limit: 100}); err != nil {
			b.Fatal(err)
		}
	}
}
