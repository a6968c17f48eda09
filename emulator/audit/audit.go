// Package audit is the emulator's audit log: every request the IdP serves
// and every decision it takes is one [Event], written as one JSON line to an
// append-only file.
//
// A [Log] writes each event with a single write(2) before [Log.Write]
// returns, so once the emulator has answered a request its record is at
// least in the operating system's page cache: killing the process cannot
// lose it, only a crash of the machine within one sync interval can. A
// background goroutine fsyncs the file every [Options.SyncInterval] when
// something was written.
//
// [Read] pages through a log file with byte-offset cursors and filters. It
// may run while a Log appends to the same file.
//
// The log is a record of identities and decisions, never of credentials:
// callers put ids (client_id, sub, jti, grant ids) in an Event, never a
// token, an authorization code, a client secret, a private key or a PIN.
package audit

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Decisions an [Event] can record.
const (
	DecisionAllow = "allow" // the request was granted
	DecisionDeny  = "deny"  // the request was refused (an OAuth error the client caused)
	DecisionError = "error" // the IdP failed (a server error)
)

// Event is one request or decision of the IdP, written as one JSON line.
//
// Seq and Time are set by [Log.Write]. Endpoint and Decision are required;
// every other field is omitted from the line when empty.
//
// Never put a secret in an Event: no access, refresh or ID token, no
// authorization code, client secret, assertion, key or PIN; name them by
// their ids (Jti, GrantID, ClientID) instead. The same holds for Extra.
type Event struct {
	// Seq numbers the events of a file from 1, in file order. It is
	// assigned by Log.Write (any value the caller sets is ignored) and
	// continues across restarts.
	Seq int64 `json:"seq"`
	// Time is when the event happened, written in UTC with millisecond
	// precision (RFC 3339). Log.Write sets it from Options.Now when zero.
	Time time.Time `json:"time"`
	// Tenant is the tenant (issuer) that served the request.
	Tenant string `json:"tenant,omitempty"`
	// Endpoint names what was asked: "token", "introspect", "revoke",
	// "authorize", "jwks", "admin.mint", …
	Endpoint string `json:"endpoint"`
	// Method is the HTTP method.
	Method string `json:"method,omitempty"`
	// Source is the remote address of the request.
	Source string `json:"source,omitempty"`
	// ClientID is the authenticated (or claimed) OAuth client.
	ClientID string `json:"client_id,omitempty"`
	// Sub is the subject of the token issued or inspected.
	Sub string `json:"sub,omitempty"`
	// Act is the actor chain of a delegated token, current actor first.
	Act []string `json:"act,omitempty"`
	// GrantType is the grant_type of a token request.
	GrantType string `json:"grant_type,omitempty"`
	// ScopesRequested are the scopes the client asked for.
	ScopesRequested []string `json:"scopes_requested,omitempty"`
	// ScopesGranted are the scopes the IdP granted.
	ScopesGranted []string `json:"scopes_granted,omitempty"`
	// Aud is the audience of the token issued or inspected.
	Aud []string `json:"aud,omitempty"`
	// Jti is the id of the token issued or inspected (never the token).
	Jti string `json:"jti,omitempty"`
	// GrantID ties together the tokens of one grant (refresh chain).
	GrantID string `json:"grant_id,omitempty"`
	// Decision is DecisionAllow, DecisionDeny or DecisionError.
	Decision string `json:"decision"`
	// Reason explains a deny or an error, e.g. an OAuth error code and a
	// short description: "invalid_grant: refresh token revoked".
	Reason string `json:"reason,omitempty"`
	// Status is the HTTP status of the response.
	Status int `json:"status,omitempty"`
	// Extra holds further fields, encoded with encoding/json. Values read
	// back from a file have the types encoding/json gives them (float64,
	// string, []any, map[string]any, …).
	Extra map[string]any `json:"extra,omitempty"`
}

// MarshalJSON encodes e exactly as [Log.Write] writes it (without the
// trailing newline): time in UTC with milliseconds, empty fields omitted.
func (e Event) MarshalJSON() ([]byte, error) {
	if y := e.Time.UTC().Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("%w: time %v is outside the years 0 to 9999 that RFC 3339 can write", ErrInvalidEvent, e.Time)
	}
	b := make([]byte, 0, 256)
	b = appendPrefix(b, e.Seq, e.Time)
	b, err := appendBody(b, &e)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil // drop '\n'
}

