package conformance

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options control a run.
type Options struct {
	// Only and Skip select scenarios by id or tag.
	Only, Skip []string
	// Strict makes a failed SHOULD fail the run.
	Strict bool
	// RequestTimeout bounds each request (default 5s); RunTimeout the whole
	// run (default 10m); PollBound how long a scenario waits on the
	// target's own behaviour, such as revocation reaching it (default 30s).
	RequestTimeout, RunTimeout, PollBound time.Duration
	// Expected lists known failures by id (with a reason). A listed
	// scenario that passes is reported stale and fails the run.
	Expected map[string]string
	// Progress receives one line per scenario (nil: none).
	Progress io.Writer
	// Live, for a terminal, also shows the scenario under way on a line
	// that is rewritten in place; CI logs get plain lines only.
	Live bool
	// DPoPKey, when set, is the harness's DPoP key (an ECDSA P-256
	// crypto.Signer, for example one held by SoftHSM2 or a TPM through the
	// softhsm package); by default a fresh in-memory key.
	DPoPKey crypto.Signer
	// ClientCA issues the TLS client certificates the harness presents to
	// an https target (mtls: "bound", which cnf-x5t tokens are bound to,
	// and "other"), and is trusted for the target's server certificate.
	// The emulator's local CA (tlsca.CA) is one; nil means no client
	// certificates, and steps that need one are errors.
	ClientCA ClientCA
	// Parallel is how many scenarios may run at once (0: DefaultParallel;
	// 1: one at a time). Scenarios that change or read shared state run
	// alone whatever it is (Scenario.RunsAlone); results keep catalogue
	// order.
	Parallel int
	// AgentOptions are for agent targets (agent.go).
	AgentOptions
	// Version is agentsso's version for the report.
	Version string
	// CatalogueVersion names the embedded catalogue's version.
	CatalogueVersion string
}

// Runner runs a catalogue against a target.
type Runner struct {
	IdP       *IdP
	Target    *Target
	Catalogue *CatalogueSet
	Opts      Options
}

// state is one scenario's working set.
type state struct {
	tokens  map[string]string
	refs    map[string]*TokenRef
	ev      []Evidence
	figures map[string]float64
	viol    []violation
	errs    []string
	ran     int
	skipped []string
	revoked time.Time
	keysed  bool
	faulted bool
	// sessions are MCP sessions saved by name.
	sessions map[string]string
	// auditFrom is the size of the target's audit file when the scenario
	// began: only records written since then are judged.
	auditFrom int64
}

type violation struct {
	sev Severity
	msg string
}

// env is the run's shared setup.
type env struct {
	r        *Runner
	call     *caller
	upstream *recorder
	canary   *recorder
	mc       mintCtx
	minted   *mintedTokens // every token minted, to check audit sinks for leaks
	// callMu serialises requests to a gateway (see exclusive); audit is
	// the target's audit sink, if it declares one.
	callMu *sync.Mutex
	audit  auditSource
	// canaryPath is the scenario's own path on the canary listener, so
	// that a fetch is attributed to the scenario whose token named it.
	canaryPath string
}

