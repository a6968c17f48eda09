// Package conformance is agentsso's harness: it runs scripted scenarios
// (package scenarios holds the catalogue) against a target — a gateway or
// a resource/MCP server now, agents and authorization servers later — and
// records what happened as a Report that package report renders.
package conformance

import "time"

// SchemaVersion is the version of the report JSON schema
// (docs/REPORT-SCHEMA.md). It changes when a field changes meaning or
// disappears; added fields do not change it.
const SchemaVersion = "agentsso.report/v1"

// Status of a scenario.
type Status string

// Statuses, in the order a person should read them.
const (
	StatusFail  Status = "fail"  // a MUST (or a declared M*) was violated
	StatusError Status = "error" // the scenario could not be judged: unexpected 4xx, 5xx, timeout, baseline failed
	StatusWarn  Status = "warn"  // a SHOULD was violated
	StatusPass  Status = "pass"  // every check held, and the baseline passed in the same run
	StatusSkip  Status = "skip"  // not applicable, or the path was never exercised (with the reason)
)

// Severity of a scenario, as the catalogue assigns it.
type Severity string

// Severities.
const (
	MUST           Severity = "MUST"
	SHOULD         Severity = "SHOULD"
	MUSTIfDeclared Severity = "MUST-if-declared"
)

// SpecRef is a normative source a scenario tests, with the text it tests.
type SpecRef struct {
	ID   string `json:"id"`             // e.g. "RFC9068-4", "CVE-2022-21449", "MCP-Token-Handling"
	Text string `json:"text,omitempty"` // the sentence tested
	URL  string `json:"url,omitempty"`
}

// Report is the whole result of a run. It never holds a token or secret:
// a token appears as TokenRef.
type Report struct {
	Schema    string        `json:"schema"`
	Agentsso  Build         `json:"agentsso"`
	Catalogue Catalogue     `json:"catalogue"`
	Target    TargetInfo    `json:"target"`
	IdP       IdPInfo       `json:"idp"`
	Started   time.Time     `json:"started"`
	Duration  time.Duration `json:"duration_ns"`
	Summary   Summary       `json:"summary"`
	Results   []Result      `json:"results"`
	// Verdict is "pass" when the run's exit status is 0, "fail" otherwise.
	Verdict string `json:"verdict"`
	// VerdictReason says why, in one sentence.
	VerdictReason string `json:"verdict_reason"`
	// Strict is true when the run was made with --strict: a warn (a
	// violated SHOULD) then fails the run, and renderers show it as a
	// failure (JUnit <failure>) rather than a passing test with a note.
	Strict bool `json:"strict,omitempty"`
}

// Build identifies the agentsso binary that ran.
type Build struct {
	Version string `json:"version"`
	// Digest is the SHA-256 of the running binary, hex.
	Digest    string `json:"digest,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
}

// Catalogue identifies the scenario catalogue.
type Catalogue struct {
	Version string `json:"version"`
	// Hash is the SHA-256 over the scenario files that ran, hex.
	Hash string `json:"hash"`
	// Sources lists extra scenario directories given by the user.
	Sources []string `json:"sources,omitempty"`
}

// TargetInfo describes the system under test as the target file did.
type TargetInfo struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	URL      string   `json:"url"`
	Audience string   `json:"audience,omitempty"`
	Tenant   string   `json:"tenant,omitempty"`
	Features []string `json:"features,omitempty"`
}

// IdPInfo is the emulator the run used, with key provenance per tenant.
type IdPInfo struct {
	URL     string       `json:"url"`
	Tenants []TenantKeys `json:"tenants"`
}

// TenantKeys names a tenant's key backend and signing kid.
type TenantKeys struct {
	Tenant  string `json:"tenant"`
	Issuer  string `json:"issuer"`
	Backend string `json:"backend"`
	KID     string `json:"kid"`
	Alg     string `json:"alg,omitempty"`
}

// Summary counts results by status.
type Summary struct {
	Total int `json:"total"`
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	Warn  int `json:"warn"`
	Skip  int `json:"skip"`
	Error int `json:"error"`
	// ExpectedFailures counts failures listed in the expected-failures
	// file; StaleExpected counts listed ids that passed.
	ExpectedFailures int `json:"expected_failures,omitempty"`
	StaleExpected    int `json:"stale_expected,omitempty"`
}

// Result is one scenario's outcome.
type Result struct {
	ID       string        `json:"id"`
	Title    string        `json:"title"`
	Status   Status        `json:"status"`
	Severity Severity      `json:"severity"`
	Tags     []string      `json:"tags,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Reason is one sentence: why it failed, errored or was skipped, or
	// what held.
	Reason string `json:"reason"`
	// Why explains why the check matters (from the scenario file).
	Why      string    `json:"why,omitempty"`
	SpecRefs []SpecRef `json:"spec_refs"`
	// Expected marks a failure listed in the expected-failures file.
	Expected bool `json:"expected_failure,omitempty"`
	// Stale marks an expected failure that passed: the entry must go.
	Stale    bool       `json:"stale_expected,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
	// Figures are measurements, e.g. "revocation_delay_ms": 120.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Trace is an agent scenario's recorded requests, in order: who
	// called which harness server, with which token (by label and jti).
	Trace []TraceEntry `json:"trace,omitempty"`
}

// Evidence is one exchange with the target (or one observation), enough
// to reproduce the check.
type Evidence struct {
	Step     string     `json:"step"` // e.g. "call with alg=none token"
	Request  *Request   `json:"request,omitempty"`
	Response *Response  `json:"response,omitempty"`
	Upstream []Upstream `json:"upstream,omitempty"` // what reached the fake upstream
	Expected string     `json:"expected,omitempty"`
	Verdict  string     `json:"verdict,omitempty"` // ok | mismatch | error
	Note     string     `json:"note,omitempty"`
}

// Request as sent, with tokens replaced by TokenRef strings.
type Request struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Source  string            `json:"source,omitempty"` // local address it was sent from
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	Token   *TokenRef         `json:"token,omitempty"`
}

// Response as received (body truncated to 2 KiB, tokens redacted).
type Response struct {
	Status     int               `json:"status"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body,omitempty"`
	DurationMS float64           `json:"duration_ms"`
	Error      string            `json:"error,omitempty"` // transport error or timeout
}

// Upstream is one request the fake upstream received.
type Upstream struct {
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Token  *TokenRef `json:"token,omitempty"`
	// Passthrough is true when the upstream received the very token the
	// harness sent to the target.
	Passthrough bool `json:"passthrough"`
	// Claims of the upstream token that matter: aud, iss, sub, act.
	Claims map[string]any `json:"claims,omitempty"`
}

// TokenRef names a token without revealing it.
type TokenRef struct {
	// Label is the scenario's name for it, e.g. "alg-none".
	Label string `json:"label,omitempty"`
	JTI   string `json:"jti,omitempty"`
	// SHA256 is the first 16 hex digits of the token's SHA-256.
	SHA256 string `json:"sha256"`
	// Header and Claims are the decoded header and the claims that
	// matter; never the signature.
	Header map[string]any `json:"header,omitempty"`
	Claims map[string]any `json:"claims,omitempty"`
}
