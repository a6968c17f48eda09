package tlsca

import "crypto/tls"

// MTLSServerConfig returns the server configuration of an RFC 8705 mutual
// TLS listener: ServerTLSConfig(hosts) that requests a client certificate
// at the handshake without verifying it (tls.RequestClientCert). The
// application checks the certificate per client: it must chain to this CA
// (or to a CA the client registered) for tls_client_auth, and be a key the
// client registered for self_signed_tls_client_auth, which no CA pool
// could express. A client without a certificate completes the handshake
// and is refused by the application with an OAuth error it can read.
func (ca *CA) MTLSServerConfig(hosts []string) (*tls.Config, error) {
	c, err := ca.ServerTLSConfig(hosts)
	if err != nil {
		return nil, err
	}
	c.ClientAuth = tls.RequestClientCert
	return c, nil
}