// Run executes the selected scenarios and returns the report. It returns
// an error only when the run cannot start (IdP or upstream unusable);
// problems with the target are results.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	o := &r.Opts
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.RunTimeout == 0 {
		o.RunTimeout = 10 * time.Minute
	}
	if o.PollBound == 0 {
		o.PollBound = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.RunTimeout)
	defer cancel()
	started := time.Now()
	if r.Target.Kind == "agent" {
		return r.runAgentReport(ctx, started), nil
	}
	if o.Parallel == 0 {
		o.Parallel = DefaultParallel
	}
	if o.Parallel < 0 {
		return nil, fmt.Errorf("conformance: Options.Parallel is %d: want 1 (one scenario at a time) or more", o.Parallel)
	}
	e := &env{r: r, minted: &mintedTokens{}, callMu: &sync.Mutex{}}
	var err error
	if e.call, err = newCaller(r.Target, o.RequestTimeout, o.Version, o.DPoPKey); err != nil {
		return nil, err
	}
	defer e.call.close()
	if err := e.call.setupTLS(o.ClientCA); err != nil {
		return nil, err
	}
	if r.Target.Kind == "gateway" {
		if e.upstream, err = listenRecorder(r.Target.Upstream); err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		defer e.upstream.close()
	}
	if e.canary, err = listenRecorder("127.0.0.1:0"); err != nil {
		return nil, err
	}
	defer e.canary.close()
	if a := r.Target.Audit; a != nil {
		if e.audit, err = newAuditSource(a); err != nil {
			return nil, err
		}
		if wh, ok := e.audit.(*auditWebhook); ok {
			defer wh.close()
		}
	}
	tenants, err := r.IdP.TenantNames(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(tenants, r.Target.Tenant) {
		return nil, fmt.Errorf("target tenant %q is not served by the emulator (it has %s): set tenant: in the target file", r.Target.Tenant, strings.Join(tenants, ", "))
	}
	e.mc = mintCtx{target: r.Target, issuer: r.IdP.Issuer(r.Target.Tenant), canaryURL: e.canary.url(), dpopJKT: e.call.jkt, certX5T: e.call.certX5T}
	for _, t := range tenants {
		if t != r.Target.Tenant {
			e.mc.otherTenant, e.mc.otherIssuer = t, r.IdP.Issuer(t)
			break
		}
	}

	rep := &Report{
		Schema:    SchemaVersion,
		Agentsso:  Build{Version: o.Version, Digest: binaryDigest(), GoVersion: runtime.Version()},
		Catalogue: Catalogue{Version: o.CatalogueVersion, Hash: r.Catalogue.Hash(), Sources: r.Catalogue.Sources},
		Target: TargetInfo{Name: r.Target.Name, Kind: r.Target.Kind, URL: r.Target.URL, Audience: r.Target.Audience,
			Tenant: r.Target.Tenant, Features: r.Target.Features},
		IdP:     IdPInfo{URL: r.IdP.URL},
		Started: started.UTC(),
	}
	rep.Results = e.runAll(ctx, r.selected())
	for _, t := range tenants {
		keys, err := r.IdP.Keys(ctx, t)
		if err != nil {
			continue
		}
		for _, k := range keys {
			if k.Active {
				rep.IdP.Tenants = append(rep.IdP.Tenants, TenantKeys{Tenant: t, Issuer: r.IdP.Issuer(t), Backend: k.Backend, KID: k.KID, Alg: k.Alg})
			}
		}
	}
	rep.Duration = time.Since(started)
	rep.finish(o.Strict)
	return rep, nil
}

