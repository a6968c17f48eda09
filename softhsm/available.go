package softhsm

import "os/exec"

// SoftHSM2Available reports whether this build can drive SoftHSM2: cgo,
// the module library and softhsm2-util (to initialise a token) are there.
// It is what the auto key backend decides on.
func SoftHSM2Available() bool {
	if !pkcs11Supported {
		return false
	}
	if _, err := FindSoftHSM2Module(); err != nil {
		return false
	}
	_, err := exec.LookPath("softhsm2-util")
	return err == nil
}
