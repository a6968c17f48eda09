package refagent

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// secrets holds every token, secret and assertion the agent has held, so
// that nothing it prints or sends to the model can carry one, whatever
// error text wraps it (defence in depth: no code path puts one there on
// purpose, except the flaws that exist to do so).
type secrets struct {
	mu   sync.Mutex
	vals map[string]bool
}

// minSecretLen keeps short values (which would redact ordinary words) out.
const minSecretLen = 8

func (s *secrets) add(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vals == nil {
		s.vals = map[string]bool{}
	}
	for _, v := range vals {
		if len(v) >= minSecretLen {
			s.vals[v] = true
		}
	}
}

// scrub replaces every known secret in text with [redacted].
func (s *secrets) scrub(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.vals {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, "[redacted]")
		}
	}
	return text
}

// logger writes one scrubbed line per message to the agent's stderr.
type logger struct {
	mu      sync.Mutex
	w       io.Writer
	secrets *secrets
}

func (l *logger) printf(format string, a ...any) {
	msg := l.secrets.scrub(fmt.Sprintf(format, a...))
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, "refagent: "+msg)
}

// raw writes without scrubbing: only the token-in-log flaw uses it.
func (l *logger) raw(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "refagent: "+format+"\n", a...)
}
