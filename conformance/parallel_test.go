package conformance

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scheduler runs every item once, at most n at a time; an alone item
// runs with nothing else under way; an item starts only after its
// dependencies finished.
func TestSchedule(t *testing.T) {
	for _, n := range []int{1, 2, 4, 16} {
		t.Run(fmt.Sprint("n=", n), func(t *testing.T) {
			items := make([]schedItem, 40)
			for i := range items {
				items[i].alone = i == 0 || i%9 == 0
				if i > 0 {
					items[i].deps = []int{0}
				}
				if i > 3 && i%4 == 0 {
					items[i].deps = append(items[i].deps, i-3)
				}
			}
			var mu sync.Mutex
			running, peak := map[int]bool{}, 0
			finished := make([]bool, len(items))
			ran := make([]int, len(items))
			schedule(n, items, func(i int) {
				mu.Lock()
				for j := range running {
					if items[i].alone || items[j].alone {
						t.Errorf("%d ran beside %d, and one of them runs alone", i, j)
					}
				}
				for _, d := range items[i].deps {
					if !finished[d] {
						t.Errorf("%d started before its dependency %d finished", i, d)
					}
				}
				running[i] = true
				peak = max(peak, len(running))
				ran[i]++
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				mu.Lock()
				delete(running, i)
				finished[i] = true
				mu.Unlock()
			})
			for i, k := range ran {
				if k != 1 {
					t.Errorf("item %d ran %d times", i, k)
				}
			}
			if peak > n {
				t.Errorf("%d ran at once, limit %d", peak, n)
			}
			if n >= 4 && peak < 2 {
				t.Errorf("never more than one at once with n=%d", n)
			}
		})
	}
}

// Progress lines come out in catalogue order whatever order the
// scenarios finish in.
func TestProgressOrder(t *testing.T) {
	var sel []*Scenario
	for _, id := range []string{"a", "b", "c", "d"} {
		sel = append(sel, &Scenario{ID: id})
	}
	var out bytes.Buffer
	p := &progress{w: &out, sel: sel, done: make([]*Result, len(sel)), running: map[int]bool{}}
	for _, i := range []int{2, 0, 3, 1} {
		p.start(i)
		p.finish(i, &Result{ID: sel[i].ID, Status: StatusPass})
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		ids = append(ids, strings.Fields(line)[2])
	}
	if got := strings.Join(ids, ","); got != "a,b,c,d" {
		t.Errorf("progress order %s, want a,b,c,d:\n%s", got, out.String())
	}
}

func TestRunsAlone(t *testing.T) {
	within := Expect{Outcome: "reject", Within: Duration(time.Second)}
	for _, tc := range []struct {
		s    Scenario
		want bool
	}{
		{Scenario{ID: BaselineID}, true},
		{Scenario{ID: "x", Steps: []Step{{Call: &CallStep{Expect: Expect{Outcome: "reject"}}}, {Revoke: &RevokeStep{Token: "t"}}}}, false},
		{Scenario{ID: "x", Alone: true}, true},
		{Scenario{ID: "x", Steps: []Step{{Keys: &KeysStep{Action: "rotate"}}}}, true},
		{Scenario{ID: "x", Steps: []Step{{Fault: &Fault{Endpoint: "introspect", Mode: "error"}}}}, true},
		{Scenario{ID: "x", Steps: []Step{{Audit: &AuditStep{}}}}, true},
		{Scenario{ID: "x", Steps: []Step{{Call: &CallStep{Expect: within}}}}, true},
	} {
		if got := tc.s.RunsAlone(); got != tc.want {
			t.Errorf("%+v: RunsAlone %v, want %v", tc.s.Steps, got, tc.want)
		}
	}
}

func TestFigureName(t *testing.T) {
	for _, tc := range []struct {
		ts   TokenSpec
		want string
	}{
		{TokenSpec{}, "valid_ms"},
		{TokenSpec{Mutate: []string{"oversize-1mb"}}, "oversize_1mb_ms"},
		{TokenSpec{Mutate: []string{"scope:a b", "cnf-jkt"}}, "scope_a_b_cnf_jkt_ms"},
		{TokenSpec{Use: "Alice"}, "alice_ms"},
		{TokenSpec{None: true}, "no_token_ms"},
	} {
		if got := figureName(&tc.ts); got != tc.want {
			t.Errorf("figureName(%+v) = %q, want %q", tc.ts, got, tc.want)
		}
	}
}

// A timed call turns a slow answer, a 5xx and no answer into violations
// (not errors), and records the time.
func TestJudgeTimed(t *testing.T) {
	x := Expect{Outcome: "reject", Within: Duration(100 * time.Millisecond)}
	e := &env{}
	for _, tc := range []struct {
		name    string
		r       callResult
		elapsed time.Duration
		viol    string
	}{
		{"fast refusal", callResult{status: 401}, 5 * time.Millisecond, ""},
		{"slow refusal", callResult{status: 401}, 300 * time.Millisecond, "over the 100ms bound"},
		{"server error", callResult{status: 502}, time.Millisecond, "answered 502"},
		{"no answer", callResult{err: fmt.Errorf("context deadline exceeded")}, 2 * time.Second, "no answer after 2s"},
	} {
		st := &state{figures: map[string]float64{}}
		j := judge(x, tc.r, nil, callSpec{}, &Target{Kind: "resource-server"})
		j = e.judgeTimed(x, &TokenSpec{Mutate: []string{"zip-bomb"}}, tc.r, tc.elapsed, j, st)
		if j.err != "" {
			t.Errorf("%s: error %q, want a violation or nothing", tc.name, j.err)
		}
		var msgs []string
		for _, v := range j.violations {
			msgs = append(msgs, v.msg)
		}
		got := strings.Join(msgs, "; ")
		if tc.viol == "" && strings.Contains(got, "bound") || tc.viol != "" && !strings.Contains(got, tc.viol) {
			t.Errorf("%s: violations %q, want %q", tc.name, got, tc.viol)
		}
		if ms := st.figures["zip_bomb_ms"]; ms != float64(tc.elapsed.Milliseconds()) {
			t.Errorf("%s: figure %v, want %v", tc.name, ms, tc.elapsed.Milliseconds())
		}
	}
	if w := timedWait(500*time.Millisecond, 5*time.Second); w != 2*time.Second {
		t.Errorf("timedWait(500ms) = %v, want 2s", w)
	}
	if w := timedWait(10*time.Second, 5*time.Second); w != 5*time.Second {
		t.Errorf("timedWait beyond the request timeout = %v", w)
	}
}

func TestElideLarge(t *testing.T) {
	deep := strings.Repeat("[", 600) + strings.Repeat("]", 600)
	ref := tokenRef("x", b64json(map[string]any{"alg": "ES256", "x-deep": deep})+"."+b64json(map[string]any{"sub": "s", "act": map[string]any{"sub": strings.Repeat("a", 1000)}})+".sig")
	if ref.Header["alg"] != "ES256" || !strings.Contains(fmt.Sprint(ref.Header["x-deep"]), "not shown") {
		t.Errorf("header %v", ref.Header)
	}
	if ref.Claims["sub"] != "s" || !strings.Contains(fmt.Sprint(ref.Claims["act"]), "not shown") {
		t.Errorf("claims %v", ref.Claims)
	}
}
