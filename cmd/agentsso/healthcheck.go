package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/emulator/tlsca"
)

// newHealthcheckCmd is the container image's HEALTHCHECK: a GET of
// /healthz on the public listener, exit status 0 when it answers 200 and 1
// otherwise. It needs no curl in the image.
func newHealthcheckCmd() *cobra.Command {
	var (
		config, target string
		timeout        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "GET /healthz of a running agentsso serve; exit 0 when healthy, 1 otherwise",
		Long: `healthcheck asks a running "agentsso serve" whether it is up: a GET of /healthz on
the public listener. Without --url the address comes from the same configuration serve
reads (--config, AGENTSSO_CONFIG, AGENTSSO_ADDR, AGENTSSO_TLS, AGENTSSO_STATE_DIR), with a
wildcard host (0.0.0.0, ::) asked on 127.0.0.1. Over TLS it trusts the local CA in
{state_dir}/tls when there is one; without a state directory it does not verify the
certificate (the probe sends nothing secret). The container image's HEALTHCHECK runs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := healthcheck(cmd.OutOrStdout(), config, target, timeout); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "agentsso healthcheck:", err)
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "configuration file (YAML); default: $AGENTSSO_CONFIG or the embedded default")
	cmd.Flags().StringVar(&target, "url", "", "URL to GET instead of the configured listener's /healthz")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	return cmd
}

func healthcheck(out io.Writer, config, target string, timeout time.Duration) error {
	tc := &tls.Config{}
	if target == "" {
		cfg, _, err := loadConfig(config)
		if err != nil {
			return err
		}
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return fmt.Errorf("addr %q: %w", cfg.Addr, err)
		}
		if port == "0" {
			return errors.New("addr has port 0 (a free port chosen at start): pass --url")
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		scheme := "http"
		if cfg.TLS {
			scheme = "https"
			tc.InsecureSkipVerify = true
			if cfg.StateDir != "" {
				if pem, err := os.ReadFile(filepath.Join(cfg.StateDir, "tls", tlsca.CertFileName)); err == nil {
					pool := x509.NewCertPool()
					if pool.AppendCertsFromPEM(pem) {
						tc.InsecureSkipVerify, tc.RootCAs = false, pool
					}
				}
			}
		}
		target = scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	}
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil}}
	resp, err := hc.Get(target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", target, resp.StatusCode)
	}
	fmt.Fprintf(out, "ok: %s\n", target)
	return nil
}
