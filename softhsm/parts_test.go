package softhsm

import (
	"os/exec"
	"testing"

	"github.com/agentsso/agentsso/internal/parts"
)

// requirePart skips tb when a real part it needs is missing, naming the
// Debian package that provides it. With AGENTSSO_TEST_STRICT=1 (set by CI,
// which installs every part) a missing part fails the test instead.
func requirePart(tb testing.TB, pkg string, ok bool) {
	tb.Helper()
	parts.Require(tb, pkg, "Debian/Ubuntu: apt-get install -y "+pkg, ok)
}

// requireCGO checks that this build can load PKCS#11 modules.
func requireCGO(tb testing.TB) {
	tb.Helper()
	if !pkcs11Supported {
		if parts.Strict() {
			tb.Fatal("the pkcs11 backend needs cgo (CGO_ENABLED=1); AGENTSSO_TEST_STRICT=1 makes this a failure")
		}
		tb.Skip("the pkcs11 backend needs cgo (CGO_ENABLED=1)")
	}
}

// requireSoftHSM2 checks for libsofthsm2, softhsm2-util and cgo.
func requireSoftHSM2(tb testing.TB) {
	tb.Helper()
	requireCGO(tb)
	_, err := FindSoftHSM2Module()
	_, uerr := exec.LookPath("softhsm2-util")
	requirePart(tb, "softhsm2", err == nil && uerr == nil)
}

// requireSWTPM checks for the swtpm binary.
func requireSWTPM(tb testing.TB) {
	tb.Helper()
	_, err := exec.LookPath("swtpm")
	requirePart(tb, "swtpm", err == nil)
}
