package emulator

import "net/http"

// authorize is the authorization endpoint.
func (t *tenant) authorize(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotImplemented, "temporarily_unavailable", "not implemented yet")
}

// userinfo is the OpenID Connect userinfo endpoint.
func (t *tenant) userinfo(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotImplemented, "temporarily_unavailable", "not implemented yet")
}
