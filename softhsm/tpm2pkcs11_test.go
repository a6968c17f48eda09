package softhsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tpm2-pkcs11 (https://github.com/tpm2-software/tpm2-pkcs11) is the second
// PKCS#11 module the PKCS#11 tests run on, over an swtpm of their own.
//
// Each test gets a private stack, every process started here by PID,
// with Pdeathsig, and stopped (SIGTERM, then SIGKILL) at cleanup:
//
//	swtpm socket --tpm2 on two consecutive free 127.0.0.1 TCP ports (the swtpm TCTI
//	  of tss2 3.2 speaks TCP only), state in t.TempDir();
//	dbus-daemon --session on a Unix socket in a private directory;
//	tpm2-abrmd --session on that bus, in front of swtpm.
//
// The resource manager is needed: without one tpm2-pkcs11 can use only two
// keys per process (the third load fails with TPM_RC_OBJECT_MEMORY, 0x902:
// swtpm has three transient object slots and nothing swaps objects out),
// and creating a second key fails too (RECIPES section 3a).
//
// The module reads TPM2_PKCS11_TCTI, TPM2_PKCS11_STORE and (through glib)
// DBUS_SESSION_BUS_ADDRESS from the process environment when it is
// initialized, like libsofthsm2 reads SOFTHSM2_CONF, so these tests set
// them with t.Setenv and cannot run in parallel.
//
// What tpm2-pkcs11 1.9.0 supports of agentsso's algorithms: ES256, ES384
// and RS256. It does not list CKM_RSA_PKCS_PSS (PSS on a digest gives
// CKR_MECHANISM_INVALID), so Create refuses PS256 on it with
// *UnsupportedAlgError (PKCS11.supports).

// tpm2PKCS11Modules are where distributions install libtpm2_pkcs11.
var tpm2PKCS11Modules = []string{
	"/usr/lib/*/pkcs11/libtpm2_pkcs11.so",
	"/usr/lib/*/libtpm2_pkcs11.so.1",
	"/usr/lib64/pkcs11/libtpm2_pkcs11.so",
	"/usr/lib64/libtpm2_pkcs11.so.1",
	"/usr/lib/pkcs11/libtpm2_pkcs11.so",
	"/usr/local/lib/libtpm2_pkcs11.so",
}

// tabrmdTCTIs are where distributions install the TCTI of tpm2-abrmd.
var tabrmdTCTIs = []string{
	"/usr/lib/*/libtss2-tcti-tabrmd.so.0",
	"/usr/lib64/libtss2-tcti-tabrmd.so.0",
	"/usr/lib/libtss2-tcti-tabrmd.so.0",
	"/usr/local/lib/libtss2-tcti-tabrmd.so.0",
}

func globFirst(patterns []string) string {
	for _, p := range patterns {
		ms, _ := filepath.Glob(p)
		for _, m := range ms {
			if fi, err := os.Stat(m); err == nil && !fi.IsDir() {
				return m
			}
		}
	}
	return ""
}

// lookTool finds a program in PATH or in /usr/sbin and /usr/local/sbin,
// which are not in every user's PATH.
func lookTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// requireTPM2PKCS11 checks for every part of the tpm2-pkcs11 stack and
// returns the module path.
func requireTPM2PKCS11(tb testing.TB) string {
	tb.Helper()
	requireCGO(tb)
	module := globFirst(tpm2PKCS11Modules)
	requirePart(tb, "libtpm2-pkcs11-1", module != "")
	requireSWTPM(tb)
	requirePart(tb, "tpm2-abrmd", lookTool("tpm2-abrmd") != "")
	requirePart(tb, "libtss2-tcti-tabrmd0", globFirst(tabrmdTCTIs) != "")
	requirePart(tb, "dbus-daemon", lookTool("dbus-daemon") != "")
	requirePart(tb, "dbus-bin", lookTool("dbus-send") != "")
	return module
}

// newTPM2PKCS11 starts swtpm, a private D-Bus and tpm2-abrmd, points the
// module at them, initializes a token labelled "agentsso-test" with
// testSOPIN and testUserPIN, and returns the configuration that opens it.
// The stack lives until the end of the test; stores opened on it must be
// closed before then (the suite and openPKCS11 do).
func newTPM2PKCS11(tb testing.TB) PKCS11Config {
	tb.Helper()
	module := requireTPM2PKCS11(tb)
	dir := tb.TempDir()

	swPort := startTCPSWTPM(tb, filepath.Join(dir, "swtpm"))

	// Unix socket paths are limited to about 100 bytes: keep it short.
	busDir, err := os.MkdirTemp("", "agentsso-dbus-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(busDir) })
	busAddr := "unix:path=" + filepath.Join(busDir, "bus")
	startHelper(tb, filepath.Join(dir, "dbus-daemon.log"), lookTool("dbus-daemon"), nil,
		"--session", "--nofork", "--nosyslog", "--nopidfile", "--address="+busAddr)
	if err := waitFor(10*time.Second, func() error {
		return exec.Command(lookTool("dbus-send"), "--bus="+busAddr, "--print-reply",
			"--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.GetId").Run()
	}); err != nil {
		tb.Fatalf("private dbus-daemon on %s: %v", busAddr, err)
	}

	args := []string{"--session", "--logger=stdout", "--flush-all",
		"--tcti=swtpm:host=127.0.0.1,port=" + strconv.Itoa(swPort)}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-root")
	}
	abrmd := startHelper(tb, filepath.Join(dir, "tpm2-abrmd.log"), lookTool("tpm2-abrmd"),
		[]string{"DBUS_SESSION_BUS_ADDRESS=" + busAddr}, args...)
	if err := waitFor(10*time.Second, func() error {
		select {
		case <-abrmd.exited:
			return errStop
		default:
		}
		out, err := exec.Command(lookTool("dbus-send"), "--bus="+busAddr, "--print-reply",
			"--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
			"string:com.intel.tss2.Tabrmd").Output()
		if err != nil {
			return err
		}
		if !bytes.Contains(out, []byte("boolean true")) {
			return errors.New("com.intel.tss2.Tabrmd has no owner yet")
		}
		return nil
	}); err != nil {
		tb.Fatalf("tpm2-abrmd did not register on the private bus: %v%s", err, abrmd.logTail())
	}

	storeDir := filepath.Join(dir, "tpm2-pkcs11")
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("DBUS_SESSION_BUS_ADDRESS", busAddr)
	tb.Setenv("TPM2_PKCS11_TCTI", "tabrmd:bus_type=session")
	tb.Setenv("TPM2_PKCS11_STORE", storeDir)
	tb.Setenv("TPM2_PKCS11_BACKEND", "esysdb") // not FAPI, which needs its own configuration
	tb.Setenv("TPM2_PKCS11_LOG_LEVEL", "0")

	cfg := PKCS11Config{Module: module, Token: "agentsso-test", PIN: testUserPIN}
	if err := p11InitToken(module, cfg.Token, testSOPIN, testUserPIN); err != nil {
		tb.Fatalf("initialize a tpm2-pkcs11 token: %v%s", err, abrmd.logTail())
	}
	return cfg
}

var errStop = errors.New("process exited")

// waitFor calls f until it succeeds, returns errStop, or timeout passes.
func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || errors.Is(err, errStop) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startTCPSWTPM starts swtpm on two consecutive free loopback TCP ports
// (command, then control) and returns the command port. A port taken between choosing and binding it makes
// swtpm exit: then it tries again with new ports.
func startTCPSWTPM(tb testing.TB, stateDir string) int {
	tb.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	var lastErr error
	for try := range 5 {
		port, err := freeTCPPortPair()
		if err != nil {
			tb.Fatal(err)
		}
		ports := []int{port, port + 1}
		p := startHelper(tb, filepath.Join(stateDir, fmt.Sprintf("swtpm-%d.log", try)), lookTool("swtpm"), nil,
			"socket", "--tpm2",
			"--tpmstate", "dir="+stateDir+",mode=0600",
			"--server", "type=tcp,port="+strconv.Itoa(ports[0])+",bindaddr=127.0.0.1",
			"--ctrl", "type=tcp,port="+strconv.Itoa(ports[1])+",bindaddr=127.0.0.1",
			"--flags", "not-need-init,startup-clear")
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		lastErr = waitFor(10*time.Second, func() error {
			select {
			case <-p.exited:
				return errStop
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if lastErr == nil {
			return ports[0]
		}
		lastErr = fmt.Errorf("swtpm on %s: %w%s", addr, lastErr, p.logTail())
		p.stop()
	}
	tb.Fatal(lastErr)
	return 0
}

// freeTCPPortPair returns a loopback TCP port p such that p and p+1 were
// both free a moment ago: the swtpm TCTI of tss2 expects the control
// channel on the port after the command port.
func freeTCPPortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("no two consecutive free loopback TCP ports found")
}

// helperProc is a process a test started; it is stopped by PID.
type helperProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	stopped bool
}

// startHelper starts bin with args and extra environment, output to
// logPath, and stops it when the test ends.
func startHelper(tb testing.TB, logPath, bin string, env []string, args ...string) *helperProc {
	tb.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close()
	p := &helperProc{name: filepath.Base(bin), logPath: logPath, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// Killed by the kernel if the test process dies without stopping it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		if err := p.stop(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// stop sends SIGTERM to the process and SIGKILL 5 seconds later.
func (p *helperProc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	select {
	case <-p.exited:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for 5s and was killed%s", p.name, p.cmd.Process.Pid, p.logTail())
	}
}

// logTail returns the end of the process's output for error messages.
func (p *helperProc) logTail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return "; " + p.name + " output: " + strings.Join(lines, " | ")
}
