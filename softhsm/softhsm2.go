package softhsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// softHSM2Modules are where distributions install libsofthsm2.
var softHSM2Modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/arm-linux-gnueabihf/softhsm/libsofthsm2.so",
	"/usr/lib/powerpc64le-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/s390x-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/riscv64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/lib/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// FindSoftHSM2Module returns the path of libsofthsm2.so, or an error
// telling how to install it.
func FindSoftHSM2Module() (string, error) {
	for _, p := range softHSM2Modules {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("softhsm: libsofthsm2.so not found in the usual places: install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2) or set keys.pkcs11.module")
}

// SetupSoftHSM2 prepares a SoftHSM2 token whose files live under dir and
// returns the configuration that opens it with NewPKCS11.
//
// It writes dir/softhsm2.conf (directories.tokendir = dir/tokens,
// objectstore.backend = file), points the SOFTHSM2_CONF environment
// variable of this process at it (os.Setenv: libsofthsm2 reads the
// variable from the process environment at C_Initialize, and has no
// other way to be told), and initializes a token labelled label with
// softhsm2-util unless dir already holds one. Calling it again on the
// same dir is cheap and keeps the token and its keys.
//
// Because the variable is process-wide and the module is initialized once
// per process (see NewPKCS11), open stores from one SoftHSM2 directory at
// a time: close every PKCS#11 store on libsofthsm2 before switching dir.
// SetupSoftHSM2 refuses another dir while a store is open on libsofthsm2.
//
// The PINs are passed to softhsm2-util on its command line (it has no
// other non-interactive way); they are never logged or put in errors.
func SetupSoftHSM2(dir, label, soPIN, userPIN string) (PKCS11Config, error) {
	switch {
	case dir == "":
		return PKCS11Config{}, errors.New("softhsm: SetupSoftHSM2: dir is empty")
	case label == "" || len(label) > 32 || strings.TrimSpace(label) != label:
		return PKCS11Config{}, fmt.Errorf("softhsm: SetupSoftHSM2: token label %q must be 1 to 32 bytes without leading or trailing spaces", label)
	case len(soPIN) < 4 || len(soPIN) > 255:
		return PKCS11Config{}, errors.New("softhsm: SetupSoftHSM2: the SO PIN must be 4 to 255 characters (SoftHSM2's limits)")
	case len(userPIN) < 4 || len(userPIN) > 255:
		return PKCS11Config{}, errors.New("softhsm: SetupSoftHSM2: the user PIN must be 4 to 255 characters (SoftHSM2's limits)")
	}
	module, err := FindSoftHSM2Module()
	if err != nil {
		return PKCS11Config{}, err
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return PKCS11Config{}, errors.New("softhsm: softhsm2-util not found in PATH: install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2)")
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return PKCS11Config{}, err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return PKCS11Config{}, fmt.Errorf("softhsm: SetupSoftHSM2: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "# Written by agentsso (softhsm.SetupSoftHSM2).\n" +
		"directories.tokendir = " + tokens + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return PKCS11Config{}, fmt.Errorf("softhsm: SetupSoftHSM2: %w", err)
	}
	// libsofthsm2 reads SOFTHSM2_CONF once, at initialization: while a
	// store has it open on another directory, this token would be
	// invisible to the process.
	if open, ok := openModuleConf(module); ok && open != conf {
		return PKCS11Config{}, fmt.Errorf("softhsm: SetupSoftHSM2: SoftHSM2 is open in this process on %s and reads its configuration once: close every PKCS#11 store on it before preparing %s, or use one token directory per process", open, dir)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return PKCS11Config{}, fmt.Errorf("softhsm: SetupSoftHSM2: set SOFTHSM2_CONF: %w", err)
	}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.Command(util, args...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		out, err := cmd.CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			for _, pin := range []string{soPIN, userPIN} {
				msg = strings.ReplaceAll(msg, pin, "REDACTED")
			}
			return nil, fmt.Errorf("softhsm: softhsm2-util %s: %w: %s", args[0], err, msg)
		}
		return out, nil
	}
	out, err := run("--show-slots")
	if err != nil {
		return PKCS11Config{}, err
	}
	switch n := countTokens(out, label); {
	case n > 1:
		return PKCS11Config{}, fmt.Errorf("softhsm: %s holds %d tokens labelled %q: delete the extra ones (softhsm2-util --delete-token --serial ...)", tokens, n, label)
	case n == 0:
		if _, err := run("--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", userPIN); err != nil {
			return PKCS11Config{}, err
		}
	}
	return PKCS11Config{Module: module, Token: label, PIN: userPIN}, nil
}

// countTokens counts the initialized tokens labelled label in the output
// of softhsm2-util --show-slots.
func countTokens(showSlots []byte, label string) int {
	n := 0
	initialized := false
	sc := bufio.NewScanner(bytes.NewReader(showSlots))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Initialized:"); ok {
			initialized = strings.TrimSpace(v) == "yes"
		}
		if v, ok := strings.CutPrefix(line, "Label:"); ok && initialized && strings.TrimSpace(v) == label {
			n++
		}
	}
	return n
}
