package agentinterop

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// OAuth2Features are the agent features golang.org/x/oauth2 has on its
// own: the authorization code grant (with PKCE) and client credentials.
// It has no dynamic registration, DPoP, RFC 7523 client assertions, RFC
// 8693 exchange or ID token validation.
var OAuth2Features = []string{"authorization-code", "client-credentials"}

// OAuth2Agent is an agent whose OAuth is golang.org/x/oauth2 used as its
// documentation shows, configured up front: per MCP server a token for
// that server (resource), attached to every MCP request by Config.Client's
// oauth2.Transport, refreshed by its TokenSource.
func OAuth2Agent(ctx context.Context, env map[string]string, stdout, stderr io.Writer) error {
	cfg, err := configFrom(env)
	if err != nil {
		fmt.Fprintf(stderr, "x/oauth2 agent: %v\n", err)
		return err
	}
	var catcher *redirectCatcher
	if cfg.grant == "authorization_code" {
		if catcher, err = catchRedirects(cfg.redirectURI, cfg.browserURL); err != nil {
			fmt.Fprintf(stderr, "x/oauth2 agent: %v\n", err)
			return err
		}
		defer catcher.close()
	}
	transport := func(ctx context.Context, s server) (mcp.Transport, error) {
		ep, scopes, err := discover(ctx, s.url)
		if err != nil {
			return nil, err
		}
		var hc *http.Client
		if cfg.grant == "client_credentials" {
			cc := &clientcredentials.Config{
				ClientID: cfg.clientID, ClientSecret: cfg.clientSecret, TokenURL: ep.TokenURL,
				Scopes: scopes, EndpointParams: url.Values{"resource": {s.url}},
			}
			hc = cc.Client(context.Background())
		} else {
			conf := &oauth2.Config{
				ClientID: cfg.clientID, ClientSecret: cfg.clientSecret, Endpoint: ep,
				RedirectURL: cfg.redirectURI, Scopes: append(scopes, "offline_access"),
			}
			verifier := oauth2.GenerateVerifier()
			state := rand.Text()
			authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", s.url))
			q, err := catcher.authorize(ctx, authURL)
			if err != nil {
				return nil, err
			}
			if q.Get("state") != state {
				return nil, errors.New("the authorization response's state is not the one sent")
			}
			tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", s.url))
			if err != nil {
				return nil, err
			}
			hc = conf.Client(context.Background(), tok)
		}
		return &mcp.StreamableClientTransport{Endpoint: s.url, HTTPClient: hc}, nil
	}
	if err := runTask(ctx, cfg, "agentsso-interop-x-oauth2", transport, stdout); err != nil {
		fmt.Fprintf(stderr, "x/oauth2 agent: %v\n", err)
		return err
	}
	return nil
}

// discover reads what oauth2.Config needs and x/oauth2 cannot find on its
// own: the authorization server and scopes from the server's protected
// resource metadata (RFC 9728, at the path-inserted well-known URL), the
// endpoints from the authorization server's metadata (RFC 8414). It takes
// the documents as they are.
func discover(ctx context.Context, resource string) (oauth2.Endpoint, []string, error) {
	u, err := url.Parse(resource)
	if err != nil {
		return oauth2.Endpoint{}, nil, err
	}
	var prm struct {
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	prmURL := u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource" + u.Path
	if err := getJSON(ctx, prmURL, &prm); err != nil {
		return oauth2.Endpoint{}, nil, err
	}
	if len(prm.AuthorizationServers) == 0 {
		return oauth2.Endpoint{}, nil, fmt.Errorf("%s: no authorization_servers", prmURL)
	}
	var asm struct {
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	asURL := strings.TrimRight(prm.AuthorizationServers[0], "/") + "/.well-known/openid-configuration"
	if err := getJSON(ctx, asURL, &asm); err != nil {
		return oauth2.Endpoint{}, nil, err
	}
	return oauth2.Endpoint{AuthURL: asm.AuthorizationEndpoint, TokenURL: asm.TokenEndpoint}, prm.ScopesSupported, nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
