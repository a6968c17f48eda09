package emulator

import "net/http"

// register is the RFC 7591 dynamic client registration endpoint.
func (t *tenant) register(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotImplemented, "temporarily_unavailable", "not implemented yet")
}
