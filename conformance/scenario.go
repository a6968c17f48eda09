package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is one catalogue entry: data, read from a YAML file. The step
// language is documented in docs/SCENARIOS.md.
type Scenario struct {
	ID    string `yaml:"id"`
	Title string `yaml:"title"`
	// Kinds of target it applies to: gateway, resource-server.
	Kinds    []string `yaml:"kinds"`
	Severity Severity `yaml:"severity"`
	// Requires lists features the target must declare; without them the
	// scenario is skipped.
	Requires []string `yaml:"requires"`
	Tags     []string `yaml:"tags"`
	// Depends lists scenarios that must pass first (default:
	// rs-baseline-control for every scenario but itself).
	Depends []string `yaml:"depends"`
	// Alone runs the scenario with nothing else under way when scenarios
	// run in parallel. Scenarios with keys, fault or audit steps, or a
	// timed call (expect.within), always run alone (RunsAlone).
	Alone bool      `yaml:"alone"`
	Why   string    `yaml:"why"`
	Refs  []SpecRef `yaml:"refs"`
	Steps []Step    `yaml:"steps"`
	// Agent is the world and the trace checks of an agent scenario
	// (kind agent), instead of steps; see agent.go.
	Agent *AgentSection `yaml:"agent"`

	// File is where the scenario was read from.
	File string `yaml:"-"`
	raw  []byte
}

// Step is one action of a scenario. Exactly one of the action fields is
// set.
type Step struct {
	// Name describes the step in evidence; defaults from the action.
	Name string `yaml:"name"`
	// Only runs the step when the target declares this feature; otherwise
	// it is skipped (and the scenario is skipped if no step ran).
	Only string `yaml:"only"`

	Mint   *MintStep   `yaml:"mint"`
	Call   *CallStep   `yaml:"call"`
	Revoke *RevokeStep `yaml:"revoke"`
	Keys   *KeysStep   `yaml:"keys"`
	Audit  *AuditStep  `yaml:"audit"`
	// Fault injects a failure at one of the IdP's endpoints (the target's
	// introspection, say) until the scenario ends.
	Fault *Fault `yaml:"fault"`
	// Metadata fetches the target's RFC 9728 protected resource metadata
	// from the resource_metadata URL of its 401 challenge and checks it.
	Metadata *MetadataStep `yaml:"metadata"`
}

// MetadataStep checks protected resource metadata (RFC 9728).
type MetadataStep struct {
	// Fields that must be present besides resource and
	// authorization_servers (e.g. scopes_supported).
	Fields []string `yaml:"fields"`
}

// TokenSpec describes a token: a named one minted earlier (Use), none
// (None), or a fresh token T valid for the target except for the named
// mutations.
type TokenSpec struct {
	Use    string         `yaml:"use"`
	None   bool           `yaml:"none"`
	Mutate []string       `yaml:"mutate"`
	Claims map[string]any `yaml:"claims"`
	Header map[string]any `yaml:"header"`
	// Lifetime of the token (default 5m); Offset shifts iat/exp from now.
	Lifetime Duration `yaml:"lifetime"`
	Offset   Duration `yaml:"offset"`
	// Kind is access (default) or id: an ID token of a signed-in user.
	Kind string `yaml:"kind"`
}

// MintStep mints a token and names it for later steps.
type MintStep struct {
	As        string `yaml:"as"`
	TokenSpec `yaml:",inline"`
}

