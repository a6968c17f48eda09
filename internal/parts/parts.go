// Package parts is the tests' convention for the real parts they use
// (SoftHSM2, swtpm, tpm2-pkcs11, Apache, Docker): a test that needs a part
// that is absent skips, naming what to install; with AGENTSSO_TEST_STRICT=1,
// which CI sets after installing every part, the absence is a failure.
package parts

import (
	"os"
	"testing"
)

// Strict reports whether missing parts fail tests (AGENTSSO_TEST_STRICT=1).
func Strict() bool { return os.Getenv("AGENTSSO_TEST_STRICT") == "1" }

// Require skips tb unless ok; what names the part, install how to get it
// (e.g. "apt-get install -y softhsm2").
func Require(tb testing.TB, what, install string, ok bool) {
	tb.Helper()
	if ok {
		return
	}
	msg := "needs " + what + " (" + install + ")"
	if Strict() {
		tb.Fatal(msg + "; AGENTSSO_TEST_STRICT=1 makes this a failure")
	}
	tb.Skip(msg)
}
