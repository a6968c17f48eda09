package agentinterop

import (
	"context"
	"io"
)

// SDKAgentUnbound is SDKAgent with a preregistered client bound to no
// issuer (oauthex.ClientCredentials.Issuer left empty).
func SDKAgentUnbound(ctx context.Context, env map[string]string, stdout, stderr io.Writer) error {
	return sdkAgent(ctx, env, stdout, stderr, false)
}