// CallStep calls the target.
type CallStep struct {
	Token TokenSpec `yaml:"token"`
	// Scheme of the Authorization header: Bearer (default), DPoP, or a
	// verbatim value such as "bearer".
	Scheme string `yaml:"scheme"`
	// From is the source address in 127.0.0.0/8 (default 127.0.0.1).
	From string `yaml:"from"`
	// InQuery sends the token as ?access_token= instead of a header.
	InQuery bool `yaml:"in_query"`
	// DPoP adds a proof, with optional named mutations.
	DPoP *DPoPSpec `yaml:"dpop"`
	// Cert is the TLS client certificate presented to an https target:
	// bound (the one cnf-x5t tokens are bound to), other (a second
	// certificate of the same CA) or none. Default: bound for a
	// certificate-bound token or a target whose handshake requires a
	// certificate (tls.client_cert_required), else none.
	Cert string `yaml:"cert"`
	// Spoof adds headers a TLS-terminating proxy would set, forged by the
	// caller (see spoofHeaders): the bound certificate in client-cert,
	// x-client-cert, x-ssl-client-cert, x-forwarded-client-cert or
	// x-arr-clientcert; 127.0.0.1 in x-forwarded-for, x-real-ip or
	// forwarded.
	Spoof []string `yaml:"spoof"`
	// Scope, when set, overrides the scope the call needs (MCP: the tool
	// whose scope it is).
	Tool string `yaml:"tool"`
	// Poll repeats the call until the expectation holds or Within passes.
	Poll *Poll `yaml:"poll"`
	// SaveSession names the MCP session this call opens; UseSession sends
	// the call inside a session opened earlier (with this call's token),
	// instead of opening its own.
	SaveSession string `yaml:"save_session"`
	UseSession  string `yaml:"use_session"`
	// Expect is accept, reject, insufficient_scope, or a full Expect.
	Expect Expect `yaml:"expect"`
}

// DPoPSpec describes a DPoP proof.
type DPoPSpec struct {
	Mutate []string `yaml:"mutate"`
	// Key is "bound" (the key the token is bound to, default) or "other".
	Key string `yaml:"key"`
}

// Poll repeats a call.
type Poll struct {
	Within Duration `yaml:"within"`
	Every  Duration `yaml:"every"`
}

// Expect is what a conforming target does.
type Expect struct {
	// Outcome is accept, reject or insufficient_scope.
	Outcome string `yaml:"outcome"`
	// Status lists acceptable HTTP statuses (default from Outcome).
	Status []int `yaml:"status"`
	// Challenge checks WWW-Authenticate: scheme and error.
	Challenge *Challenge `yaml:"challenge"`
	// Upstream checks what reached the fake upstream.
	Upstream *UpstreamExpect `yaml:"upstream"`
	// Severity overrides the scenario's for this expectation (e.g. a
	// SHOULD-level detail inside a MUST scenario).
	Severity Severity `yaml:"severity"`
	// Record only records the outcome as a figure; it never fails.
	Record string `yaml:"record"`
	// Within bounds the response time: the call is timed, the time is a
	// figure (Figure, default the token's label + "_ms"), and an answer
	// slower than Within, a 5xx or no answer at all is a violation of the
	// scenario's severity rather than an error (a denial-of-service probe).
	Within Duration `yaml:"within"`
	Figure string   `yaml:"figure"`
}

// Challenge is an expected WWW-Authenticate.
type Challenge struct {
	Scheme string `yaml:"scheme"`
	Error  string `yaml:"error"`
	// Param names a parameter that must be present (resource_metadata).
	Param string `yaml:"param"`
	// Severity of a challenge mismatch (default SHOULD: the status already
	// says reject or accept).
	Severity Severity `yaml:"severity"`
}

// UpstreamExpect is what the fake upstream must (not) have received.
type UpstreamExpect struct {
	// Received: the call must (true) or must not (false) reach upstream.
	Received *bool `yaml:"received"`
	// NotPassthrough: the upstream token must differ from the inbound one.
	NotPassthrough bool `yaml:"not_passthrough"`
	// Audience the upstream token must have.
	Audience string `yaml:"audience"`
}

// RevokeStep revokes a named token at the IdP.
type RevokeStep struct {
	Token string `yaml:"token"`
}

// KeysStep changes the tenant's keys.
type KeysStep struct {
	// Action: rotate, withdraw (the kid of Token), hide (of Token), restore.
	Action string `yaml:"action"`
	Token  string `yaml:"token"`
}

// AuditStep checks the target's audit sink for the last decisions.
type AuditStep struct {
	// Fields that every record must carry (canonical names).
	Fields []string `yaml:"fields"`
}

// UnmarshalYAML lets expect be written as a bare outcome.
func (e *Expect) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		e.Outcome = n.Value
		return nil
	}
	type plain Expect
	return n.Decode((*plain)(e))
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 30s, 5m, -1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ParseError locates a problem in a scenario file.
type ParseError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ParseError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		return loc + ": " + e.Field + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)

