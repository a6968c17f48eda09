package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/softhsm"
)

// keyStore is the opened key custody: one store, or a router when
// tenants ask for different backends.
type keyStore struct {
	softhsm.Store
	// notes say where keys live when that is not obvious (a temporary
	// directory, auto's choice).
	notes []string
	tmp   string
}

func (k *keyStore) Close() error {
	err := k.Store.Close()
	if k.tmp != "" {
		_ = os.RemoveAll(k.tmp)
	}
	return err
}

// resolveBackend turns auto into pkcs11 (SoftHSM2 installed) or memory.
func resolveBackend(b string) string {
	if b == "" || b == "auto" {
		if softhsm.SoftHSM2Available() {
			return "pkcs11"
		}
		return "memory"
	}
	return b
}

// openKeyStore opens the key custody backends the configuration names:
// keys.backend, and any tenant's keys_backend. For pkcs11 without a module
// or URI, agentsso runs its own SoftHSM2 token under {state_dir}/softhsm,
// initialised on first use; for tpm without a device, its own swtpm under
// {state_dir}/swtpm. Keys persist across restarts in both. Without a state
// directory they live in a temporary one, for as long as the process.
func openKeyStore(ctx context.Context, cfg emulator.Config) (*keyStore, error) {
	ks := &keyStore{}
	state := cfg.StateDir
	if state == "" {
		needsDir := false
		for _, b := range append([]string{cfg.Keys.Backend}, tenantBackends(cfg)...) {
			if r := resolveBackend(b); r == "pkcs11" || r == "tpm" {
				needsDir = true
			}
		}
		if needsDir {
			d, err := os.MkdirTemp("", "agentsso-keys-")
			if err != nil {
				return nil, err
			}
			ks.tmp, state = d, d
			ks.notes = append(ks.notes, "keys are in a temporary directory for this process only: set --state-dir to keep them")
		}
	}
	if cfg.Keys.Backend == "" || cfg.Keys.Backend == "auto" {
		ks.notes = append(ks.notes, "keys.backend auto chose "+resolveBackend("auto"))
	}
	opened := map[string]softhsm.Store{}
	open := func(b string) (softhsm.Store, error) {
		b = resolveBackend(b)
		if s, ok := opened[b]; ok {
			return s, nil
		}
		s, err := openBackend(b, state, cfg)
		if err != nil {
			return nil, err
		}
		opened[b] = s
		return s, nil
	}
	def, err := open(cfg.Keys.Backend)
	if err != nil {
		ks.cleanup(opened)
		return nil, err
	}
	router := &softhsm.Router{Default: def, ByTenant: map[string]softhsm.Store{}}
	for _, t := range cfg.Tenants {
		if t.KeysBackend == "" {
			continue
		}
		s, err := open(t.KeysBackend)
		if err != nil {
			ks.cleanup(opened)
			return nil, fmt.Errorf("tenants %s keys_backend: %w", t.Name, err)
		}
		router.ByTenant[t.Name] = s
	}
	ks.Store = def
	if len(router.ByTenant) > 0 {
		ks.Store = router
	}
	return ks, nil
}

func (k *keyStore) cleanup(opened map[string]softhsm.Store) {
	for _, s := range opened {
		_ = s.Close()
	}
	if k.tmp != "" {
		_ = os.RemoveAll(k.tmp)
	}
}

func tenantBackends(cfg emulator.Config) []string {
	var out []string
	for _, t := range cfg.Tenants {
		if t.KeysBackend != "" {
			out = append(out, t.KeysBackend)
		}
	}
	return out
}

// openBackend opens one backend; pkcs11 and tpm keep their state under
// state.
func openBackend(backend, state string, cfg emulator.Config) (softhsm.Store, error) {
	switch backend {
	case "memory":
		dir := ""
		if cfg.StateDir != "" {
			dir = filepath.Join(cfg.StateDir, "keys", "memory")
		}
		return softhsm.NewMemory(dir)
	case "pkcs11":
		p := cfg.Keys.PKCS11
		if p.URI != "" || p.Module != "" {
			return softhsm.NewPKCS11(softhsm.PKCS11Config{URI: p.URI, Module: p.Module, Token: p.TokenLabel, PIN: p.PIN})
		}
		if !softhsm.SoftHSM2Available() {
			return nil, errors.New("keys.backend pkcs11 without keys.pkcs11.module or uri runs agentsso's own SoftHSM2 token, and SoftHSM2 is not usable here: install it (apt-get install softhsm2) and build with cgo, or set keys.backend memory")
		}
		dir := filepath.Join(state, "softhsm")
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
		tc := softhsm.TPMConfig{KeyDir: filepath.Join(state, "keys", "tpm")}
		switch d := cfg.Keys.TPM.Device; {
		case d == "":
			if _, err := exec.LookPath("swtpm"); err != nil {
				return nil, errors.New("keys.backend tpm without keys.tpm.device starts agentsso's own swtpm, which is not installed: apt-get install swtpm, or set keys.tpm.device to a TPM (/dev/tpmrm0) or a running swtpm (host:port)")
			}
			tc.StateDir = filepath.Join(state, "swtpm")
		case filepath.IsAbs(d):
			tc.Device = d
		default:
			tc.Addr = d
		}
		return softhsm.NewTPM(tc)
	}
	return nil, fmt.Errorf("keys.backend: unknown %q (want auto, memory, pkcs11 or tpm)", backend)
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
		// keys without a state directory would act on a temporary one
		// that disappears: refuse rather than mislead.
		return func(cmd *cobra.Command, args []string) error {
			cfg, _, err := f.load()
			if err != nil {
				return err
			}
			if cfg.StateDir == "" {
				return errors.New("keys needs the state directory the emulator uses: pass --state-dir (or set AGENTSSO_STATE_DIR)")
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
