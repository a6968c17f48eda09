package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// auditSource is where the harness reads a target's audit records: a
// JSON-lines file the target writes, or the records it posts to the
// harness's webhook. Both read the same way: JSON lines after a mark.
type auditSource interface {
	// mark is the position now; records after it belong to what follows.
	mark() int64
	// since returns the records after m, one JSON object per line, and
	// everything the sink ever received as it was received (to search
	// for raw tokens).
	since(m int64) (lines, all []byte, err error)
	// settle waits, within bounds, for records a target sends after it
	// answered (a webhook may post asynchronously).
	settle(ctx context.Context, m int64)
	// where names the sink in evidence.
	where() string
}

func newAuditSource(a *AuditSink) (auditSource, error) {
	if a.Webhook != "" {
		return listenAuditWebhook(a.Webhook)
	}
	return fileAudit(a.File), nil
}

// fileAudit is a JSON-lines file the target appends to.
type fileAudit string

func (f fileAudit) mark() int64 {
	fi, err := os.Stat(string(f))
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (f fileAudit) since(m int64) ([]byte, []byte, error) {
	all, err := os.ReadFile(string(f))
	if err != nil {
		return nil, nil, err
	}
	if m > int64(len(all)) {
		// The file was truncated or replaced: everything is new.
		m = 0
	}
	return all[m:], all, nil
}

func (fileAudit) settle(context.Context, int64) {}

func (f fileAudit) where() string { return string(f) }

// Webhook limits: one POST body, and how long settle waits.
const (
	maxAuditBody     = 4 << 20
	auditSettleFirst = 2 * time.Second
	auditSettleQuiet = 100 * time.Millisecond
)

// auditWebhook is the harness's receiver for a target that posts its
// audit records: each POST carries one JSON object, a JSON array of
// objects, or several objects (JSON lines, or concatenated).
type auditWebhook struct {
	ln  net.Listener
	srv *http.Server
	mu  sync.Mutex
	// lines holds every record, compacted, one per line; raw every body
	// as it came.
	lines, raw []byte
	last       time.Time
}

func listenAuditWebhook(addr string) (*auditWebhook, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("audit webhook: listen %s: %w (is another process using it? the harness receives the target's audit records there)", addr, err)
	}
	a := &auditWebhook{ln: ln}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

// WebhookURL is the URL a target posts its audit records to, for a
// webhook address (HOST:PORT).
func WebhookURL(addr string) string { return "http://" + addr + "/audit" }

func (a *auditWebhook) url() string { return WebhookURL(a.ln.Addr().String()) }

func (a *auditWebhook) close() { _ = a.srv.Close() }

func (a *auditWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST audit records here (JSON: one object, an array, or JSON lines)", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAuditBody+1))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxAuditBody {
		http.Error(w, fmt.Sprintf("the body is over %d bytes: post fewer records at a time", maxAuditBody), http.StatusRequestEntityTooLarge)
		return
	}
	recs, err := parseAuditBody(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.raw = append(append(a.raw, body...), '\n')
	for _, rec := range recs {
		a.lines = append(append(a.lines, rec...), '\n')
	}
	a.last = time.Now()
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// parseAuditBody splits a body into records, each compacted to one line.
func parseAuditBody(b []byte) ([][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var out [][]byte
	add := func(v json.RawMessage) error {
		var c bytes.Buffer
		if err := json.Compact(&c, v); err != nil {
			return err
		}
		out = append(out, c.Bytes())
		return nil
	}
	for n := 1; ; n++ {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("value %d: not JSON: %v", n, err)
		}
		switch bytes.TrimSpace(v)[0] {
		case '{':
			if err := add(v); err != nil {
				return nil, err
			}
		case '[':
			var arr []json.RawMessage
			if err := json.Unmarshal(v, &arr); err != nil {
				return nil, fmt.Errorf("value %d: %v", n, err)
			}
			for i, e := range arr {
				if t := bytes.TrimSpace(e); len(t) == 0 || t[0] != '{' {
					return nil, fmt.Errorf("value %d, element %d: want a JSON object (one audit record)", n, i)
				}
				if err := add(e); err != nil {
					return nil, err
				}
			}
		default:
			return nil, fmt.Errorf("value %d: want a JSON object (one audit record) or an array of them", n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no audit record in the body")
	}
	return out, nil
}

func (a *auditWebhook) mark() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(len(a.lines))
}

func (a *auditWebhook) since(m int64) ([]byte, []byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m > int64(len(a.lines)) {
		m = 0
	}
	return bytes.Clone(a.lines[m:]), bytes.Clone(a.raw), nil
}

// settle waits up to auditSettleFirst for a record after m, then until
// none has come for auditSettleQuiet (a target may post after it
// answered), at most auditSettleFirst in all.
func (a *auditWebhook) settle(ctx context.Context, m int64) {
	deadline := time.Now().Add(auditSettleFirst)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		a.mu.Lock()
		n, last := int64(len(a.lines)), a.last
		a.mu.Unlock()
		if n > m && time.Since(last) >= auditSettleQuiet {
			return
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func (a *auditWebhook) where() string { return "the audit webhook " + a.url() }

// validate checks that the sink is one file or one webhook address.
func (a *AuditSink) validate(t *Target, bad func(field, format string, a ...any) error) error {
	switch {
	case a.File == "" && a.Webhook == "":
		return bad("audit", "name the target's audit sink: file (the JSON-lines file it writes its decisions to) or webhook (the HOST:PORT where the harness receives the records it posts)")
	case a.File != "" && a.Webhook != "":
		return bad("audit.webhook", "one sink only: file or webhook, not both")
	case a.Webhook != "":
		h, p, err := net.SplitHostPort(a.Webhook)
		port, perr := strconv.Atoi(p)
		if ip := net.ParseIP(h); err != nil || ip == nil || !ip.IsLoopback() || ip.To4() == nil || perr != nil || port < 1 || port > 65535 {
			return bad("audit.webhook", "%q: want a 127.0.0.0/8 HOST:PORT with a fixed port (the target posts to http://HOST:PORT/audit)", a.Webhook)
		}
		if a.Webhook == t.Upstream {
			return bad("audit.webhook", "%q is also the upstream address: the harness needs one listener for each", a.Webhook)
		}
	}
	return nil
}

// checkAudit reads the target's audit sink and checks the records written
// during the scenario: required fields present, no raw token anywhere.
func (e *env) checkAudit(ctx context.Context, name string, a *AuditStep, st *state) {
	sink := e.r.Target.Audit
	if sink == nil || e.audit == nil {
		st.skipped = append(st.skipped, name+" (no audit sink declared)")
		return
	}
	st.ran++
	e.audit.settle(ctx, st.auditFrom)
	lines, all, err := e.audit.since(st.auditFrom)
	if err != nil {
		st.errs = append(st.errs, name+": "+err.Error())
		return
	}
	for _, tok := range e.minted.list() {
		if len(tok) > 20 && bytes.Contains(all, []byte(tok)) {
			st.viol = append(st.viol, violation{msg: "a raw token appears in the audit sink"})
			break
		}
	}
	n, missing := 0, map[string]int{}
	for _, line := range bytes.Split(lines, []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		n++
		for _, field := range a.Fields {
			key := field
			if m, ok := sink.Fields[field]; ok {
				key = m
			}
			if v, ok := rec[key]; !ok || v == nil || v == "" {
				missing[field]++
			}
		}
	}
	ev := Evidence{Step: name, Expected: "every record carries " + strings.Join(a.Fields, ", "), Note: fmt.Sprintf("%d records read from %s", n, e.audit.where()), Verdict: "ok"}
	if n == 0 {
		st.viol = append(st.viol, violation{msg: "the audit sink has no records of this run's decisions"})
		ev.Verdict = "mismatch"
	}
	for _, field := range a.Fields {
		if missing[field] > 0 {
			st.viol = append(st.viol, violation{msg: fmt.Sprintf("%d of %d audit records lack %s", missing[field], n, field)})
			ev.Verdict = "mismatch"
		}
	}
	st.ev = append(st.ev, ev)
}
