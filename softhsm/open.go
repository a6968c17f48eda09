package softhsm

import (
	"context"
	"path/filepath"
)

// Config chooses and configures a key backend. Field names in errors are
// the configuration keys under "keys." (mapstructure tags).
type Config struct {
	// Backend is "memory" (the default when empty), "pkcs11" or "tpm".
	Backend string `mapstructure:"backend" json:"backend,omitempty"`
	// Dir is the backend's state directory: the memory backend's key
	// files (empty: keys live only in memory), and the TPM backend's key
	// blobs unless TPM.KeyDir is set.
	Dir    string       `mapstructure:"dir" json:"dir,omitempty"`
	PKCS11 PKCS11Config `mapstructure:"pkcs11" json:"pkcs11"`
	TPM    TPMConfig    `mapstructure:"tpm" json:"tpm"`
}

// Open opens the backend cfg names. The caller must Close the store.
func Open(ctx context.Context, cfg Config) (Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case "", "memory":
		return NewMemory(cfg.Dir)
	case "pkcs11":
		return NewPKCS11(cfg.PKCS11)
	case "tpm":
		tc := cfg.TPM
		if tc.KeyDir == "" {
			if cfg.Dir == "" {
				return nil, cfgErr("keys.tpm.key_dir", "required with keys.backend tpm (or set keys.dir; key blobs go to <keys.dir>/tpm)")
			}
			tc.KeyDir = filepath.Join(cfg.Dir, "tpm")
		}
		return NewTPM(tc)
	}
	return nil, cfgErr("keys.backend", "unknown %q (want memory, pkcs11 or tpm)", cfg.Backend)
}
