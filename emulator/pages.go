package emulator

import "net/http"

// setPageHeaders sets the headers every HTML page of the emulator sends
// (the sign-in and consent page, the device verification page): never
// cached, never framed, never sniffed, no referrer, and the page's own
// Content-Security-Policy.
func setPageHeaders(h http.Header, csp string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", csp)
}
