package softhsm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SWTPM is an swtpm process started by agentsso. Its command and control
// channels are Unix sockets in a private temporary directory, so any
// number of them (parallel test packages included) never collide on a
// port.
type SWTPM struct {
	cmd      *exec.Cmd
	stateDir string
	sockDir  string
	logPath  string
	exited   chan struct{}
	waitErr  error // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// StartSWTPM starts `swtpm socket --tpm2` on stateDir (created if needed)
// and waits until it accepts connections. The TPM is started (startup
// clear), so it is ready for commands; its state (seeds, hence keys
// created under the SRK) persists in stateDir across restarts. Close
// stops it. Connect with TPMConfig{Addr: s.Addr()}, or let NewTPM start
// it through TPMConfig.StateDir.
func StartSWTPM(stateDir string) (*SWTPM, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, errors.New("softhsm: swtpm not found in PATH: install it (Debian/Ubuntu: apt-get install swtpm swtpm-tools) or attach to a TPM with keys.tpm.addr or keys.tpm.device")
	}
	if stateDir == "" {
		return nil, cfgErr("keys.tpm.state_dir", "empty")
	}
	stateDir, err = filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(stateDir, ",=") {
		return nil, cfgErr("keys.tpm.state_dir", "%q contains ',' or '=', which swtpm's option syntax cannot take: pick another directory", stateDir)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, cfgErr("keys.tpm.state_dir", "%w", err)
	}
	// Unix socket paths are limited to about 100 bytes: keep them short.
	sockDir, err := os.MkdirTemp("", "agentsso-swtpm-")
	if err != nil {
		return nil, err
	}
	s := &SWTPM{
		stateDir: stateDir,
		sockDir:  sockDir,
		logPath:  filepath.Join(stateDir, "agentsso-swtpm.log"),
		exited:   make(chan struct{}),
	}
	if strings.ContainsAny(sockDir, ",=") {
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("softhsm: temporary directory %q contains ',' or '=': set TMPDIR to a plain path", sockDir)
	}
	s.cmd = exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir+",mode=0600",
		"--server", "type=unixio,path="+s.serverPath()+",mode=0600",
		"--ctrl", "type=unixio,path="+s.ctrlPath()+",mode=0600",
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+s.logPath+",level=1,truncate",
	)
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	s.cmd.SysProcAttr = swtpmSysProcAttr()
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("softhsm: start swtpm: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("unix", s.serverPath(), time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			os.RemoveAll(sockDir)
			return nil, fmt.Errorf("softhsm: swtpm exited at start (%v): %s%s", s.waitErr, strings.TrimSpace(out.String()), s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("softhsm: swtpm (pid %d) did not listen on %s within 10s%s", s.cmd.Process.Pid, s.serverPath(), s.logTail())
		}
	}
}

func (s *SWTPM) serverPath() string { return filepath.Join(s.sockDir, "server.sock") }
func (s *SWTPM) ctrlPath() string   { return filepath.Join(s.sockDir, "ctrl.sock") }

// Addr is the TPM command channel, for TPMConfig.Addr.
func (s *SWTPM) Addr() string { return "unix:" + s.serverPath() }

// PID is the swtpm process ID.
func (s *SWTPM) PID() int { return s.cmd.Process.Pid }

// StateDir is the --tpmstate directory.
func (s *SWTPM) StateDir() string { return s.stateDir }

// Exited is closed when the swtpm process has exited.
func (s *SWTPM) Exited() <-chan struct{} { return s.exited }

// Close stops swtpm: SIGTERM (swtpm then saves its state and exits), and
// SIGKILL if it is still running 5 seconds later. It removes the sockets.
func (s *SWTPM) Close() error {
	s.stopOnce.Do(func() {
		defer os.RemoveAll(s.sockDir)
		select {
		case <-s.exited:
			return
		default:
		}
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			select {
			case <-s.exited:
				return
			default:
			}
			s.stopErr = fmt.Errorf("softhsm: stop swtpm (pid %d): %w", s.cmd.Process.Pid, err)
		}
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
			s.stopErr = fmt.Errorf("softhsm: swtpm (pid %d) ignored SIGTERM for 5s and was killed", s.cmd.Process.Pid)
		}
	})
	return s.stopErr
}

// logTail returns the end of swtpm's log for error messages.
func (s *SWTPM) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "; swtpm log: " + strings.TrimSpace(string(b))
}
