package conformance

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// DefaultParallel is how many scenarios run at once by default. Most of a
// scenario's time is spent waiting on the target and the IdP, so a few
// more than the CPUs of a small machine pays off; more mostly queues on
// the target.
const DefaultParallel = 4

// schedItem is one scenario as the scheduler sees it.
type schedItem struct {
	// alone: nothing else may be under way while it runs.
	alone bool
	// deps are the indexes of earlier items that must have finished.
	deps []int
}

// schedule calls run(i) for every item, at most n at a time. Items run in
// their order as far as that goes: an alone item waits for everything
// started before it and holds back everything after it; any other item
// waits for its dependencies, then for a free slot. It returns when every
// item has run. run(i) happens after run(d) has returned for every d in
// items[i].deps, so run may read what they wrote.
func schedule(n int, items []schedItem, run func(i int)) {
	done := make([]chan struct{}, len(items))
	for i := range done {
		done[i] = make(chan struct{})
	}
	slots := make(chan struct{}, max(n, 1))
	var wg sync.WaitGroup
	for i, it := range items {
		if it.alone || n <= 1 {
			wg.Wait()
			run(i)
			close(done[i])
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			for _, d := range it.deps {
				<-done[d]
			}
			slots <- struct{}{}
			defer func() { <-slots }()
			run(i)
		}()
	}
	wg.Wait()
}

// runAll runs the selected scenarios, Opts.Parallel at a time, and returns
// their results in catalogue order.
func (e *env) runAll(ctx context.Context, selected []*Scenario) []Result {
	if len(selected) == 0 {
		return nil
	}
	o := &e.r.Opts
	index := make(map[string]int, len(selected))
	for i, s := range selected {
		index[s.ID] = i
	}
	items := make([]schedItem, len(selected))
	for i, s := range selected {
		items[i].alone = s.RunsAlone()
		for _, d := range s.Depends {
			if j, ok := index[d]; ok && j < i {
				items[i].deps = append(items[i].deps, j)
			}
		}
	}
	results := make([]Result, len(selected))
	pr := &progress{w: o.Progress, live: o.Live, sel: selected, done: make([]*Result, len(selected)), running: map[int]bool{}}
	schedule(o.Parallel, items, func(i int) {
		s := selected[i]
		pr.start(i)
		var res Result
		if ctx.Err() != nil {
			res = Result{ID: s.ID, Title: s.Title, Severity: s.Severity, Status: StatusError,
				Reason: "the run's time limit was reached before this scenario ran", SpecRefs: s.Refs}
		} else {
			// A dependency is readable once it has finished: schedule
			// runs i after each of items[i].deps.
			res = e.runScenario(ctx, s, func(id string) (Status, bool) {
				j, ok := index[id]
				if !ok || !slices.Contains(items[i].deps, j) {
					return "", false
				}
				return results[j].Status, true
			})
		}
		markExpected(&res, o.Expected)
		results[i] = res
		pr.finish(i, &results[i])
	})
	return results
}

// progress prints one line per scenario in catalogue order, as soon as it
// and every scenario before it have finished; on a terminal it also keeps
// a line naming the scenarios under way.
type progress struct {
	w       io.Writer
	live    bool
	mu      sync.Mutex
	sel     []*Scenario
	done    []*Result
	next    int
	running map[int]bool
}

func (p *progress) start(i int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[i] = true
	p.redraw()
}

func (p *progress) finish(i int, res *Result) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.running, i)
	p.done[i] = res
	for p.next < len(p.done) && p.done[p.next] != nil {
		r := p.done[p.next]
		if p.live {
			fmt.Fprint(p.w, "\r\033[K")
		}
		fmt.Fprintf(p.w, "[%d/%d] %-5s %-28s %s\n", p.next+1, len(p.sel), strings.ToUpper(string(r.Status)), r.ID, r.Reason)
		p.next++
	}
	p.redraw()
}

// redraw rewrites the live line: the scenarios under way.
func (p *progress) redraw() {
	if !p.live || len(p.running) == 0 {
		return
	}
	var ids []string
	for i := range p.sel {
		if p.running[i] {
			ids = append(ids, p.sel[i].ID)
		}
	}
	fmt.Fprintf(p.w, "\r\033[K[%d/%d] running %s …", p.next, len(p.sel), strings.Join(ids, ", "))
}

// exclusive serialises requests to a gateway target: whatever reaches the
// fake upstream while a call is under way is judged as that call's, so
// no other request may be under way then. A resource server has no
// upstream to attribute, and its calls run side by side.
func (e *env) exclusive() (unlock func()) {
	if e.upstream == nil {
		return func() {}
	}
	e.callMu.Lock()
	return e.callMu.Unlock
}

// forScenario is the env a scenario runs with: the run's, with the
// scenario's own canary path.
func (e *env) forScenario(s *Scenario) *env {
	c := *e
	c.canaryPath = "/" + s.ID + "/"
	c.mc.canaryURL = e.canary.url() + "/" + s.ID
	return &c
}

// canaryHits is what reached the scenario's canary path since m.
func (e *env) canaryHits(m int) []recorded {
	var out []recorded
	for _, r := range e.canary.since(m) {
		if strings.HasPrefix(r.path, e.canaryPath) {
			out = append(out, r)
		}
	}
	return out
}

// mintedTokens are every token minted in the run, from any scenario.
type mintedTokens struct {
	mu   sync.Mutex
	toks []string
}

func (m *mintedTokens) add(tok string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.toks = append(m.toks, tok)
}

func (m *mintedTokens) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.toks)
}

// markExpected applies the expected-failures list to a result: a listed
// failure is expected, a listed scenario that passes is stale.
func markExpected(res *Result, expected map[string]string) {
	reason, ok := expected[res.ID]
	if !ok {
		return
	}
	switch res.Status {
	case StatusFail, StatusWarn, StatusError:
		res.Expected = true
		res.Reason = "expected failure (" + reason + "): " + res.Reason
	case StatusPass:
		res.Stale = true
		res.Reason = "listed as an expected failure but passed: remove it from the expected-failures file"
	}
}