// Errors of this package. Test for them with errors.Is.
var (
	// ErrClosed is returned by Write on a closed Log.
	ErrClosed = errors.New("audit: log is closed")
	// ErrInvalidEvent is returned by Write for an event that cannot be
	// recorded (missing endpoint, unknown decision, unencodable Extra, …).
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrLocked is returned by Open when another Log, in this process or
	// another, already has the file open.
	ErrLocked = errors.New("audit: log file is in use")
	// ErrCorrupt is matched by a *CorruptLineError.
	ErrCorrupt = errors.New("audit: corrupt log file")
	// ErrInvalidQuery is returned by Read for a query it cannot serve.
	ErrInvalidQuery = errors.New("audit: invalid query")
)

// CorruptLineError reports a complete line of a log file that is not an
// audit event. It matches [ErrCorrupt].
type CorruptLineError struct {
	Path   string
	Offset int64 // byte offset of the start of the line
	Err    error // why the line is not an event
}

func (e *CorruptLineError) Error() string {
	return fmt.Sprintf("audit: %s: line at byte offset %d is not an audit event: %v "+
		"(the file was edited or damaged: repair or delete that line, or move the file aside)",
		e.Path, e.Offset, e.Err)
}

// Unwrap returns the underlying decoding error.
func (e *CorruptLineError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptLineError) Is(target error) bool { return target == ErrCorrupt }

// DefaultSyncInterval is the fsync interval used when Options.SyncInterval
// is zero.
const DefaultSyncInterval = 200 * time.Millisecond

// MaxLineSize is the largest line, in bytes with its newline, that a Log
// writes and that Read accepts. Only a large Extra can exceed it.
const MaxLineSize = 1 << 20

// Options configures a [Log].
type Options struct {
	// SyncInterval is how often the background goroutine fsyncs the file
	// when something was written. Zero means DefaultSyncInterval; a
	// negative value turns the background fsync off (Close still syncs).
	SyncInterval time.Duration
	// Now stamps events whose Time is zero; nil means time.Now.
	Now func() time.Time
}

// Log appends events to a JSON-lines file. It is safe for concurrent use.
//
// A nil *Log is valid and records nothing: Write returns (0, nil) and Close
// returns nil. [Discard] is such a Log, for when audit is off.
type Log struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	f      *os.File
	seq    int64 // last assigned
	size   int64 // bytes of complete lines in the file
	closed bool
	broken error // set when a failed write could not be undone

	dirty      atomic.Bool // written since the last fsync
	syncMu     sync.Mutex  // serialises fsync and the final close
	syncErr    error       // first failed fsync; guarded by syncMu
	fileClosed bool        // guarded by syncMu
	stop       chan struct{}
	stopped    chan struct{}
}

// Discard is a nil *Log: it records nothing. Use it when audit is off.
var Discard *Log

// Open opens the log file at path for appending, creating it (mode 0600)
// and its directory if needed. Seq continues after the last event already
// in the file.
//
// A torn last line, left by a process killed in the middle of a write, is
// cut off, so that the next event starts on a line of its own. A last line
// that is complete but not an event is an error (*CorruptLineError).
//
// Only one Log may have a file open at a time; a second Open of the same
// file fails with ErrLocked (on platforms with flock(2)).
func Open(path string, opts Options) (*Log, error) {
	if path == "" {
		return nil, errors.New("audit: empty log file path; set the audit path or disable the audit log")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: create the directory of the log file: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open log file: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: %s is open in another audit log (this process or another emulator); give each emulator its own audit file", ErrLocked, path)
		}
		return nil, fmt.Errorf("audit: lock %s: %w", path, err)
	}
	end, seq, err := recoverTail(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	l := &Log{
		path: path,
		now:  opts.Now,
		f:    f,
		seq:  seq,
		size: end,
	}
	if opts.SyncInterval > 0 {
		l.stop = make(chan struct{})
		l.stopped = make(chan struct{})
		go l.syncLoop(opts.SyncInterval)
	}
	return l, nil
}

