package agentlab

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/agentsso/agentsso/internal/parts"
	"github.com/agentsso/agentsso/softhsm"
)

// TestParallelWorldsHSMKeys builds worlds whose agents keep their key in
// SoftHSM2, several at once as `--parallel` does, and opens each world's
// key the way an agent does: in process through its URI, and in a
// separate process with the world's environment (softhsm2-util lists the
// token). Worlds with a token directory each used to race on the
// process-wide SOFTHSM2_CONF and find no token.
func TestParallelWorldsHSMKeys(t *testing.T) {
	parts.Require(t, "SoftHSM2", "apt-get install softhsm2", softhsm.SoftHSM2Available())
	const n = 6
	spec := Spec{Grant: "client_credentials", ClientAuth: "private_key_jwt", ClientKey: "pkcs11"}
	var wg sync.WaitGroup
	errs := make(chan string, 3*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := New(t.Context(), "hsm", spec, t.TempDir())
			if err != nil {
				errs <- err.Error()
				return
			}
			defer func() {
				if err := w.Close(); err != nil {
					errs <- "close: " + err.Error()
				}
			}()
			store, err := softhsm.NewPKCS11(softhsm.PKCS11Config{URI: w.KeyURI, Sessions: 1})
			if err != nil {
				errs <- err.Error()
				return
			}
			defer store.Close()
			keys, err := store.List(context.Background(), AgentClientID)
			found := false
			for _, k := range keys {
				found = found || k.KID == w.KeyID
			}
			if err != nil || !found {
				errs <- "world " + string(rune('0'+i)) + ": its kid " + w.KeyID + " is not on the token"
			}
			env := w.Env()
			cmd := exec.Command("softhsm2-util", "--show-slots")
			cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+env["SOFTHSM2_CONF"])
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "agentsso-agent") {
				errs <- "an agent process with SOFTHSM2_CONF=" + env["SOFTHSM2_CONF"] + " does not see the token: " + string(out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	agentHSM.mu.Lock()
	defer agentHSM.mu.Unlock()
	if agentHSM.refs != 0 || agentHSM.dir != "" {
		t.Errorf("after every world closed, the shared token is still held (%d) or its directory %q left", agentHSM.refs, agentHSM.dir)
	}
}
