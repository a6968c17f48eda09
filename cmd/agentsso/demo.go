package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/internal/jwtpeek"
)

func newTourCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "tour",
		Short: "Start the emulator on the embedded default and walk through the agent identity flows",
		Long: `tour starts the emulator in-process on free 127.0.0.1 ports with the embedded default
configuration and walks through what an agent and a gateway do: discovery, an agent's
client_credentials token, introspection by the gateway, token exchange with an act chain,
a refused audience, a cross-tenant replay, revocation and its cascade, and the audit trail.
Each step says what is expected and what happened; the exit status is 1 if any step
did not behave as a conforming IdP must.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTour(cmd.Context(), cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the emulator running after the walk-through, until Ctrl-C")
	return cmd
}

type demo struct {
	out    io.Writer
	http   *http.Client
	failed int
}

func (d *demo) step(title string) { fmt.Fprintf(d.out, "\n▸ %s\n", title) }

func (d *demo) check(ok bool, format string, a ...any) {
	mark := "✓"
	if !ok {
		mark = "✗"
		d.failed++
	}
	fmt.Fprintf(d.out, "  %s %s\n", mark, fmt.Sprintf(format, a...))
}

func (d *demo) info(format string, a ...any) {
	fmt.Fprintf(d.out, "    %s\n", fmt.Sprintf(format, a...))
}

// post sends a form with HTTP Basic client authentication and decodes the
// JSON answer.
func (d *demo) post(endpoint, user, pass string, form url.Values) (int, map[string]any) {
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func runTour(ctx context.Context, out io.Writer, keep bool) error {
	cfg := emulator.DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	dir, err := os.MkdirTemp("", "agentsso-tour-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Audit.Path = filepath.Join(dir, "audit.jsonl")
	run, err := start(ctx, cfg, out)
	if err != nil {
		return err
	}
	defer run.stop()
	d := &demo{out: out, http: &http.Client{Timeout: 10 * time.Second}}
	iss := run.srv.Issuer("acme")

	d.step("Discovery: an agent finds tenant acme's endpoints (RFC 8414)")
	resp, err := d.http.Get(run.url + "/.well-known/oauth-authorization-server/t/acme")
	var md map[string]any
	if err == nil {
		_ = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
	}
	d.check(err == nil && md["issuer"] == iss, "issuer %v", md["issuer"])
	d.info("token endpoint %v", md["token_endpoint"])
	d.info("jwks_uri       %v", md["jwks_uri"])

	tokenURL := iss + "/token"
	d.step("support-bot (an agent) gets its own token: client_credentials + resource indicator")
	st, tok := d.post(tokenURL, "support-bot", "support-bot-secret", url.Values{
		"grant_type": {"client_credentials"},
		"resource":   {"https://mcp.acme.test/zendesk"},
		"scope":      {"zendesk:tickets:read"},
	})
	at, _ := tok["access_token"].(string)
	d.check(st == 200 && at != "", "HTTP %d, token_type %v, expires_in %v", st, tok["token_type"], tok["expires_in"])
	claims := jwtpeek.Claims(at)
	d.info("claims: %s", compact(claims))
	d.check(claims["aud"] == "https://mcp.acme.test/zendesk", "aud is the requested resource")

	introspect := iss + "/introspect"
	d.step("The MCP gateway introspects it (RFC 7662)")
	st, in := d.post(introspect, "mcp-gateway", "mcp-gateway-secret", url.Values{"token": {at}})
	d.check(st == 200 && in["active"] == true, "active=%v client_id=%v scope=%v", in["active"], in["client_id"], in["scope"])

	d.step("The gateway exchanges it for a token meant for its upstream (RFC 8693), never passing it through")
	st, ex := d.post(tokenURL, "mcp-gateway", "mcp-gateway-secret", url.Values{
		"grant_type":         {emulator.GrantTokenExchange},
		"subject_token":      {at},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {"https://api.acme.test/upstream"},
		"scope":              {"zendesk:tickets:read"},
	})
	xt, _ := ex["access_token"].(string)
	d.check(st == 200 && xt != "", "HTTP %d issued_token_type=%v", st, ex["issued_token_type"])
	xc := jwtpeek.Claims(xt)
	d.info("claims: %s", compact(xc))
	act, _ := xc["act"].(map[string]any)
	d.check(xc["sub"] == "support-bot" && act["sub"] == "mcp-gateway", "sub=%v acting: %v", xc["sub"], act["sub"])

	d.step("An exchange for an audience the gateway may not reach is refused")
	st, bad := d.post(tokenURL, "mcp-gateway", "mcp-gateway-secret", url.Values{
		"grant_type":         {emulator.GrantTokenExchange},
		"subject_token":      {at},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {"https://payments.acme.test"},
	})
	d.check(st == 400 && bad["error"] == "invalid_target", "HTTP %d error=%v", st, bad["error"])

	d.step("A token of tenant acme replayed at tenant globex is not active there")
	st, gx := d.post(run.srv.Issuer("globex")+"/introspect", "globex-gateway", "globex-gateway-secret", url.Values{"token": {at}})
	d.check(st == 200 && gx["active"] == false, "HTTP %d active=%v", st, gx["active"])

	d.step("support-bot revokes its token (RFC 7009): the token and everything exchanged from it die at once")
	st, _ = d.post(iss+"/revoke", "support-bot", "support-bot-secret", url.Values{"token": {at}})
	d.check(st == 200, "revocation HTTP %d", st)
	_, in = d.post(introspect, "mcp-gateway", "mcp-gateway-secret", url.Values{"token": {at}})
	d.check(in["active"] == false, "original token active=%v", in["active"])
	_, in = d.post(introspect, "mcp-gateway", "mcp-gateway-secret", url.Values{"token": {xt}})
	d.check(in["active"] == false, "exchanged token active=%v (revocation cascades down the grant chain)", in["active"])

	d.step("Every decision is in the audit log, without a single token")
	page, err := audit.Read(run.auditPth, audit.Query{Limit: 1000})
	d.check(err == nil && len(page.Events) > 0, "%d events in %s", len(page.Events), run.auditPth)
	for _, e := range page.Events {
		d.info("%-10s %-6s %-14s %-5s %s", e.Endpoint, e.Tenant, e.ClientID, e.Decision, e.Reason)
	}
	raw, _ := os.ReadFile(run.auditPth)
	leaked := false
	for _, tk := range []string{at, xt} {
		leaked = leaked || (tk != "" && strings.Contains(string(raw), tk))
	}
	d.check(!leaked, "no token appears in the audit log")

	fmt.Fprintln(out)
	if d.failed > 0 {
		fmt.Fprintf(out, "tour: %d step(s) did not behave as expected\n", d.failed)
		return exitError(1)
	}
	fmt.Fprintln(out, "tour: every step behaved as expected. Next: `agentsso serve`, then point a gateway at an issuer above.")
	if keep {
		fmt.Fprintln(out, "tour: emulator still running; Ctrl-C to stop")
		<-ctx.Done()
	}
	return nil
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
