package emulator

import "net/http"

// DPoPStatus is what a tenant has seen of DPoP (RFC 9449): its policy,
// the last proofs presented at its token and userinfo endpoints (what
// they said and what became of them, never the proofs) and the server
// nonces it issued.
type DPoPStatus struct {
	// RequireNonce is the tenant's dpop.require_nonce (clients may
	// require nonces on their own too).
	RequireNonce bool `json:"require_nonce"`
	// Proofs are the last 256 proofs seen, oldest first.
	Proofs []DPoPProofRecord `json:"proofs"`
	// Nonces are the last 32 nonces issued, oldest first.
	Nonces []DPoPNonceRecord `json:"nonces"`
}

// DPoP reports the DPoP proofs a tenant has seen and the nonces it issued.
func (s *Server) DPoP(tenant string) (DPoPStatus, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return DPoPStatus{}, err
	}
	t.mu.RLock()
	st := DPoPStatus{RequireNonce: t.cfg.DPoP.RequireNonce}
	t.mu.RUnlock()
	st.Proofs, st.Nonces = t.dpop.snapshot(t.clock.Now())
	return st, nil
}

func (s *Server) admDPoP(r *http.Request) (int, any, error) {
	st, err := s.DPoP(r.PathValue("tenant"))
	return http.StatusOK, st, err
}