// Write appends e as one line and returns the sequence number it was given.
// The line reaches the file with a single write(2) before Write returns.
//
// The line carries the seq Write assigns (e.Seq is ignored) and e.Time, or
// the time from Options.Now when e.Time is zero. Write fails with
// ErrInvalidEvent when e.Endpoint is empty, e.Decision is not one of
// DecisionAllow, DecisionDeny, DecisionError, Extra cannot be encoded as
// JSON, or the line would exceed MaxLineSize. On any error nothing is
// written and no sequence number is used up.
func (l *Log) Write(e Event) (int64, error) {
	if l == nil {
		return 0, nil
	}
	if e.Endpoint == "" {
		return 0, fmt.Errorf("%w: empty endpoint; name the endpoint that served the request", ErrInvalidEvent)
	}
	switch e.Decision {
	case DecisionAllow, DecisionDeny, DecisionError:
	default:
		return 0, fmt.Errorf("%w: decision %q; use DecisionAllow, DecisionDeny or DecisionError", ErrInvalidEvent, e.Decision)
	}

	bp := bufPool.Get().(*[]byte)
	defer putBuf(bp)
	b, err := appendBody((*bp)[:prefixSpace], &e)
	*bp = b
	if err != nil {
		return 0, err
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.broken != nil {
		l.mu.Unlock()
		return 0, l.broken
	}
	t := e.Time
	if t.IsZero() {
		t = l.now()
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: time %v is outside the years 0 to 9999 that RFC 3339 can write", ErrInvalidEvent, t)
	}
	if l.seq == math.MaxInt64 {
		l.mu.Unlock()
		return 0, fmt.Errorf("audit: %s has used up all sequence numbers; start a new file", l.path)
	}
	seq := l.seq + 1
	var pre [prefixSpace]byte
	p := appendPrefix(pre[:0], seq, t)
	line := b[prefixSpace-len(p):]
	copy(line, p)
	if len(line) > MaxLineSize {
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: the event is %d bytes long, more than MaxLineSize (%d); put less in Extra", ErrInvalidEvent, len(line), MaxLineSize)
	}
	// For a regular file, os.File.Write is one write(2); it loops only
	// on a short write, which only a full disk causes.
	n, err := l.f.Write(line)
	if err != nil {
		err = fmt.Errorf("audit: write event to %s: %w", l.path, err)
		if n > 0 {
			// Undo the part of the line that was written, so the next
			// event does not land in the middle of a line.
			if terr := l.f.Truncate(l.size); terr != nil {
				l.broken = fmt.Errorf("audit: %s holds a partial line that could not be removed (%v); restart to recover: %w", l.path, terr, err)
				err = l.broken
			}
		}
		l.mu.Unlock()
		return 0, err
	}
	l.seq = seq
	l.size += int64(n)
	// Still under l.mu, so that Close, which takes l.mu first, cannot miss
	// this line in its final fsync.
	if !l.dirty.Load() {
		l.dirty.Store(true)
	}
	l.mu.Unlock()
	return seq, nil
}

// Sync flushes the file to stable storage now.
func (l *Log) Sync() error {
	if l == nil {
		return nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.fileClosed {
		return ErrClosed
	}
	return l.syncLocked()
}

// syncLocked fsyncs the file if something was written. l.syncMu is held.
func (l *Log) syncLocked() error {
	if l.fileClosed || !l.dirty.Swap(false) {
		return nil
	}
	if err := l.f.Sync(); err != nil {
		l.dirty.Store(true)
		err = fmt.Errorf("audit: fsync %s: %w", l.path, err)
		if l.syncErr == nil {
			l.syncErr = err
		}
		return err
	}
	return nil
}

func (l *Log) syncLoop(every time.Duration) {
	defer close(l.stopped)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.syncMu.Lock()
			l.syncLocked() // a failure is kept in syncErr and reported by Close
			l.syncMu.Unlock()
		}
	}
}

// Close stops the background fsync, syncs the file and closes it. It
// reports the first fsync that failed in the life of the Log, if any.
// Closing a closed Log does nothing.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()

	if l.stop != nil {
		close(l.stop)
		<-l.stopped
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.syncLocked()
	err := l.syncErr
	l.fileClosed = true
	if cerr := l.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("audit: close %s: %w", l.path, cerr)
	}
	return err
}

// bufPool holds line buffers. Buffers that grew past maxPooled (a large
// Extra) are dropped rather than kept.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

const maxPooled = 16 << 10

func putBuf(bp *[]byte) {
	if cap(*bp) > maxPooled {
		return
	}
	bufPool.Put(bp)
}
