package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/agentsso/agentsso/emulator"
)

// envVar is one environment variable agentsso reads. This file is the only
// place that reads the environment and viper; everything below cmd/ takes
// plain structs.
type envVar struct {
	Name      string
	Key       string // configuration key it overrides ("" for none)
	Help      string
	Sensitive bool // value never printed; also read from NAME_FILE
}

var envVars = []envVar{
	{Name: "AGENTSSO_CONFIG", Help: "configuration file (YAML); the embedded default when unset"},
	{Name: "AGENTSSO_ADDR", Key: "addr", Help: "public listener HOST:PORT (port 0 picks a free port)"},
	{Name: "AGENTSSO_ADMIN_ADDR", Key: "admin_addr", Help: "admin API listener HOST:PORT"},
	{Name: "AGENTSSO_ADMIN_TOKEN", Key: "admin_token", Help: "bearer token the admin API requires (required off loopback)", Sensitive: true},
	{Name: "AGENTSSO_PUBLIC_BASE_URL", Key: "public_base_url", Help: "scheme://host:port clients reach the emulator at; issuers are {base}/t/{tenant}"},
	{Name: "AGENTSSO_STATE_DIR", Key: "state_dir", Help: "directory for keys, generated secrets, the TLS CA and the audit log"},
	{Name: "AGENTSSO_TLS", Key: "tls", Help: "serve HTTPS with a certificate from the local CA (true/false)"},
	{Name: "AGENTSSO_MTLS_ADDR", Key: "mtls_addr", Help: "listener HOST:PORT for the RFC 8705 mTLS endpoints (off when empty)"},
	{Name: "AGENTSSO_MTLS_BASE_URL", Key: "mtls_base_url", Help: "base URL clients reach the mTLS endpoints at (default: https://mtls_addr)"},
	{Name: "AGENTSSO_AUDIT_PATH", Key: "audit.path", Help: "audit log file (JSON lines); default {state_dir}/audit.jsonl"},
	{Name: "AGENTSSO_AUDIT_DISABLED", Key: "audit.disabled", Help: "turn the audit log off (true/false)"},
	{Name: "AGENTSSO_KEYS_BACKEND", Key: "keys.backend", Help: "key custody backend: memory, pkcs11 or tpm"},
	{Name: "AGENTSSO_KEYS_ALG", Key: "keys.alg", Help: "default signing algorithm: ES256, ES384, RS256, PS256, EdDSA"},
	{Name: "AGENTSSO_KEYS_PKCS11_URI", Key: "keys.pkcs11.uri", Help: "RFC 7512 pkcs11: URI of the token"},
	{Name: "AGENTSSO_KEYS_PKCS11_MODULE", Key: "keys.pkcs11.module", Help: "PKCS#11 module path (default: SoftHSM2)"},
	{Name: "AGENTSSO_KEYS_PKCS11_TOKEN_LABEL", Key: "keys.pkcs11.token_label", Help: "PKCS#11 token label"},
	{Name: "AGENTSSO_KEYS_PKCS11_PIN", Key: "keys.pkcs11.pin", Help: "PKCS#11 user PIN", Sensitive: true},
	{Name: "AGENTSSO_KEYS_PKCS11_SO_PIN", Key: "keys.pkcs11.so_pin", Help: "PKCS#11 security officer PIN (token initialisation)", Sensitive: true},
	{Name: "AGENTSSO_KEYS_TPM_DEVICE", Key: "keys.tpm.device", Help: "TPM device or swtpm host:port; empty starts a private swtpm"},
}

// loadConfig reads the configuration: the file (or the embedded default),
// then AGENTSSO_* variables, then NAME_FILE variables for secrets. Unknown
// keys and invalid values are errors naming the field.
func loadConfig(path string) (emulator.Config, string, error) {
	if path == "" {
		path = os.Getenv("AGENTSSO_CONFIG")
	}
	v := viper.New()
	v.SetConfigType("yaml")
	source := "embedded default"
	var raw []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return emulator.Config{}, "", fmt.Errorf("config file: %w (pass --config FILE with a readable YAML file, or omit it for the embedded default)", err)
		}
		raw, source = b, path
	} else {
		raw = emulator.DefaultYAML()
	}
	if err := v.ReadConfig(bytes.NewReader(raw)); err != nil {
		return emulator.Config{}, "", fmt.Errorf("config %s: not valid YAML: %w", source, err)
	}
	for _, e := range envVars {
		if e.Key == "" {
			continue
		}
		if val, ok := os.LookupEnv(e.Name); ok {
			v.Set(e.Key, val)
		}
		if e.Sensitive {
			if f, ok := os.LookupEnv(e.Name + "_FILE"); ok {
				b, err := os.ReadFile(f)
				if err != nil {
					return emulator.Config{}, "", fmt.Errorf("%s_FILE: %w", e.Name, err)
				}
				v.Set(e.Key, strings.TrimRight(string(b), "\r\n"))
			}
		}
	}
	var cfg emulator.Config
	err := v.UnmarshalExact(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return emulator.Config{}, "", fmt.Errorf("config %s: %w (see README.md, \"Configuration\", for the keys)", source, err)
	}
	if err := cfg.Validate(); err != nil {
		return emulator.Config{}, "", fmt.Errorf("config %s:\n%w", source, indent(err))
	}
	return cfg, source, nil
}

func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}
