package conformance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentsso/agentsso/conformance/agentlab"
	"github.com/agentsso/agentsso/internal/jwtpeek"
)

// AgentBaselineID is the agent kind's control: the agent does its task in
// a world with nothing wrong. A negative agent scenario means nothing if the
// agent cannot do its task at all.
const AgentBaselineID = "agent-baseline-control"

// AgentSection is the `agent` part of an agent scenario: the world the
// harness builds (setup), the predicates over the trace (expect), and
// variants that each change the setup and run the agent again.
type AgentSection struct {
	Setup    yaml.Node      `yaml:"setup"`
	Expect   []AgentCheck   `yaml:"expect"`
	Variants []AgentVariant `yaml:"variants"`
}

// AgentVariant is one more run of the agent, its setup merged over the
// scenario's.
type AgentVariant struct {
	Name string `yaml:"name"`
	// Requires is a feature the agent must declare for this run; the run
	// is skipped otherwise.
	Requires string       `yaml:"requires"`
	Setup    yaml.Node    `yaml:"setup"`
	Expect   []AgentCheck `yaml:"expect"`
}

// AgentCheck names one predicate over the trace (docs/SCENARIOS.md, "Agent
// checks"), with its parameters.
type AgentCheck struct {
	Check string `yaml:"check"`
	// Severity overrides the scenario's for this check.
	Severity Severity `yaml:"severity"`
	// Max bounds counts (bounded_retries).
	Max int `yaml:"max"`
	// Grant narrows resource_indicator to token requests of this
	// grant_type (refresh_token, say); without one it is not exercised.
	Grant string `yaml:"grant"`
}

// agentRun is one run of the agent: a name and its world's setup.
type agentRun struct {
	name     string
	requires string
	spec     agentlab.Spec
	expect   []AgentCheck
}

// runs resolves the scenario's runs: the setup alone, or one per variant.
func (a *AgentSection) runs() ([]agentRun, error) {
	base, err := decodeSpec(&a.Setup, nil)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if len(a.Variants) == 0 {
		return []agentRun{{spec: base, expect: a.Expect}}, nil
	}
	var out []agentRun
	for i, v := range a.Variants {
		sp, err := decodeSpec(&a.Setup, &v.Setup)
		if err != nil {
			return nil, fmt.Errorf("variants[%d].setup: %w", i, err)
		}
		exp := v.Expect
		if len(exp) == 0 {
			exp = a.Expect
		}
		name := v.Name
		if name == "" {
			name = fmt.Sprintf("variant %d", i+1)
		}
		out = append(out, agentRun{name: name, requires: v.Requires, spec: sp, expect: exp})
	}
	return out, nil
}

// decodeSpec merges over onto base (YAML mappings, recursively) and
// decodes the result strictly.
func decodeSpec(base, over *yaml.Node) (agentlab.Spec, error) {
	var m map[string]any
	if base != nil && base.Kind != 0 {
		if err := base.Decode(&m); err != nil {
			return agentlab.Spec{}, err
		}
	}
	if over != nil && over.Kind != 0 {
		var o map[string]any
		if err := over.Decode(&o); err != nil {
			return agentlab.Spec{}, err
		}
		m = mergeMaps(m, o)
	}
	var sp agentlab.Spec
	if m == nil {
		return sp, nil
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return sp, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&sp); err != nil {
		return sp, err
	}
	return sp, sp.Validate()
}

