package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// timedWait is how long a timed call (expect.within) waits for an answer:
// four times its bound and at least 2 s, so that a slow target's time is
// measured rather than cut short, but never past the request timeout.
func timedWait(within, requestTimeout time.Duration) time.Duration {
	return min(max(4*within, 2*time.Second), requestTimeout)
}

// timedCtx bounds a timed call; other calls keep ctx.
func (e *env) timedCtx(ctx context.Context, x Expect) (context.Context, context.CancelFunc) {
	if x.Within == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timedWait(time.Duration(x.Within), e.r.Opts.RequestTimeout))
}

// judgeTimed adds the response-time judgement of a call with
// expect.within to j and records the time as a figure. For such a call a
// 5xx or no answer is a violation, not an error: the probe is whether the
// target stays up and answers fast.
func (e *env) judgeTimed(x Expect, ts *TokenSpec, r callResult, elapsed time.Duration, j judgement, st *state) judgement {
	within := time.Duration(x.Within)
	name := x.Figure
	if name == "" {
		name = figureName(ts)
	}
	st.figures[name] = math.Round(float64(elapsed.Microseconds())/100) / 10
	bad := func(format string, a ...any) {
		j.violations = append(j.violations, violation{sev: x.Severity, msg: fmt.Sprintf(format, a...)})
	}
	took := elapsed.Round(time.Millisecond)
	switch {
	case r.err != nil:
		j.err = ""
		bad("no answer after %v (%v): the target hung, dropped the connection or is down", took, r.err)
	case r.status >= 500:
		j.err = ""
		bad("answered %d in %v: a server error, where a refusal was due", r.status, took)
	case elapsed > within:
		bad("answered %d in %v, over the %v bound", r.status, took, within)
	}
	if j.expected == "" {
		j.expected = "an answer"
	}
	j.expected += fmt.Sprintf(", within %v (figure %s)", within, name)
	return j
}

// figureName derives a timed call's figure from its token: the
// mutations, the named token, or "valid", as snake case with _ms.
func figureName(ts *TokenSpec) string {
	label := strings.Join(ts.Mutate, "_")
	switch {
	case ts.None:
		label = "no_token"
	case ts.Use != "":
		label = ts.Use
	case label == "":
		label = "valid"
	}
	var b strings.Builder
	for _, c := range strings.ToLower(label) {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteRune(c)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	return strings.TrimSuffix(b.String(), "_") + "_ms"
}

// maxMemberJSON is the most JSON one header member or claim may take in a
// report; a larger one (a deeply nested attack, a padding claim) is
// replaced by its size, so that a report never carries the attack to
// whatever reads it.
const maxMemberJSON = 512

// elideLarge replaces the members of m whose JSON is over maxMemberJSON
// bytes by a note of their size.
func elideLarge(m map[string]any) map[string]any {
	for k, v := range m {
		if b, err := json.Marshal(v); err != nil || len(b) > maxMemberJSON {
			m[k] = fmt.Sprintf("(%d bytes of JSON, not shown)", len(b))
		}
	}
	return m
}
