package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

type loadFlags struct {
	url, grant, cpuServer, cpuLoad    string
	keysBackend, stateDir             string
	dpop                              string
	concurrency, runs, tenants, procs int
	duration                          time.Duration
	maxRequests                       int64
	startupOnly, audit                bool
}

func newLoadCmd() *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Measure the emulator: cold start, tokens per second, peak memory (bounded in count and time)",
		Long: `load measures agentsso the way the README reports it. By default it starts its own
'agentsso serve' (this binary) on 127.0.0.1 with GOMAXPROCS=1 pinned to CPU 0 and runs the
load from CPU 1, then reports medians over --runs runs:

  cold start   exec of 'agentsso serve' to its first discovery response
  throughput   tokens/s at --concurrency clients for --duration (or --max-requests)
  peak RSS     the server's VmHWM after the load

--grant client_credentials (support-bot) or token_exchange (mcp-gateway exchanging a
support-bot token). --dpop ALG sends a DPoP proof (RFC 9449) with every request, made
by the load generator with one key of ALG, so that the server issues DPoP-bound tokens
(an RS256 proof costs the generator far more than the server: such a run measures the generator).
--tenants N serves N generated tenants, to measure memory per tenant.
--url targets an emulator that runs already (no start-up or RSS figures then).
All traffic goes to 127.0.0.1; every run stops after --duration or --max-requests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLoad(cmd.Context(), cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "base URL of a running emulator (default: start one)")
	fl.StringVar(&f.grant, "grant", "client_credentials", "client_credentials or token_exchange")
	fl.IntVar(&f.concurrency, "concurrency", 64, "concurrent clients")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "length of each run (at most 5m)")
	fl.Int64Var(&f.maxRequests, "max-requests", 2_000_000, "stop a run after this many requests")
	fl.IntVar(&f.runs, "runs", 5, "runs; medians are reported")
	fl.IntVar(&f.tenants, "tenants", 0, "serve this many generated tenants instead of the default configuration")
	fl.IntVar(&f.procs, "server-procs", 1, "GOMAXPROCS of the started server")
	fl.StringVar(&f.cpuServer, "server-cpu", "0", "CPU list the started server is pinned to (empty: no pinning)")
	fl.StringVar(&f.cpuLoad, "load-cpu", "1", "CPU the load generator is pinned to (empty: no pinning)")
	fl.BoolVar(&f.startupOnly, "startup-only", false, "measure only the cold start")
	fl.BoolVar(&f.audit, "audit", true, "run the started server with its audit log on")
	fl.StringVar(&f.dpop, "dpop", "", "send a DPoP proof by a key of this algorithm with every token request: ES256, EdDSA or RS256 (default: none, Bearer tokens)")
	fl.StringVar(&f.keysBackend, "keys-backend", "memory", "key backend of the started server: memory, pkcs11 (SoftHSM2) or tpm (swtpm)")
	fl.StringVar(&f.stateDir, "state-dir", "", "state directory of the started server, kept across runs (default: a new temporary one per run); with pkcs11 or tpm the first run creates the keys and later runs start with existing ones")
	return cmd
}

type loadResult struct {
	startup  time.Duration
	rate     float64
	p50, p99 time.Duration
	errors   int64
	rssKiB   int64
}

func runLoad(ctx context.Context, out io.Writer, f loadFlags) error {
	if f.duration <= 0 || f.duration > 5*time.Minute {
		return errors.New("--duration: want a value above 0 and at most 5m")
	}
	if f.concurrency < 1 || f.concurrency > 1024 {
		return errors.New("--concurrency: want 1 to 1024")
	}
	if f.grant != "client_credentials" && f.grant != "token_exchange" {
		return fmt.Errorf("--grant: unknown %q (want client_credentials or token_exchange)", f.grant)
	}
	if f.dpop != "" && !slices.Contains(dpopLoadAlgs, f.dpop) {
		return fmt.Errorf("--dpop: unknown algorithm %q (want one of %s)", f.dpop, strings.Join(dpopLoadAlgs, ", "))
	}
	if f.cpuLoad != "" {
		if n, err := strconv.Atoi(f.cpuLoad); err == nil {
			pinToCPU(n)
		}
	}
	var results []loadResult
	for i := 0; i < max(f.runs, 1); i++ {
		r, err := loadRun(ctx, out, f)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "run %d: start %v, %.0f tokens/s, p50 %v, p99 %v, %d errors, peak RSS %.1f MiB\n",
			i+1, r.startup.Round(100*time.Microsecond), r.rate, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errors, float64(r.rssKiB)/1024)
		results = append(results, r)
	}
	med := func(get func(loadResult) float64) float64 {
		v := make([]float64, len(results))
		for i, r := range results {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	grant := f.grant
	if f.dpop != "" {
		grant += ", DPoP " + f.dpop
	}
	fmt.Fprintf(out, "median of %d: cold start %.1f ms, %.0f tokens/s (%s, %d clients), peak RSS %.1f MiB\n", len(results),
		med(func(r loadResult) float64 { return float64(r.startup) / 1e6 }),
		med(func(r loadResult) float64 { return r.rate }), grant, f.concurrency,
		med(func(r loadResult) float64 { return float64(r.rssKiB) / 1024 }))
	return nil
}

var listenRE = regexp.MustCompile(`listening on (https?://\S+)`)

func loadRun(ctx context.Context, out io.Writer, f loadFlags) (loadResult, error) {
	var res loadResult
	base := f.url
	var pid int
	if base == "" {
		dir, err := os.MkdirTemp("", "agentsso-load-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		exe, err := os.Executable()
		if err != nil {
			return res, err
		}
		args := []string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
		state := f.stateDir
		if state == "" {
			state = filepath.Join(dir, "state")
		}
		args = append(args, "--state-dir", state)
		if f.tenants > 0 {
			p := filepath.Join(dir, "tenants.yaml")
			if err := os.WriteFile(p, generatedTenants(f.tenants), 0o600); err != nil {
				return res, err
			}
			args = append(args, "--config", p)
		}
		name := exe
		if f.cpuServer != "" {
			if ts, err := exec.LookPath("taskset"); err == nil {
				args = append([]string{"-c", f.cpuServer, exe}, args...)
				name = ts
			}
		}
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(f.procs), "AGENTSSO_KEYS_BACKEND="+f.keysBackend)
		if f.audit {
			cmd.Env = append(cmd.Env, "AGENTSSO_AUDIT_PATH="+filepath.Join(dir, "audit.jsonl"))
		} else {
			cmd.Env = append(cmd.Env, "AGENTSSO_AUDIT_DISABLED=true")
		}
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return res, err
		}
		pid = cmd.Process.Pid
		defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				base = m[1]
				break
			}
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		if base == "" {
			return res, errors.New("the started server printed no listening address")
		}
		tenant := "acme"
		if f.tenants > 0 {
			tenant = "t0"
		}
		for {
			resp, err := http.Get(base + "/t/" + tenant + "/.well-known/openid-configuration")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(t0) > 10*time.Second {
				return res, errors.New("the started server did not answer discovery within 10s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		res.startup = time.Since(t0)
	}
	if f.startupOnly {
		return res, nil
	}
	tenant := "acme"
	if f.tenants > 0 {
		tenant = "t0"
	}
	if err := hammer(ctx, base+"/t/"+tenant, f, &res); err != nil {
		return res, err
	}
	if pid != 0 {
		res.rssKiB = peakRSS(pid)
	}
	return res, nil
}

// hammer runs the bounded load and fills rate, latencies and errors.
func hammer(ctx context.Context, issuer string, f loadFlags, res *loadResult) error {
	tr := &http.Transport{MaxIdleConns: f.concurrency * 2, MaxIdleConnsPerHost: f.concurrency * 2, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	form := url.Values{"grant_type": {"client_credentials"}}
	user, pass := "support-bot", "support-bot-secret"
	if f.tenants > 0 {
		user, pass = "agent", "agent-secret"
	}
	if f.grant == "token_exchange" {
		code, body := postForm(hc, issuer+"/token", user, pass, form, "")
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.Unmarshal(body, &tok)
		if code != 200 || tok.AccessToken == "" {
			return fmt.Errorf("could not get a subject token: HTTP %d %s", code, body)
		}
		form = url.Values{
			"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":      {tok.AccessToken},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		}
		user, pass = "mcp-gateway", "mcp-gateway-secret"
		if f.tenants > 0 {
			user, pass = "gateway", "gateway-secret"
		}
	}
	body := form.Encode()
	// With --dpop every request carries a fresh proof for the token
	// endpoint the tenant advertises (htu), and the first one must come
	// back as a DPoP token.
	var (
		dpop *dpopSigner
		htu  string
	)
	if f.dpop != "" {
		var err error
		if dpop, err = newDPoPSigner(f.dpop); err != nil {
			return err
		}
		if htu, err = tokenEndpoint(hc, issuer); err != nil {
			return err
		}
		p, err := dpop.proof(htu, time.Now())
		if err != nil {
			return err
		}
		code, b := postBody(hc, issuer+"/token", user, pass, body, p)
		var tok struct {
			TokenType string `json:"token_type"`
		}
		_ = json.Unmarshal(b, &tok)
		if code != 200 || tok.TokenType != "DPoP" {
			return fmt.Errorf("--dpop: the server did not issue a DPoP token: HTTP %d %s", code, b)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	var n, errs atomic.Int64
	lat := make([][]time.Duration, f.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < f.concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for ctx.Err() == nil && n.Add(1) <= f.maxRequests {
				t := time.Now()
				var proof string
				if dpop != nil {
					var err error
					if proof, err = dpop.proof(htu, t); err != nil {
						errs.Add(1)
						continue
					}
				}
				code, _ := postBody(hc, issuer+"/token", user, pass, body, proof)
				if code != 200 {
					errs.Add(1)
				}
				if len(lat[w]) < 100_000 {
					lat[w] = append(lat[w], time.Since(t))
				}
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	total := min(n.Load(), f.maxRequests)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		res.p50, res.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	res.errors = errs.Load()
	res.rate = float64(total-res.errors) / el.Seconds()
	return nil
}

func postForm(hc *http.Client, u, user, pass string, form url.Values, dpop string) (int, []byte) {
	return postBody(hc, u, user, pass, form.Encode(), dpop)
}

// postBody posts a form, with a DPoP header when dpop is not empty.
func postBody(hc *http.Client, u, user, pass, body, dpop string) (int, []byte) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	if dpop != "" {
		req.Header.Set("DPoP", dpop)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// tokenEndpoint reads the token endpoint a tenant advertises.
func tokenEndpoint(hc *http.Client, issuer string) (string, error) {
	resp, err := hc.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var md struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || resp.StatusCode != 200 || md.TokenEndpoint == "" {
		return "", fmt.Errorf("discovery at %s: HTTP %d, no token_endpoint (%v)", issuer, resp.StatusCode, err)
	}
	return md.TokenEndpoint, nil
}

// peakRSS reads VmHWM of a process, in KiB.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

// generatedTenants is a configuration of n small tenants t0…t{n-1}, each
// with one agent and one gateway.
func generatedTenants(n int) []byte {
	var b strings.Builder
	b.WriteString("keys: {backend: memory, alg: ES256}\ntenants:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `  - name: t%d
    scopes: [tools:read]
    audiences: [https://rs.t%d.test]
    clients:
      - {id: agent, secret: agent-secret, grant_types: [client_credentials], required_scopes: [tools:read], audiences: [https://rs.t%d.test], default_audience: [https://rs.t%d.test]}
      - {id: gateway, secret: gateway-secret, introspect: true, grant_types: ["urn:ietf:params:oauth:grant-type:token-exchange"], audiences: [https://rs.t%d.test], exchange_audiences: [https://rs.t%d.test]}
`, i, i, i, i, i, i)
	}
	return []byte(b.String())
}
