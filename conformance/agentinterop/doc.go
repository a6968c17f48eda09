// Package agentinterop runs the agent catalogue against OAuth clients that
// nobody here wrote, and its tests pin down what they actually do.
//
// The reference agent (conformance/refagent) only shows that the harness
// agrees with itself. Here two real Go clients are wrapped, each as a
// conformance.AgentFunc that reads the adapter environment of
// docs/AGENTS.md and does the scenario's task with as little glue as
// possible:
//
//   - SDKAgent: the MCP Go SDK's own OAuth client
//     (github.com/modelcontextprotocol/go-sdk/auth). For the
//     authorization code grant, auth.NewAuthorizationCodeHandler with the
//     environment's client as PreregisteredClient (bound to
//     AGENTSSO_ISSUER), a DynamicClientRegistrationConfig,
//     RequestRefreshToken, and an AuthorizationCodeFetcher that hands the
//     authorization URL to the browser shim and takes code, state and iss
//     from a listener on AGENTSSO_REDIRECT_URI. For client credentials,
//     the SDK's extauth.NewClientCredentialsHandler. One handler per MCP
//     server, set as mcp.StreamableClientTransport.OAuthHandler: the SDK
//     does discovery, authorization, refresh and step-up itself.
//   - OAuth2Agent: golang.org/x/oauth2 on its own, configured up front as
//     its package documentation shows: one oauth2.Config (PKCE with
//     GenerateVerifier and S256ChallengeOption, resource with
//     SetAuthURLParam) or clientcredentials.Config (resource in
//     EndpointParams) per MCP server, the token fetched before the first
//     MCP request and attached to every request by the http.Client of
//     Config.Client (an oauth2.Transport). x/oauth2 has no discovery: the
//     glue reads the endpoints and scopes from the server's RFC 9728 and
//     its authorization server's RFC 8414 metadata and checks nothing but
//     the JSON, because x/oauth2 has nothing to check them with; it checks
//     the state it sent (one line every OAuth tutorial has) and nothing
//     else of the authorization response (x/oauth2 has no RFC 9207).
//
// Both give the task and the servers' tools to the fake model (OpenAI chat
// completions at OPENAI_BASE_URL), call the tools it names with the MCP Go
// SDK's client, and stop at the first error: the glue makes no decision of
// its own that the scenarios judge.
//
// The tests also run testdata/tsagent/agent.js, an agent on the MCP
// TypeScript SDK (docs/REAL-AGENTS.md), as a subprocess when node and the
// SDK are installed. docs/REAL-AGENTS.md has the observed results.
package agentinterop