// Kinds of target the engine knows.
var knownKinds = []string{"gateway", "resource-server", "agent"}

// KnownFeatures a target may declare.
var KnownFeatures = []string{"rfc9068", "introspection", "dpop", "mtls", "context-binding", "token-exchange", "resource-metadata", "audit", "act-policy", "mcp",
	// agents
	"authorization-code", "client-credentials", "private-key-jwt", "pkcs11-key", "oidc", "dynamic-registration", "https"}

// ParseScenario reads one scenario file strictly: unknown keys, unknown
// mutations, outcomes and features are errors with file, line and field.
func ParseScenario(file string, data []byte) (*Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, yamlError(file, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	s.File, s.raw = file, data
	bad := func(field, format string, a ...any) error {
		return &ParseError{File: file, Line: lineOf(&root, field), Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	var errs []error
	if !idRE.MatchString(s.ID) {
		errs = append(errs, bad("id", "%q: want 2-63 lowercase letters, digits and '-'", s.ID))
	}
	if s.Title == "" {
		errs = append(errs, bad("title", "missing: say in one line what a conforming target does"))
	}
	if len(s.Kinds) == 0 {
		errs = append(errs, bad("kinds", "missing: list the target kinds (%s)", strings.Join(knownKinds, ", ")))
	}
	for i, k := range s.Kinds {
		if !slices.Contains(knownKinds, k) {
			errs = append(errs, bad(fmt.Sprintf("kinds[%d]", i), "unknown kind %q (want %s)", k, strings.Join(knownKinds, ", ")))
		}
	}
	switch s.Severity {
	case MUST, SHOULD, MUSTIfDeclared:
	default:
		errs = append(errs, bad("severity", "%q: want MUST, SHOULD or MUST-if-declared", s.Severity))
	}
	for i, f := range s.Requires {
		if !slices.Contains(KnownFeatures, f) {
			errs = append(errs, bad(fmt.Sprintf("requires[%d]", i), "unknown feature %q (want one of %s)", f, strings.Join(KnownFeatures, ", ")))
		}
	}
	if len(s.Refs) == 0 {
		errs = append(errs, bad("refs", "missing: cite at least one source (RFC section, CVE, MCP text)"))
	}
	switch {
	case s.Agent != nil:
		if len(s.Steps) > 0 {
			errs = append(errs, bad("steps", "an agent scenario has an agent section instead of steps"))
		}
		if !slices.Equal(s.Kinds, []string{"agent"}) {
			errs = append(errs, bad("kinds", "an agent scenario applies to kind agent only"))
		}
		errs = append(errs, s.Agent.validate(bad)...)
	case slices.Contains(s.Kinds, "agent"):
		errs = append(errs, bad("agent", "missing: a scenario of kind agent needs an agent section (setup and expect)"))
	case len(s.Steps) == 0:
		errs = append(errs, bad("steps", "missing: a scenario needs at least one step"))
	}
	named := map[string]bool{}
	for i := range s.Steps {
		errs = append(errs, s.Steps[i].validate(fmt.Sprintf("steps[%d]", i), named, bad)...)
	}
	if s.Depends == nil && s.ID != BaselineID && s.ID != AgentBaselineID {
		s.Depends = []string{BaselineID}
		if s.Agent != nil {
			s.Depends = []string{AgentBaselineID}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &s, nil
}

// BaselineID is the control every rejection is judged against.
const BaselineID = "rs-baseline-control"

func (st *Step) validate(f string, named map[string]bool, bad func(string, string, ...any) error) []error {
	var errs []error
	n := 0
	for _, set := range []bool{st.Mint != nil, st.Call != nil, st.Revoke != nil, st.Keys != nil, st.Audit != nil, st.Fault != nil, st.Metadata != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return []error{bad(f, "a step needs exactly one of mint, call, revoke, keys, audit, fault, metadata (found %d)", n)}
	}
	if st.Only != "" && !slices.Contains(KnownFeatures, st.Only) {
		errs = append(errs, bad(f+".only", "unknown feature %q", st.Only))
	}
	checkToken := func(tf string, ts *TokenSpec) {
		if ts.Use != "" && !named[ts.Use] {
			errs = append(errs, bad(tf+".use", "no earlier mint step names a token %q", ts.Use))
		}
		for j, m := range ts.Mutate {
			if _, ok := mutations[mutationName(m)]; !ok {
				errs = append(errs, bad(fmt.Sprintf("%s.mutate[%d]", tf, j), "unknown mutation %q (see `agentsso scenarios mutations`)", m))
			}
		}
		if ts.Kind != "" && ts.Kind != "access" && ts.Kind != "id" {
			errs = append(errs, bad(tf+".kind", "%q: want access or id", ts.Kind))
		}
	}
	switch {
	case st.Mint != nil:
		if st.Mint.As == "" {
			errs = append(errs, bad(f+".mint.as", "missing: name the token for later steps"))
		}
		checkToken(f+".mint", &st.Mint.TokenSpec)
		named[st.Mint.As] = true
	case st.Call != nil:
		c := st.Call
		checkToken(f+".call.token", &c.Token)
		switch c.Expect.Outcome {
		case "accept", "reject", "insufficient_scope", "record":
		default:
			errs = append(errs, bad(f+".call.expect", "%q: want accept, reject, insufficient_scope or record", c.Expect.Outcome))
		}
		errs = append(errs, c.Expect.validateTiming(f+".call.expect", bad)...)
		if c.UseSession != "" && !named["session:"+c.UseSession] {
			errs = append(errs, bad(f+".call.use_session", "no earlier call saves a session %q", c.UseSession))
		}
		if c.SaveSession != "" {
			named["session:"+c.SaveSession] = true
		}
		if c.From != "" && !strings.HasPrefix(c.From, "127.") {
			errs = append(errs, bad(f+".call.from", "%q: source addresses must be in 127.0.0.0/8", c.From))
		}
		switch c.Cert {
		case "", "bound", "other", "none":
		default:
			errs = append(errs, bad(f+".call.cert", "%q: want bound, other or none", c.Cert))
		}
		for j, h := range c.Spoof {
			if _, ok := spoofHeaders[strings.ToLower(h)]; !ok {
				errs = append(errs, bad(fmt.Sprintf("%s.call.spoof[%d]", f, j), "unknown header %q (want one of %s)", h, strings.Join(spoofHeaderNames(), ", ")))
			}
		}
		if c.DPoP != nil {
			for j, m := range c.DPoP.Mutate {
				if !slices.Contains(dpopMutations, m) {
					errs = append(errs, bad(fmt.Sprintf("%s.call.dpop.mutate[%d]", f, j), "unknown DPoP mutation %q (want one of %s)", m, strings.Join(dpopMutations, ", ")))
				}
			}
		}
	case st.Fault != nil:
		switch st.Fault.Mode {
		case "unavailable", "error", "ratelimit", "slow", "malformed":
		default:
			errs = append(errs, bad(f+".fault.mode", "%q: want unavailable, error, ratelimit, slow or malformed", st.Fault.Mode))
		}
		if st.Fault.Endpoint == "" {
			errs = append(errs, bad(f+".fault.endpoint", "missing: name the IdP endpoint (token, introspect, jwks, …)"))
		}
	case st.Revoke != nil:
		if !named[st.Revoke.Token] {
			errs = append(errs, bad(f+".revoke.token", "no earlier mint step names a token %q", st.Revoke.Token))
		}
	case st.Keys != nil:
		switch st.Keys.Action {
		case "rotate", "restore":
		case "withdraw", "hide":
			if !named[st.Keys.Token] {
				errs = append(errs, bad(f+".keys.token", "no earlier mint step names a token %q", st.Keys.Token))
			}
		default:
			errs = append(errs, bad(f+".keys.action", "%q: want rotate, withdraw, hide or restore", st.Keys.Action))
		}
	}
	return errs
}

var yamlLineRE = regexp.MustCompile(`line (\d+): (.*)`)

func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, e := range te.Errors {
			errs = append(errs, oneYAMLError(file, e))
		}
		return errors.Join(errs...)
	}
	return oneYAMLError(file, err.Error())
}

func oneYAMLError(file, msg string) error {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ParseError{File: file, Line: line, Msg: m[2]}
	}
	return &ParseError{File: file, Msg: msg}
}

// lineOf finds the line of a field path like steps[2].call.token.mutate[0].
func lineOf(root *yaml.Node, field string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(field, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		next := (*yaml.Node)(nil)
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == name {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// Catalogue is a loaded set of scenarios.
type CatalogueSet struct {
	Scenarios []*Scenario
	Sources   []string
}

// Load reads every *.yaml file of each file system (the embedded
// catalogue first, then user directories). A later scenario with an id
// already loaded is an error.
func Load(sources map[string]fs.FS, order []string) (*CatalogueSet, error) {
	cs := &CatalogueSet{}
	seen := map[string]string{}
	var errs []error
	for _, name := range order {
		fsys := sources[name]
		files, err := fs.Glob(fsys, "*.yaml")
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, f := range files {
			if f == "catalog.yaml" {
				continue
			}
			b, err := fs.ReadFile(fsys, f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			file := path.Join(name, f)
			s, err := ParseScenario(file, b)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if prev, ok := seen[s.ID]; ok {
				errs = append(errs, &ParseError{File: file, Field: "id", Msg: fmt.Sprintf("%q is already defined in %s", s.ID, prev)})
				continue
			}
			seen[s.ID] = file
			cs.Scenarios = append(cs.Scenarios, s)
		}
		cs.Sources = append(cs.Sources, name)
	}
	for _, s := range cs.Scenarios {
		for i, d := range s.Depends {
			if _, ok := seen[d]; !ok {
				errs = append(errs, &ParseError{File: s.File, Field: fmt.Sprintf("depends[%d]", i), Msg: fmt.Sprintf("no scenario %q", d)})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The baseline runs first; the rest keep file order.
	sort.SliceStable(cs.Scenarios, func(i, j int) bool {
		return cs.Scenarios[i].ID == BaselineID && cs.Scenarios[j].ID != BaselineID
	})
	return cs, nil
}

// Hash is the SHA-256 over the scenario files, in order.
func (cs *CatalogueSet) Hash() string {
	h := sha256.New()
	for _, s := range cs.Scenarios {
		fmt.Fprintf(h, "%s\n%d\n", s.File, len(s.raw))
		h.Write(s.raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Find returns the scenario with id.
func (cs *CatalogueSet) Find(id string) *Scenario {
	for _, s := range cs.Scenarios {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// maxWithin bounds expect.within: a probe that needs longer is not a
// response-time check.
const maxWithin = time.Minute

var figureRE = regexp.MustCompile(`^[a-z][a-z0-9_]*_ms$`)

// validateTiming checks within and figure.
func (x *Expect) validateTiming(f string, bad func(string, string, ...any) error) []error {
	var errs []error
	if x.Within != 0 {
		if x.Outcome == "record" {
			errs = append(errs, bad(f+".within", "a recorded call is not judged: drop within, or expect accept, reject or insufficient_scope"))
		}
		if x.Within < 0 || time.Duration(x.Within) > maxWithin {
			errs = append(errs, bad(f+".within", "%v: want a bound above 0 and at most %v", time.Duration(x.Within), maxWithin))
		}
	}
	if x.Figure != "" {
		if x.Within == 0 {
			errs = append(errs, bad(f+".figure", "names the time a timed call took: set within too"))
		}
		if !figureRE.MatchString(x.Figure) {
			errs = append(errs, bad(f+".figure", "%q: want lowercase letters, digits and _, ending in _ms", x.Figure))
		}
	}
	return errs
}

// RunsAlone reports whether the scenario must run with nothing else under
// way: it says so (alone), or one of its steps changes what other
// scenarios rely on (keys, faults: the tenant's state), reads what every
// scenario writes (audit: the target's decision log), or measures the
// target's response time (a call with within), which concurrent load
// would distort.
func (s *Scenario) RunsAlone() bool {
	if s.Alone || s.ID == BaselineID {
		return true
	}
	for _, st := range s.Steps {
		if st.Keys != nil || st.Fault != nil || st.Audit != nil || (st.Call != nil && st.Call.Expect.Within != 0) {
			return true
		}
	}
	return false
}
