package agentinterop

import (
	"context"
	"fmt"
	"io"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// SDKFeatures are the agent features (docs/AGENTS.md) the MCP Go SDK's
// OAuth client has: the authorization code handler (with dynamic client
// registration) and extauth's client credentials handler. It has no DPoP,
// no private_key_jwt, no RFC 8693 exchange of a user's token and does not
// validate ID tokens.
var SDKFeatures = []string{"authorization-code", "client-credentials", "dynamic-registration"}

// SDKAgent is an agent whose OAuth is entirely the MCP Go SDK's: one
// OAuthHandler per MCP server on its StreamableClientTransport. Its
// preregistered client is bound to AGENTSSO_ISSUER
// (oauthex.ClientCredentials.Issuer, SEP-2352).
func SDKAgent(ctx context.Context, env map[string]string, stdout, stderr io.Writer) error {
	return sdkAgent(ctx, env, stdout, stderr, true)
}

// sdkAgent is SDKAgent; bindIssuer false leaves the preregistered
// client's Issuer empty, as the SDK allows.
func sdkAgent(ctx context.Context, env map[string]string, stdout, stderr io.Writer, bindIssuer bool) error {
	cfg, err := configFrom(env)
	if err != nil {
		fmt.Fprintf(stderr, "sdk agent: %v\n", err)
		return err
	}
	var catcher *redirectCatcher
	if cfg.grant == "authorization_code" {
		if catcher, err = catchRedirects(cfg.redirectURI, cfg.browserURL); err != nil {
			fmt.Fprintf(stderr, "sdk agent: %v\n", err)
			return err
		}
		defer catcher.close()
	}
	creds := &oauthex.ClientCredentials{ClientID: cfg.clientID}
	if bindIssuer {
		creds.Issuer = cfg.issuer
	}
	if cfg.clientSecret != "" {
		creds.ClientSecretAuth = &oauthex.ClientSecretAuth{ClientSecret: cfg.clientSecret}
	}
	transport := func(ctx context.Context, s server) (mcp.Transport, error) {
		var h auth.OAuthHandler
		var err error
		if cfg.grant == "client_credentials" {
			h, err = extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{Credentials: creds})
		} else {
			h, err = auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				PreregisteredClient: creds,
				DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
					ClientName:              "agentsso interop: MCP Go SDK",
					RedirectURIs:            []string{cfg.redirectURI},
					GrantTypes:              []string{"authorization_code", "refresh_token"},
					TokenEndpointAuthMethod: "none",
				}},
				RedirectURL:              cfg.redirectURI,
				AuthorizationCodeFetcher: catcher.fetch,
				RequestRefreshToken:      true,
			})
		}
		if err != nil {
			return nil, err
		}
		return &mcp.StreamableClientTransport{Endpoint: s.url, OAuthHandler: h}, nil
	}
	if err := runTask(ctx, cfg, "agentsso-interop-go-sdk", transport, stdout); err != nil {
		fmt.Fprintf(stderr, "sdk agent: %v\n", err)
		return err
	}
	return nil
}

// fetch is the SDK's AuthorizationCodeFetcher: the URL to the browser, the
// response's code, state and RFC 9207 iss back to the SDK, which checks
// them.
func (c *redirectCatcher) fetch(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
	q, err := c.authorize(ctx, args.URL)
	if err != nil {
		return nil, err
	}
	return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
}