func mergeMaps(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// validate checks the section when the scenario is parsed.
func (a *AgentSection) validate(bad func(string, string, ...any) error) []error {
	errs := a.setupErrors(bad)
	check := func(f string, cs []AgentCheck) {
		for i, c := range cs {
			if _, ok := agentChecks[c.Check]; !ok {
				errs = append(errs, bad(fmt.Sprintf("%s[%d].check", f, i), "unknown check %q (want one of %s)", c.Check, strings.Join(AgentCheckNames(), ", ")))
			}
			if c.Severity != "" && c.Severity != MUST && c.Severity != SHOULD && c.Severity != MUSTIfDeclared {
				errs = append(errs, bad(fmt.Sprintf("%s[%d].severity", f, i), "%q: want MUST, SHOULD or MUST-if-declared", c.Severity))
			}
		}
	}
	check("agent.expect", a.Expect)
	for i, v := range a.Variants {
		check(fmt.Sprintf("agent.variants[%d].expect", i), v.Expect)
		if v.Requires != "" && !slices.Contains(agentFeatures, v.Requires) {
			errs = append(errs, bad(fmt.Sprintf("agent.variants[%d].requires", i), "unknown agent feature %q (want one of %s)", v.Requires, strings.Join(agentFeatures, ", ")))
		}
		if len(v.Expect) == 0 && len(a.Expect) == 0 {
			errs = append(errs, bad(fmt.Sprintf("agent.variants[%d].expect", i), "missing: name the checks this run is judged by"))
		}
	}
	if len(a.Variants) == 0 && len(a.Expect) == 0 {
		errs = append(errs, bad("agent.expect", "missing: name the checks the trace is judged by"))
	}
	return errs
}

// setupErrors names what is wrong in the setups, each at its field and
// line: unknown keys and values of the wrong type in the setup as
// written, then bad values in the setup each run uses (a variant's merged
// over the scenario's).
func (a *AgentSection) setupErrors(bad func(string, string, ...any) error) []error {
	var errs []error
	nodes := []*yaml.Node{&a.Setup}
	paths := []string{"agent.setup"}
	for i := range a.Variants {
		nodes = append(nodes, &a.Variants[i].Setup)
		paths = append(paths, fmt.Sprintf("agent.variants[%d].setup", i))
	}
	for i, n := range nodes {
		if n.Kind == 0 {
			continue
		}
		errs = append(errs, unknownKeys(n, reflect.TypeFor[agentlab.Spec](), paths[i], bad)...)
		var sp agentlab.Spec
		if err := n.Decode(&sp); err != nil {
			msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
			errs = append(errs, bad(paths[i], "%s", strings.TrimSpace(msg)))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	fieldErr := func(path string, err error) error {
		var fe *agentlab.FieldError
		if errors.As(err, &fe) {
			return bad(path+"."+fe.Field, "%s", fe.Msg)
		}
		return bad(path, "%s", err)
	}
	if _, err := decodeSpec(&a.Setup, nil); err != nil {
		return []error{fieldErr("agent.setup", err)}
	}
	for i := range a.Variants {
		if _, err := decodeSpec(&a.Setup, &a.Variants[i].Setup); err != nil {
			errs = append(errs, fieldErr(paths[i+1], err))
		}
	}
	return errs
}

// unknownKeys names every mapping key under n that type t has no yaml
// field for, with the fields it does have.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, bad func(string, string, ...any) error) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				errs = append(errs, bad(path+"."+key, "unknown field (known: %s)", strings.Join(names, ", ")))
				continue
			}
			errs = append(errs, unknownKeys(n.Content[i+1], ft, path+"."+key, bad)...)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, unknownKeys(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value, bad)...)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), bad)...)
		}
	}
	return errs
}

// AgentFunc runs an agent in process, the same contract as a subprocess:
// its inputs in env, its output on stdout and stderr.
type AgentFunc func(ctx context.Context, env map[string]string, stdout, stderr io.Writer) error

// agentOutput is what the agent left besides the trace.
type agentOutput struct {
	stdout, stderr string
	// stderrSafe is stderr with every canary replaced by its label: the
	// only form that may reach a report.
	stderrSafe string
	exitErr    error
	timedOut   bool
	duration   time.Duration
}

