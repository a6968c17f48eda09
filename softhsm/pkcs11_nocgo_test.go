//go:build !cgo

package softhsm

// p11InitToken needs cgo; tests that would call it skip first
// (requireCGO).
func p11InitToken(module, label, soPIN, userPIN string) error { return ErrNoCGO }
