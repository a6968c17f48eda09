package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits of a Query.
const (
	DefaultLimit = 100  // events per page when Query.Limit is 0
	MaxLimit     = 1000 // larger limits are cut to this
)

// Query selects a page of events for [Read]. Empty filters match all.
type Query struct {
	// Cursor is the byte offset to read from: 0 for the start of the file,
	// or the Next of a previous Page.
	Cursor int64 `json:"cursor,omitempty"`
	// Limit is the most events to return: DefaultLimit when 0, at most
	// MaxLimit.
	Limit int `json:"limit,omitempty"`
	// Tenant, Endpoint, ClientID and Decision keep only the events whose
	// field equals the value given.
	Tenant   string `json:"tenant,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Decision string `json:"decision,omitempty"`
	// SinceSeq keeps only the events with Seq > SinceSeq: pass the last seq
	// you have seen.
	SinceSeq int64 `json:"since_seq,omitempty"`
}

// Page is one page of events read from a log file.
type Page struct {
	// Events are the matching events, in file (and so seq) order. Never nil.
	Events []Event `json:"events"`
	// Next is the byte offset to pass as Query.Cursor to read on. It stops
	// before a torn last line, so a later Read picks that line up once the
	// writer has finished it.
	Next int64 `json:"next"`
	// More reports that Read stopped at Limit while the file holds further
	// complete lines after Next. With filters, these may not match.
	More bool `json:"more"`
}

// Read returns a page of the events in the log file at path, starting at
// q.Cursor. It may run while a [Log] appends to the file.
//
// An incomplete last line, as a process killed in the middle of a write
// leaves it, is skipped (Page.Next stops before it). A complete line that
// is not an event is an error: a *CorruptLineError, which matches
// ErrCorrupt and names the line's byte offset.
func Read(path string, q Query) (Page, error) {
	f, err := os.Open(path)
	if err != nil {
		return Page{}, fmt.Errorf("audit: open log file for reading: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Page{}, fmt.Errorf("audit: %w", err)
	}
	return readPage(f, fi.Size(), path, q)
}

func (q *Query) check(size int64) (limit int, err error) {
	switch {
	case q.Cursor < 0:
		return 0, fmt.Errorf("%w: negative cursor %d; start from 0 or pass a Page.Next", ErrInvalidQuery, q.Cursor)
	case q.Cursor > size:
		return 0, fmt.Errorf("%w: cursor %d is past the end of the log file (%d bytes); was the file replaced? start again from 0", ErrInvalidQuery, q.Cursor, size)
	case q.Limit < 0:
		return 0, fmt.Errorf("%w: negative limit %d; use 0 for the default of %d", ErrInvalidQuery, q.Limit, DefaultLimit)
	}
	switch q.Decision {
	case "", DecisionAllow, DecisionDeny, DecisionError:
	default:
		return 0, fmt.Errorf("%w: decision filter %q; use %q, %q or %q", ErrInvalidQuery, q.Decision, DecisionAllow, DecisionDeny, DecisionError)
	}
	limit = q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	return min(limit, MaxLimit), nil
}

func (q *Query) match(e *Event) bool {
	return e.Seq > q.SinceSeq &&
		(q.Tenant == "" || e.Tenant == q.Tenant) &&
		(q.Endpoint == "" || e.Endpoint == q.Endpoint) &&
		(q.ClientID == "" || e.ClientID == q.ClientID) &&
		(q.Decision == "" || e.Decision == q.Decision)
}

// readPage reads a page from the first size bytes of r.
func readPage(r io.ReaderAt, size int64, path string, q Query) (Page, error) {
	limit, err := q.check(size)
	if err != nil {
		return Page{}, err
	}
	if q.Cursor > 0 {
		var c [1]byte
		if _, err := r.ReadAt(c[:], q.Cursor-1); err != nil {
			return Page{}, fmt.Errorf("audit: read %s: %w", path, err)
		}
		if c[0] != '\n' {
			return Page{}, fmt.Errorf("%w: cursor %d is not at the start of a line; pass 0 or a Page.Next", ErrInvalidQuery, q.Cursor)
		}
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, q.Cursor, size-q.Cursor), 64<<10)
	page := Page{Events: []Event{}, Next: q.Cursor}
	var long []byte
	for {
		line, complete, err := nextLine(br, &long)
		if errors.Is(err, errLineTooLong) {
			return Page{}, &CorruptLineError{Path: path, Offset: page.Next, Err: err}
		}
		if err != nil {
			return Page{}, fmt.Errorf("audit: read %s: %w", path, err)
		}
		if !complete {
			return page, nil // end of file, maybe after a torn line
		}
		if len(page.Events) == limit {
			page.More = true
			return page, nil
		}
		off := page.Next
		page.Next += int64(len(line))
		body := line[:len(line)-1]
		if isBlank(body) {
			continue
		}
		var e Event
		if err := decodeLine(body, &e); err != nil {
			return Page{}, &CorruptLineError{Path: path, Offset: off, Err: err}
		}
		if q.match(&e) {
			page.Events = append(page.Events, e)
		}
	}
}

var errLineTooLong = fmt.Errorf("line longer than MaxLineSize (%d bytes)", MaxLineSize)

// nextLine returns the next line with its '\n' and complete = true, or,
// at the end of the input, what is left without a '\n' and complete =
// false. The line is valid until the next call.
func nextLine(br *bufio.Reader, long *[]byte) (line []byte, complete bool, err error) {
	line, err = br.ReadSlice('\n')
	switch err {
	case nil:
		return line, true, nil
	case io.EOF:
		return line, false, nil
	case bufio.ErrBufferFull:
	default:
		return nil, false, err
	}
	*long = append((*long)[:0], line...)
	for {
		line, err = br.ReadSlice('\n')
		*long = append(*long, line...)
		if len(*long) > MaxLineSize {
			return nil, false, errLineTooLong
		}
		switch err {
		case nil:
			return *long, true, nil
		case io.EOF:
			return *long, false, nil
		case bufio.ErrBufferFull:
		default:
			return nil, false, err
		}
	}
}

func isBlank(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

// decodeLine decodes one line (without its newline) into e.
func decodeLine(b []byte, e *Event) error {
	if b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(b, e)
}

// recoverTail prepares a log file for appending. A last line without a
// newline is a torn write: it is cut off, unless it is a whole event
// (the file was edited), which then gets its newline. It returns the size
// of the file afterwards and the seq of the last event (0 if none).
func recoverTail(f *os.File, path string) (size, seq int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("audit: %w", err)
	}
	size = fi.Size()
	end, last, lastOff, err := scanTail(f, size)
	if err != nil {
		return 0, 0, fmt.Errorf("audit: read the end of %s: %w", path, err)
	}
	if end < size {
		tail := make([]byte, size-end)
		if _, err := f.ReadAt(tail, end); err != nil {
			return 0, 0, fmt.Errorf("audit: read the end of %s: %w", path, err)
		}
		var e Event
		if len(tail) <= MaxLineSize && !isBlank(tail) && decodeLine(tail, &e) == nil && e.Seq >= 0 {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return 0, 0, fmt.Errorf("audit: end the last line of %s: %w", path, err)
			}
			return size + 1, e.Seq, nil
		}
		if err := f.Truncate(end); err != nil {
			return 0, 0, fmt.Errorf("audit: cut the torn last line off %s: %w", path, err)
		}
	}
	if last == nil {
		return end, 0, nil
	}
	var e Event
	if err := decodeLine(last, &e); err != nil {
		return 0, 0, &CorruptLineError{Path: path, Offset: lastOff, Err: err}
	}
	if e.Seq < 0 {
		return 0, 0, &CorruptLineError{Path: path, Offset: lastOff, Err: fmt.Errorf("negative seq %d", e.Seq)}
	}
	return end, e.Seq, nil
}

// scanTail finds, in the first size bytes of r, the end of the last
// complete line (end) and the last complete line that is not blank (last,
// without its newline; nil if there is none) with its offset.
//
// A torn line and a complete one fit in maxTail bytes; scanTail reads no
// further back than that and fails if it finds no line there.
func scanTail(r io.ReaderAt, size int64) (end int64, last []byte, lastOff int64, err error) {
	const maxTail = 2*MaxLineSize + 64<<10
	for chunk := int64(64 << 10); ; chunk *= 2 {
		if chunk > maxTail {
			if chunk/2 >= maxTail {
				return 0, nil, 0, fmt.Errorf("no audit event in the last %d bytes (lines are at most %d bytes); this is not an audit log, or it is damaged", int64(maxTail), MaxLineSize)
			}
			chunk = maxTail
		}
		start := max(0, size-chunk)
		buf := make([]byte, size-start)
		if _, err := r.ReadAt(buf, start); err != nil && err != io.EOF {
			return 0, nil, 0, err
		}
		i := bytes.LastIndexByte(buf, '\n')
		if i < 0 {
			if start == 0 {
				return 0, nil, 0, nil
			}
			continue
		}
		end = start + int64(i) + 1
		// Skip blank lines back to the last line with content.
		j := i
		for j >= 0 && (buf[j] == '\n' || isBlank(buf[j:j+1])) {
			j--
		}
		if j < 0 {
			if start == 0 {
				return end, nil, 0, nil
			}
			continue
		}
		k := bytes.LastIndexByte(buf[:j+1], '\n')
		if k < 0 && start > 0 {
			continue
		}
		line := buf[k+1 : bytes.IndexByte(buf[k+1:], '\n')+k+1]
		return end, line, start + int64(k) + 1, nil
	}
}
