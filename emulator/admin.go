package emulator

import "net/http"

func (s *Server) adminRoutes() {
	m := http.NewServeMux()
	s.adminMux = m
}

// AdminHandler is the admin API.
func (s *Server) AdminHandler() http.Handler { return s.adminMux }
