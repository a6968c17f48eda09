package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/softhsm"
)

// openKeyStore opens the key custody backend the configuration names.
// For pkcs11 without a module or URI, agentsso runs its own SoftHSM2 token
// under {state_dir}/softhsm, initialised on first use; for tpm without a
// device, its own swtpm under {state_dir}/swtpm. Keys persist across
// restarts in both.
func openKeyStore(ctx context.Context, cfg emulator.Config) (softhsm.Store, error) {
	state := cfg.StateDir
	need := func(what string) (string, error) {
		if state == "" {
			return "", fmt.Errorf("keys.backend %s keeps its %s under the state directory: set --state-dir (or AGENTSSO_STATE_DIR)", cfg.Keys.Backend, what)
		}
		return state, nil
	}
	switch cfg.Keys.Backend {
	case "", "memory":
		dir := ""
		if state != "" {
			dir = filepath.Join(state, "keys", "memory")
		}
		return softhsm.NewMemory(dir)
	case "pkcs11":
		p := cfg.Keys.PKCS11
		if p.URI != "" || p.Module != "" {
			return softhsm.NewPKCS11(softhsm.PKCS11Config{URI: p.URI, Module: p.Module, Token: p.TokenLabel, PIN: p.PIN})
		}
		st, err := need("SoftHSM2 token")
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(st, "softhsm")
		so, pin, err := softhsmPINs(dir, p)
		if err != nil {
			return nil, err
		}
		label := p.TokenLabel
		if label == "" {
			label = "agentsso"
		}
		pc, err := softhsm.SetupSoftHSM2(dir, label, so, pin)
		if err != nil {
			return nil, err
		}
		return softhsm.NewPKCS11(pc)
	case "tpm":
		st, err := need("TPM key blobs")
		if err != nil {
			return nil, err
		}
		tc := softhsm.TPMConfig{KeyDir: filepath.Join(st, "keys", "tpm")}
		switch d := cfg.Keys.TPM.Device; {
		case d == "":
			tc.StateDir = filepath.Join(st, "swtpm")
		case filepath.IsAbs(d):
			tc.Device = d
		default:
			tc.Addr = d
		}
		return softhsm.NewTPM(tc)
	}
	return nil, fmt.Errorf("keys.backend: unknown %q (want memory, pkcs11 or tpm)", cfg.Keys.Backend)
}

// softhsmPINs returns the PINs of agentsso's own SoftHSM2 token: the
// configured ones, or random ones generated once and kept (0600) beside
// the token.
func softhsmPINs(dir string, p emulator.PKCS11Config) (string, string, error) {
	if p.PIN != "" {
		so := p.SOPIN
		if so == "" {
			so = p.PIN
		}
		return so, p.PIN, nil
	}
	path := filepath.Join(dir, "pins.json")
	var pins struct{ SO, User string }
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &pins); err != nil {
			return "", "", fmt.Errorf("%s: %w (delete the softhsm directory to start a new token)", path, err)
		}
		return pins.SO, pins.User, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", err
	}
	gen := func() string {
		var b [18]byte
		_, _ = rand.Read(b[:])
		return base64.RawURLEncoding.EncodeToString(b[:])
	}
	pins.SO, pins.User = gen(), gen()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	b, _ := json.Marshal(pins)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", "", err
	}
	return pins.SO, pins.User, nil
}

func newKeysCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the tenants' signing keys in the configured backend (memory, SoftHSM2/PKCS#11, TPM)",
		Long: `keys manages signing keys where the configuration keeps them (keys.backend):
memory (files under the state directory), pkcs11 (SoftHSM2 by default, any module by
URI) or tpm (swtpm by default, or a device). Keys are created non-extractable in a
PKCS#11 token; list reads CKA_EXTRACTABLE and CKA_NEVER_EXTRACTABLE back from the module.`,
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML); default: $AGENTSSO_CONFIG or the embedded default")
	fl.StringVar(&f.stateDir, "state-dir", "", "state directory")
	withStore := func(run func(cmd *cobra.Command, cfg emulator.Config, ks softhsm.Store, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			cfg, _, err := f.load()
			if err != nil {
				return err
			}
			ks, err := openKeyStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer ks.Close()
			return run(cmd, cfg, ks, args)
		}
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Prepare the backend and create a key for every tenant that has none",
		Args:  cobra.NoArgs,
		RunE: withStore(func(cmd *cobra.Command, cfg emulator.Config, ks softhsm.Store, _ []string) error {
			for _, t := range cfg.Tenants {
				keys, err := ks.List(cmd.Context(), t.Name)
				if err != nil {
					return err
				}
				if len(keys) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %d key(s) already, newest %s\n", t.Name, len(keys), keys[len(keys)-1].KID)
					continue
				}
				k, err := ks.Create(cmd.Context(), t.Name, t.Alg)
				if err != nil {
					return fmt.Errorf("tenant %s: %w", t.Name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: created %s %s in %s\n", t.Name, k.Alg, k.KID, ks.Backend())
			}
			return nil
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list [TENANT]",
		Short: "List keys: tenant, backend, kid, algorithm, created, extractability",
		Args:  cobra.MaximumNArgs(1),
		RunE: withStore(func(cmd *cobra.Command, cfg emulator.Config, ks softhsm.Store, args []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tBACKEND\tKID\tALG\tCREATED\tEXTRACTABLE\tNEVER_EXTRACTABLE")
			for _, t := range cfg.Tenants {
				if len(args) == 1 && args[0] != t.Name {
					continue
				}
				keys, err := ks.List(cmd.Context(), t.Name)
				if err != nil {
					return err
				}
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, k.Backend, k.KID, k.Alg, k.Created.Format("2006-01-02T15:04:05Z"), boolp(k.Extractable), boolp(k.NeverExtractable))
				}
			}
			return tw.Flush()
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate TENANT",
		Short: "Create a new key for a tenant; it signs from the next start (the old one stays published)",
		Args:  cobra.ExactArgs(1),
		RunE: withStore(func(cmd *cobra.Command, cfg emulator.Config, ks softhsm.Store, args []string) error {
			alg := ""
			for _, t := range cfg.Tenants {
				if t.Name == args[0] {
					alg = t.Alg
				}
			}
			if alg == "" {
				return fmt.Errorf("no tenant %q in the configuration", args[0])
			}
			k, err := ks.Create(cmd.Context(), args[0], alg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: created %s %s in %s (a running emulator rotates through its admin API: POST /admin/v1/tenants/%s/keys/rotate)\n", args[0], k.Alg, k.KID, ks.Backend(), args[0])
			return nil
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "delete TENANT KID",
		Short: "Destroy a key (tokens it signed no longer verify)",
		Args:  cobra.ExactArgs(2),
		RunE: withStore(func(cmd *cobra.Command, _ emulator.Config, ks softhsm.Store, args []string) error {
			if err := ks.Delete(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: deleted %s\n", args[0], args[1])
			return nil
		}),
	})
	return cmd
}

func boolp(b *bool) string {
	if b == nil {
		return "-"
	}
	if *b {
		return "true"
	}
	return "false"
}