// selected applies Only and Skip (ids or tags) and the target kind.
func (r *Runner) selected() []*Scenario {
	match := func(s *Scenario, sel []string) bool {
		for _, x := range sel {
			if s.ID == x || slices.Contains(s.Tags, x) {
				return true
			}
		}
		return false
	}
	var out []*Scenario
	for _, s := range r.Catalogue.Scenarios {
		if !slices.Contains(s.Kinds, r.Target.Kind) {
			continue
		}
		if len(r.Opts.Only) > 0 && !match(s, r.Opts.Only) && s.ID != BaselineID && s.ID != AgentBaselineID {
			continue
		}
		if match(s, r.Opts.Skip) && s.ID != BaselineID && s.ID != AgentBaselineID {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (e *env) runScenario(ctx context.Context, s *Scenario, done func(id string) (Status, bool)) (res Result) {
	e = e.forScenario(s)
	t0 := time.Now()
	res = Result{ID: s.ID, Title: s.Title, Severity: s.Severity, Tags: s.Tags, Why: strings.TrimSpace(s.Why), SpecRefs: s.Refs}
	defer func() { res.Duration = time.Since(t0) }()
	for _, f := range s.Requires {
		if !e.r.Target.Has(f) {
			res.Status, res.Reason = StatusSkip, "the target does not declare "+f
			return res
		}
	}
	for _, d := range s.Depends {
		// warn holds: the dependency's MUSTs held and only a SHOULD-level
		// detail (such as rs-baseline-control's resource_metadata) did not.
		if st, ok := done(d); !ok || (st != StatusPass && st != StatusWarn) {
			res.Status = StatusError
			res.Reason = "depends on " + d + ", which did not pass in this run: a rejection means nothing without an acceptance"
			if !ok {
				res.Reason = "depends on " + d + ", which did not run"
			}
			return res
		}
	}
	st := &state{tokens: map[string]string{}, refs: map[string]*TokenRef{}, figures: map[string]float64{}, sessions: map[string]string{}}
	if e.audit != nil {
		st.auditFrom = e.audit.mark()
	}
	for i := range s.Steps {
		if ctx.Err() != nil {
			st.errs = append(st.errs, "the run's time limit was reached")
			break
		}
		step := &s.Steps[i]
		if step.Only != "" && !e.r.Target.Has(step.Only) {
			st.skipped = append(st.skipped, stepName(step))
			continue
		}
		e.runStep(ctx, s, step, st)
	}
	if st.faulted {
		_ = e.r.IdP.ClearFaults(ctx, e.r.Target.Tenant)
	}
	if st.keysed {
		_ = e.r.IdP.ResetTenant(ctx, e.r.Target.Tenant)
	}
	res.Evidence = st.ev
	if len(st.figures) > 0 {
		res.Figures = st.figures
	}
	res.Status, res.Reason = verdict(s, e.r.Target, st)
	return res
}

// verdict folds a scenario's checks into its status.
func verdict(s *Scenario, t *Target, st *state) (Status, string) {
	var must, should []string
	for _, v := range st.viol {
		sev := v.sev
		if sev == "" {
			sev = s.Severity
		}
		switch sev {
		case MUST, MUSTIfDeclared:
			must = append(must, v.msg)
		default:
			should = append(should, v.msg)
		}
	}
	switch {
	case len(must) > 0:
		return StatusFail, strings.Join(must, "; ")
	case len(st.errs) > 0:
		return StatusError, strings.Join(st.errs, "; ")
	case len(should) > 0:
		return StatusWarn, strings.Join(should, "; ")
	case st.ran == 0:
		return StatusSkip, "no step applies to this target (" + strings.Join(st.skipped, ", ") + ")"
	}
	return StatusPass, fmt.Sprintf("%d check(s) held", st.ran)
}

func stepName(st *Step) string {
	if st.Name != "" {
		return st.Name
	}
	switch {
	case st.Call != nil:
		if st.Call.Token.None {
			return "call without a token"
		}
		if len(st.Call.Token.Mutate) > 0 {
			return "call with token: " + strings.Join(st.Call.Token.Mutate, ", ")
		}
		if st.Call.Token.Use != "" {
			return "call with token " + st.Call.Token.Use
		}
		return "call with a valid token"
	case st.Mint != nil:
		return "mint " + st.Mint.As
	case st.Revoke != nil:
		return "revoke " + st.Revoke.Token
	case st.Keys != nil:
		return "keys: " + st.Keys.Action
	case st.Audit != nil:
		return "check the audit sink"
	}
	return "step"
}

// finish counts results and sets the verdict: pass only if the baseline
// passed and every applicable MUST passed or is an expected failure, and
// no expected failure is stale.
func (rep *Report) finish(strict bool) {
	sm := Summary{Total: len(rep.Results)}
	baseline := false
	var bad []string
	for _, r := range rep.Results {
		switch r.Status {
		case StatusPass:
			sm.Pass++
		case StatusFail:
			sm.Fail++
		case StatusWarn:
			sm.Warn++
		case StatusSkip:
			sm.Skip++
		case StatusError:
			sm.Error++
		}
		if r.Expected {
			sm.ExpectedFailures++
		}
		if r.Stale {
			sm.StaleExpected++
			bad = append(bad, r.ID+" (stale expected failure)")
		}
		if (r.ID == BaselineID || r.ID == AgentBaselineID) && (r.Status == StatusPass || r.Status == StatusWarn) {
			baseline = true
		}
		if r.Expected {
			continue
		}
		switch {
		case r.Status == StatusFail:
			bad = append(bad, r.ID)
		case r.Status == StatusError && r.Severity != SHOULD:
			bad = append(bad, r.ID+" (error)")
		case r.Status == StatusWarn && strict:
			bad = append(bad, r.ID+" (warn, strict)")
		}
	}
	rep.Summary = sm
	rep.Strict = strict
	switch {
	case !baseline:
		rep.Verdict, rep.VerdictReason = "fail", "rs-baseline-control did not pass: the target did not accept a valid token, so no rejection can be trusted"
	case len(bad) > 0:
		rep.Verdict, rep.VerdictReason = "fail", "not conforming: "+strings.Join(bad, ", ")
	default:
		rep.Verdict, rep.VerdictReason = "pass", fmt.Sprintf("the baseline and every applicable MUST held (%d pass, %d warn, %d skip)", sm.Pass, sm.Warn, sm.Skip)
	}
}

// ExitCode is 0 when the verdict is pass, 1 otherwise.
func (rep *Report) ExitCode() int {
	if rep.Verdict == "pass" {
		return 0
	}
	return 1
}

func binaryDigest() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