// runAgents runs the agent scenarios: a fresh world per run, the agent
// launched into it, the trace judged.
func (r *Runner) runAgents(ctx context.Context, rep *Report) {
	o := &r.Opts
	status := map[string]Status{}
	selected := r.selected()
	results := make([]Result, len(selected))
	// The baseline runs first; the others in parallel, each in its own world.
	var order [][]int
	var rest []int
	for i, s := range selected {
		if s.ID == AgentBaselineID {
			order = append(order, []int{i})
		} else {
			rest = append(rest, i)
		}
	}
	order = append(order, rest)
	par := o.Parallel
	if par <= 0 {
		par = 4
	}
	var mu sync.Mutex
	n := 0
	for _, group := range order {
		sem := make(chan struct{}, par)
		var wg sync.WaitGroup
		for _, i := range group {
			s := selected[i]
			mu.Lock()
			deps := map[string]Status{}
			for k, v := range status {
				deps[k] = v
			}
			mu.Unlock()
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				res := r.runAgentScenario(ctx, s, deps)
				markExpected(&res, o.Expected)
				mu.Lock()
				results[i] = res
				status[s.ID] = res.Status
				n++
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "[%d/%d] %-5s %-34s %s\n", n, len(selected), strings.ToUpper(string(res.Status)), s.ID, res.Reason)
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	rep.Results = append(rep.Results, results...)
}

func (r *Runner) runAgentScenario(ctx context.Context, s *Scenario, done map[string]Status) (res Result) {
	t0 := time.Now()
	res = Result{ID: s.ID, Title: s.Title, Severity: s.Severity, Tags: s.Tags, Why: strings.TrimSpace(s.Why), SpecRefs: s.Refs}
	defer func() { res.Duration = time.Since(t0) }()
	for _, f := range s.Requires {
		if !r.Target.Has(f) {
			res.Status, res.Reason = StatusSkip, "the agent does not declare "+f
			return res
		}
	}
	for _, d := range s.Depends {
		if st, ok := done[d]; !ok || (st != StatusPass && st != StatusWarn) {
			res.Status = StatusError
			res.Reason = "depends on " + d + ", which did not pass in this run: an agent that cannot do its task proves nothing by not doing something else"
			if !ok {
				res.Reason = "depends on " + d + ", which did not run"
			}
			return res
		}
	}
	runs, err := s.Agent.runs()
	if err != nil {
		res.Status, res.Reason = StatusError, err.Error()
		return res
	}
	var must, should, errs, ok, skips []string
	for _, run := range runs {
		if ctx.Err() != nil {
			errs = append(errs, "the run's time limit was reached")
			break
		}
		prefix := ""
		if run.name != "" {
			prefix = run.name + ": "
		}
		if run.requires != "" && !r.Target.Has(run.requires) {
			skips = append(skips, prefix+"the agent does not declare "+run.requires)
			continue
		}
		w, out, err := r.runAgentOnce(ctx, s, run)
		if err != nil {
			errs = append(errs, prefix+err.Error())
			continue
		}
		res.Trace = append(res.Trace, traceEntries(run.name, w)...)
		if out.timedOut {
			res.Evidence = append(res.Evidence, Evidence{Step: prefix + "agent run", Verdict: "error",
				Note: fmt.Sprintf("the agent did not exit within %s; stderr: %s", out.duration.Round(time.Millisecond), tail(out.stderrSafe, 400))})
		} else if out.exitErr != nil {
			res.Evidence = append(res.Evidence, Evidence{Step: prefix + "agent run", Verdict: "ok",
				Note: fmt.Sprintf("the agent exited with %v after %s; stderr: %s", out.exitErr, out.duration.Round(time.Millisecond), tail(out.stderrSafe, 400))})
		}
		for _, c := range run.expect {
			v := agentChecks[c.Check].fn(w, out, c)
			sev := c.Severity
			if sev == "" {
				sev = s.Severity
			}
			ev := Evidence{Step: prefix + c.Check, Expected: agentChecks[c.Check].what, Note: v.msg}
			switch v.state {
			case checkHeld:
				ev.Verdict = "ok"
				ok = append(ok, prefix+c.Check)
			case checkViolated:
				ev.Verdict = "mismatch"
				if sev == SHOULD {
					should = append(should, prefix+v.msg)
				} else {
					must = append(must, prefix+v.msg)
				}
			case checkWarn:
				ev.Verdict = "mismatch"
				should = append(should, prefix+v.msg)
			case checkUnexercised:
				ev.Verdict = "skip"
				skips = append(skips, prefix+v.msg)
			}
			res.Evidence = append(res.Evidence, ev)
		}
		w.Close()
	}
	switch {
	case len(must) > 0:
		res.Status, res.Reason = StatusFail, strings.Join(must, "; ")
	case len(errs) > 0:
		res.Status, res.Reason = StatusError, strings.Join(errs, "; ")
	case len(should) > 0:
		res.Status, res.Reason = StatusWarn, strings.Join(should, "; ")
	case len(ok) == 0:
		res.Status, res.Reason = StatusSkip, "the agent never exercised this path: "+strings.Join(skips, "; ")
	default:
		res.Status, res.Reason = StatusPass, "every check held"
		if len(skips) > 0 {
			res.Reason += " (not exercised: " + strings.Join(skips, "; ") + ")"
		}
	}
	return res
}

// runAgentOnce builds a world, runs the agent in it and returns both.
func (r *Runner) runAgentOnce(ctx context.Context, s *Scenario, run agentRun) (*agentlab.World, agentOutput, error) {
	w, err := agentlab.New(ctx, s.ID, run.spec, "")
	if err != nil {
		return nil, agentOutput{}, fmt.Errorf("the harness could not build the scenario's world: %w", err)
	}
	timeout := time.Duration(run.spec.Timeout)
	if timeout == 0 {
		timeout = r.Opts.AgentTimeout
		if timeout == 0 {
			timeout = 60 * time.Second
		}
		for _, c := range run.spec.Task {
			timeout += time.Duration(c.Delay)
		}
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr lockedBuffer
	env := w.Env()
	if r.Opts.AgentEnv != nil {
		r.Opts.AgentEnv(s.ID, env)
	}
	t0 := time.Now()
	var out agentOutput
	switch {
	case r.Target.Attach:
		out.exitErr = r.attach(actx, s, run, w, env)
	case r.Opts.Agent != nil:
		out.exitErr = r.Opts.Agent(actx, env, &stdout, &stderr)
	case len(r.Target.Command) > 0:
		cmd := exec.CommandContext(actx, r.Target.Command[0], r.Target.Command[1:]...)
		cmd.Env = append([]string(nil), r.Opts.BaseEnv...)
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			cmd.Env = append(cmd.Env, k+"="+env[k])
		}
		if r.Opts.BrowserCommand != "" {
			cmd.Env = append(cmd.Env, "BROWSER="+r.Opts.BrowserCommand)
		}
		cmd.Args = append(cmd.Args, env["AGENTSSO_MCP_SERVER_URL"])
		cmd.Dir = r.Target.Dir
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 2 * time.Second
		out.exitErr = cmd.Run()
	default:
		w.Close()
		return nil, out, fmt.Errorf("the agent target has no command: set command: in the target file")
	}
	out.duration = time.Since(t0)
	out.timedOut = actx.Err() == context.DeadlineExceeded && ctx.Err() == nil
	// Judge a finished trace: the last requests' handlers may still be
	// recording when the agent has its answers and exits.
	w.Stop()
	out.stdout, out.stderr = stdout.String(), stderr.String()
	// What the agent printed goes into reports: every token or secret in
	// it is replaced by its canary label first (the checks read the raw
	// output, token_hygiene among them).
	out.stderrSafe = w.Canaries.Redact(out.stderr)
	return w, out, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// TraceEntry is one request of an agent's trace, as a report shows it: who
// called whom, with which token (named by label and jti, never the value).
type TraceEntry struct {
	Run    string    `json:"run,omitempty"`
	Seq    int       `json:"seq"`
	AtMS   float64   `json:"at_ms"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	What   string    `json:"what,omitempty"`
	Status int       `json:"status"`
	Token  *TokenRef `json:"token,omitempty"`
	// Note is the error an authorization server or MCP server answered
	// with (error and error_description; never a token).
	Note string `json:"note,omitempty"`
}

// traceEntries renders a world's trace for the report.
func traceEntries(run string, w *agentlab.World) []TraceEntry {
	recs := w.Trace.Records()
	if len(recs) == 0 {
		return nil
	}
	start := recs[0].Time
	var out []TraceEntry
	for _, rec := range recs {
		e := TraceEntry{Run: run, Seq: rec.Seq, AtMS: float64(rec.Time.Sub(start).Microseconds()) / 1000,
			From: "agent", To: rec.Server, Method: rec.Method, Path: rec.Path, Status: rec.Status}
		if rec.Server == "idp" && rec.Query.Get("login_hint") != "" {
			e.From = "browser"
		}
		if rec.Server == "user" { // the world's user approving a device request
			e.From, e.To = "user", "idp"
		}
		e.What = describeRecord(rec)
		if scheme, tok := rec.Token(); tok != "" && (strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "DPoP")) {
			e.Token = canaryRef(w, tok)
		}
		if rec.Status >= 400 {
			e.Note = errorNote(rec)
		}
		out = append(out, e)
	}
	return out
}

func describeRecord(rec agentlab.Record) string {
	switch {
	case strings.HasSuffix(rec.Path, "/token"):
		g := rec.Form.Get("grant_type")
		if i := strings.LastIndex(g, ":"); i >= 0 {
			g = g[i+1:]
		}
		return "token: " + g
	case strings.HasSuffix(rec.Path, "/authorize"):
		return "authorize"
	case strings.Contains(rec.Path, "/.well-known/"):
		return "metadata"
	case strings.HasSuffix(rec.Path, "/register"):
		return "register"
	case strings.HasSuffix(rec.Path, "/revoke"):
		return "revoke"
	case rec.Server == "model":
		return "model"
	case rec.Server == "browser":
		return "open authorization URL"
	case rec.Server == "user":
		return "the user approves the device request"
	case strings.HasSuffix(rec.Path, "/device_authorization"):
		return "device authorization"
	}
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if err := jsonUnmarshal([]byte(rec.Body), &m); err == nil && m.Method != "" {
		if m.Params.Name != "" {
			return m.Method + " " + m.Params.Name
		}
		return m.Method
	}
	return ""
}

// canaryRef names a token or secret value by its canary.
func canaryRef(w *agentlab.World, v string) *TokenRef {
	c := w.Canaries.Lookup(v)
	sum := sha256.Sum256([]byte(v))
	ref := &TokenRef{SHA256: hex.EncodeToString(sum[:8])}
	if c == nil {
		ref.Label = "a value the harness never issued"
		if cl := jwtpeek.Claims(v); cl != nil {
			ref.JTI, _ = cl["jti"].(string)
		}
		return ref
	}
	ref.Label = c.Label
	ref.JTI, _ = c.Claims["jti"].(string)
	return ref
}

// AgentCheckNames lists the checks an agent scenario may name.
func AgentCheckNames() []string {
	var out []string
	for k := range agentChecks {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// AgentOptions configure runs against an agent target.
type AgentOptions struct {
	// Agent runs the agent in process instead of the target's command.
	Agent AgentFunc
	// BaseEnv is the environment a subprocess agent starts from (cmd
	// passes its own); the scenario's variables are added to it.
	BaseEnv []string
	// BrowserCommand, when set, is given to the agent as BROWSER.
	BrowserCommand string
	// AgentTimeout bounds one run of the agent (default 60s plus the
	// scripted model delays).
	AgentTimeout time.Duration
	// AgentEnv, when set, may change a run's environment (the reference
	// agent's flaws are switched on this way in tests).
	AgentEnv func(scenario string, env map[string]string)
	// AttachFile, for an attached agent, receives each run's variables as
	// KEY=value lines (a dotenv file a wrapper can watch).
	AttachFile string
	// AttachOut receives the variables of each run of an attached agent.
	AttachOut io.Writer
}

// runAgentReport runs the agent scenarios and builds the report. Each
// scenario runs in worlds of its own, with an in-process emulator whose
// keys are in memory.
func (r *Runner) runAgentReport(ctx context.Context, started time.Time) *Report {
	o := &r.Opts
	rep := &Report{
		Schema:    SchemaVersion,
		Agentsso:  Build{Version: o.Version, Digest: binaryDigest(), GoVersion: runtime.Version()},
		Catalogue: Catalogue{Version: o.CatalogueVersion, Hash: r.Catalogue.Hash(), Sources: r.Catalogue.Sources},
		Target:    TargetInfo{Name: r.Target.Name, Kind: r.Target.Kind, URL: strings.Join(r.Target.Command, " "), Features: r.Target.Features},
		IdP: IdPInfo{URL: "in-process, one emulator per scenario run", Tenants: []TenantKeys{
			{Tenant: "agents", Issuer: "(per run)", Backend: "memory", KID: "(per run)", Alg: "ES256"},
		}},
		Started: started.UTC(),
	}
	r.runAgents(ctx, rep)
	rep.Duration = time.Since(started)
	rep.finish(o.Strict)
	return rep
}

// agentFeatures are the features an agent target may declare.
var agentFeatures = []string{"authorization-code", "client-credentials", "private-key-jwt", "pkcs11-key", "oidc", "dynamic-registration", "dpop", "token-exchange", "https"}

// validateAgent checks an agent target: a command (or the in-process
// reference agent) and known features.
func (t *Target) validateAgent(bad func(string, string, ...any) error) error {
	if t.Name == "" {
		t.Name = "agent"
		if len(t.Command) > 0 {
			t.Name = t.Command[0]
		}
	}
	if t.URL != "" {
		return bad("url", "an agent target has no URL: the harness runs the servers the agent calls; give command: instead")
	}
	if t.Attach && len(t.Command) > 0 {
		return bad("attach", "an attached agent runs already: leave command: out, or attach: false to have the harness start it")
	}
	for i, f := range t.Features {
		if !slices.Contains(agentFeatures, f) {
			return bad(fmt.Sprintf("features[%d]", i), "unknown agent feature %q (want one of %s)", f, strings.Join(agentFeatures, ", "))
		}
	}
	return nil
}

// errorNote summarises an error answer: the OAuth error and description of
// a token endpoint, or the challenge of a server. Token endpoint errors
// carry no tokens; the text is cut short anyway.
func errorNote(rec agentlab.Record) string {
	if h := rec.RespHeader.Get("WWW-Authenticate"); h != "" {
		e := authParam(h, "error")
		if d := authParam(h, "error_description"); d != "" {
			e += ": " + d
		}
		if e != "" {
			return cut(e, 200)
		}
	}
	var m struct {
		Error string `json:"error"`
		Desc  string `json:"error_description"`
	}
	if jsonUnmarshal([]byte(rec.RespBody), &m) == nil && m.Error != "" {
		if m.Desc != "" {
			return cut(m.Error+": "+m.Desc, 200)
		}
		return m.Error
	}
	return ""
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// attach hands a run's world to an agent that runs already: it prints the
// variables (and writes them to AttachFile), then waits until the model
// has given its final answer or the run's time is up.
func (r *Runner) attach(ctx context.Context, s *Scenario, run agentRun, w *agentlab.World, env map[string]string) error {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, shellQuote(env[k]))
	}
	if out := r.Opts.AttachOut; out != nil {
		name := s.ID
		if run.name != "" {
			name += " (" + run.name + ")"
		}
		fmt.Fprintf(out, "\n== %s: point the agent at this world, then let it do its task ==\n%s", name, b.String())
	}
	if f := r.Opts.AttachFile; f != "" {
		if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("writing the attach file: %w", err)
		}
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if w.Done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the attached agent did not finish its task: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// shellQuote quotes a value for a dotenv/sh line when it needs it.
func shellQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n'\"\\$`{}[]|&;<>()*?!#~") {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
