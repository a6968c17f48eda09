package conformance

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The webhook takes one record per POST, an array, or JSON lines, and
// reads them back as JSON lines after a mark, like a file.
func TestAuditWebhookReceiver(t *testing.T) {
	a, err := listenAuditWebhook("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	post := func(method, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, a.url(), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(http.MethodPost, `{"sub": "a",`+"\n"+` "decision": "allow"}`); s != http.StatusNoContent {
		t.Fatalf("one pretty-printed record: %d", s)
	}
	m := a.mark()
	for _, tc := range []struct {
		body string
		want int
	}{
		{`[{"sub":"b"},{"sub":"c"}]`, 204},
		{`{"sub":"d"}` + "\n" + `{"sub":"e"}` + "\n", 204},
		{`{"sub":"f"}{"sub":"g"}`, 204},
		{`{"sub":`, 400},
		{`"just a string"`, 400},
		{`[{"sub":"h"}, 3]`, 400},
		{``, 400},
		{strings.Repeat(" ", maxAuditBody+1), 413},
	} {
		if s := post(http.MethodPost, tc.body); s != tc.want {
			t.Errorf("POST %.40q: %d, want %d", tc.body, s, tc.want)
		}
	}
	if s := post(http.MethodGet, ""); s != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", s)
	}
	a.settle(context.Background(), m)
	lines, all, err := a.since(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sub":"b"}` + "\n" + `{"sub":"c"}` + "\n" + `{"sub":"d"}` + "\n" + `{"sub":"e"}` + "\n" + `{"sub":"f"}` + "\n" + `{"sub":"g"}` + "\n"
	if string(lines) != want {
		t.Errorf("records since the mark:\n%s\nwant:\n%s", lines, want)
	}
	if !strings.Contains(string(all), `"decision": "allow"`) {
		t.Errorf("the raw bodies lost the first one: %s", all)
	}
	// settle returns as soon as records are quiet; with none it gives up
	// after auditSettleFirst.
	t0 := time.Now()
	a.settle(context.Background(), a.mark())
	if d := time.Since(t0); d < auditSettleFirst || d > auditSettleFirst+time.Second {
		t.Errorf("settle with no new record took %v", d)
	}
}

// A file sink reads the same way: records after the mark, one per line.
func TestFileAudit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	f := fileAudit(p)
	if f.mark() != 0 {
		t.Fatal("mark of a missing file")
	}
	if err := os.WriteFile(p, []byte(`{"a":1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := f.mark()
	fh, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"a":2}` + "\n")
	fh.Close()
	lines, all, err := f.since(m)
	if err != nil || string(lines) != `{"a":2}`+"\n" || !strings.HasPrefix(string(all), `{"a":1}`) {
		t.Errorf("since: %q %q %v", lines, all, err)
	}
	_, _, err = fileAudit(p + ".missing").since(0)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

func TestTargetAuditSink(t *testing.T) {
	base := "url: http://127.0.0.1:9090/mcp\ntool: t\nupstream: 127.0.0.1:9091\n"
	for _, tc := range []struct {
		audit, field string
	}{
		{"audit: {file: /tmp/a.jsonl}", ""},
		{"audit: {webhook: 127.0.0.1:9092}", ""},
		{"audit: {fields: {agent_id: client}}", "audit"},
		{"audit: {file: /tmp/a.jsonl, webhook: 127.0.0.1:9092}", "audit.webhook"},
		{"audit: {webhook: 10.0.0.1:9092}", "audit.webhook"},
		{"audit: {webhook: 127.0.0.1:0}", "audit.webhook"},
		{"audit: {webhook: 127.0.0.1}", "audit.webhook"},
		{"audit: {webhook: 127.0.0.1:9091}", "audit.webhook"},
	} {
		_, err := ParseTarget("t.yaml", []byte(base+tc.audit+"\n"))
		var pe *ParseError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.audit, err)
		case tc.field != "" && (!errors.As(err, &pe) || pe.Field != tc.field || pe.Line != 4):
			t.Errorf("%s: %v, want an error on %s at line 4", tc.audit, err, tc.field)
		}
	}
}

// The runner listens on the target's webhook address for the run, and
// says so when it cannot.
func TestAuditWebhookBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = newAuditSource(&AuditSink{Webhook: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "audit webhook") {
		t.Errorf("a busy webhook address: %v", err)
	}
}

func TestExpectTimingValidation(t *testing.T) {
	base := "id: x-timed\ntitle: t\nkinds: [gateway]\nseverity: SHOULD\nrefs: [{id: r}]\nsteps:\n"
	for _, tc := range []struct {
		step, field string
	}{
		{"  - call: {token: {}, expect: {outcome: reject, within: 500ms, figure: x_ms}}", ""},
		{"  - call: {token: {}, expect: {outcome: reject, within: -1s}}", "steps[0].call.expect.within"},
		{"  - call: {token: {}, expect: {outcome: reject, within: 2m}}", "steps[0].call.expect.within"},
		{"  - call: {token: {}, expect: {outcome: record, within: 1s}}", "steps[0].call.expect.within"},
		{"  - call: {token: {}, expect: {outcome: reject, figure: x_ms}}", "steps[0].call.expect.figure"},
		{"  - call: {token: {}, expect: {outcome: reject, within: 1s, figure: Bad}}", "steps[0].call.expect.figure"},
	} {
		_, err := ParseScenario("x.yaml", []byte(base+tc.step+"\n"))
		var pe *ParseError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.step, err)
		case tc.field != "" && (!errors.As(err, &pe) || pe.Field != tc.field):
			t.Errorf("%s: %v, want an error on %s", tc.step, err, tc.field)
		}
	}
}
