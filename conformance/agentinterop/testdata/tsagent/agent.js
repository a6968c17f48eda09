// agent.js: an MCP agent whose OAuth is the MCP TypeScript SDK's, run by
// agentsso once per scenario (docs/AGENTS.md, docs/REAL-AGENTS.md). It reads
// the AGENTSSO_* variables (or MCP_CONFORMANCE_CONTEXT), connects to every
// MCP server with an OAuthClientProvider, gives the task and the tools to
// the model (OpenAI chat completions at OPENAI_BASE_URL) and runs the tool
// calls it names until the model answers with text.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const env = process.env;
const ctx = env.MCP_CONFORMANCE_CONTEXT ? JSON.parse(env.MCP_CONFORMANCE_CONTEXT) : {};
const issuer = env.AGENTSSO_ISSUER ?? ctx.issuer;
const clientId = env.AGENTSSO_CLIENT_ID ?? ctx.client_id;
const clientSecret = env.AGENTSSO_CLIENT_SECRET ?? ctx.client_secret;
const redirectUrl = env.AGENTSSO_REDIRECT_URI;
const servers = (env.AGENTSSO_MCP_SERVERS ?? '').split(/\s+/).filter(Boolean).map((pair) => pair.slice(pair.indexOf('=') + 1));
if (servers.length === 0) servers.push(env.AGENTSSO_MCP_SERVER_URL ?? ctx.server_url ?? process.argv.at(-1));

// The browser shim signs the user in and delivers the authorization
// response to the redirect URI, where this listener hands it over.
let deliver = () => {};
if (redirectUrl) {
  const r = new URL(redirectUrl);
  const callback = http.createServer((req, res) => {
    const u = new URL(req.url, redirectUrl);
    if (u.pathname !== r.pathname) return res.writeHead(404).end();
    deliver(u.searchParams);
    res.end('You may close this window.\n');
  });
  await new Promise((ok) => callback.listen(Number(r.port), r.hostname, ok));
  callback.unref();
}

// One provider per MCP server (the SDK's OAuthClientProvider is "to be used
// with one MCP server"): the preregistered client, bound to its issuer, and
// dynamic registration for any other authorization server.
class BrowserProvider {
  #client = clientSecret ? { client_id: clientId, client_secret: clientSecret, issuer } : { client_id: clientId, issuer };
  #state = randomUUID();
  #tokens; #verifier; #discovery;
  response; // the authorization response, once the browser delivered it
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return { client_name: 'agent.js', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  state() { return this.#state; }
  clientInformation() { return this.#client; }
  saveClientInformation(info) { this.#client = info; }
  tokens() { return this.#tokens; }
  saveTokens(tokens) { this.#tokens = tokens; }
  saveCodeVerifier(v) { this.#verifier = v; }
  codeVerifier() { return this.#verifier; }
  saveDiscoveryState(s) { this.#discovery = s; }
  discoveryState() { return this.#discovery; }
  async redirectToAuthorization(url) {
    const delivered = new Promise((ok) => { deliver = ok; });
    const res = await fetch(`${env.AGENTSSO_BROWSER_URL}?url=${encodeURIComponent(url.href)}`);
    if (!res.ok) throw new Error(`browser: ${res.status} ${await res.text()}`);
    this.response = await delivered;
  }
  // What the SDK leaves to the application: the state it asked for, and
  // RFC 9207's iss against the authorization server's metadata.
  code() {
    const q = this.response;
    this.response = undefined;
    if (!q) throw new Error('no authorization response');
    if (q.get('error')) throw new Error(`authorization: ${q.get('error')}`);
    if (q.get('state') !== this.#state) throw new Error('authorization response: wrong state');
    const meta = this.#discovery?.authorizationServerMetadata ?? {};
    if ((q.has('iss') || meta.authorization_response_iss_parameter_supported) && q.get('iss') !== meta.issuer) {
      throw new Error('authorization response: wrong or missing iss');
    }
    return q.get('code');
  }
}

// serverScopes reads scopes_supported from the server's RFC 9728 metadata:
// ClientCredentialsProvider asks only for the scope it is constructed with
// (neither the metadata's nor a challenge's).
async function serverScopes(url) {
  const u = new URL(url);
  const res = await fetch(`${u.origin}/.well-known/oauth-protected-resource${u.pathname}`);
  return res.ok ? ((await res.json()).scopes_supported ?? []).join(' ') || undefined : undefined;
}

// connect opens the MCP session. When the server wants a token the SDK
// discovers its authorization server, sends the browser there and throws
// UnauthorizedError; the code is then redeemed (finishAuth) and a new
// transport connects with the token.
async function connect(url, provider) {
  const client = new Client({ name: 'agent.js', version: '1.0.0' });
  let transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  try {
    await client.connect(transport);
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.response) throw e;
    await transport.finishAuth(provider.code());
    transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    await client.connect(transport);
  }
  return { client, transport, provider };
}

// call runs a tool; a 401 the SDK cannot settle by refreshing sends the
// browser to the AS again, and the call is retried once with the new token.
async function call(s, name, args) {
  try {
    return await s.client.callTool({ name, arguments: args });
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !s.provider.response) throw e;
    await s.transport.finishAuth(s.provider.code());
    return await s.client.callTool({ name, arguments: args });
  }
}

const tools = new Map(); // tool name → its server's session
const defs = [];
for (const url of servers) {
  const provider = env.AGENTSSO_GRANT === 'client_credentials'
    ? new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer: issuer, scope: await serverScopes(url) })
    : new BrowserProvider();
  const s = await connect(url, provider);
  for (const t of (await s.client.listTools()).tools) {
    tools.set(t.name, s);
    defs.push({ type: 'function', function: { name: t.name, description: t.description, parameters: t.inputSchema } });
  }
}

const messages = [{ role: 'user', content: env.AGENTSSO_TASK ?? 'Say hello.' }];
for (let round = 0; round < 20; round++) {
  const res = await fetch(`${env.OPENAI_BASE_URL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${env.OPENAI_API_KEY}` },
    body: JSON.stringify({ model: 'agentsso-fake', messages, tools: defs }),
  });
  if (!res.ok) throw new Error(`model: ${res.status}`);
  const msg = (await res.json()).choices[0].message;
  if (!msg.tool_calls?.length) {
    console.log(msg.content);
    process.exit(0);
  }
  messages.push(msg);
  for (const tc of msg.tool_calls) {
    const s = tools.get(tc.function.name);
    if (!s) throw new Error(`the model called ${tc.function.name}, which no server publishes`);
    const out = await call(s, tc.function.name, JSON.parse(tc.function.arguments || '{}'));
    messages.push({ role: 'tool', tool_call_id: tc.id, content: out.content.map((c) => c.text ?? '').join('\n') });
  }
}
throw new Error('no final answer after 20 rounds');
