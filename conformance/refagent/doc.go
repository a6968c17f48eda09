// Package refagent is agentsso's reference agent: the conforming MCP
// client the agent scenarios (shared SCENARIOS.md section B) are proven
// against, with a named switch (FlawCatalog) that breaks each behaviour
// one at a time. It is meant to be read as a model of what an agent
// should do with OAuth; docs/AGENTS.md is its contract with the harness.
//
// Run takes its inputs from an env map (never the process environment):
//
//  1. It connects to every MCP server of AGENTSSO_MCP_SERVERS with the MCP
//     Go SDK's streamable HTTP client, whose http.RoundTripper (serverConn)
//     does the authorization, lists the tools, and gives the task and the
//     tools to the model (OpenAI chat completions); it runs each tool call
//     the model makes on the server publishing the tool, until the model
//     answers with text (at most 20 rounds), and prints the answer.
//  2. On a 401 it reads resource_metadata from the challenge (else the
//     RFC 9728 well-known URLs), refuses metadata whose resource is not
//     the server, fetches the authorization server's RFC 8414 metadata
//     and refuses an issuer mismatch.
//  3. It obtains a token per server, for that server's resource only:
//     authorization code with PKCE S256 through the browser shim (state,
//     RFC 9207 iss and the ID token checked), client credentials, or RFC
//     8693 token exchange of AGENTSSO_USER_TOKEN; client authentication
//     none, client_secret_basic or private_key_jwt (a key file or a key in
//     a PKCS#11 token). The environment's client is used at AGENTSSO_ISSUER
//     only; any other authorization server gets a dynamically registered
//     client (RFC 7591).
//  4. It refreshes before expiry, rotates refresh tokens, retries a 401
//     at most twice per call, steps up scopes once on 403
//     insufficient_scope, uses DPoP (RFC 9449) where the server wants it,
//     and revokes its refresh tokens (RFC 7009) when the task is done.
//  5. Tokens travel only in the Authorization header of the server they
//     were issued for; nothing it holds is printed or sent to the model.
//
// golang.org/x/oauth2 builds the authorization URL and the PKCE pair and
// carries token errors (RetrieveError); the token endpoint requests
// themselves are made here, because each attempt must carry a fresh
// client assertion and DPoP proof and refresh requests carry resource,
// which oauth2.Config cannot do.
package refagent
