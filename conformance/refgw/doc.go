// Package refgw is agentsso's reference gateway: the conforming target
// the harness is proven against. It is an MCP / REST gateway in front of
// an upstream API that does what identity engineers expect of one, and
// it is meant to be read as a model.
//
// For every request but the RFC 9728 metadata it:
//
//  1. takes exactly one token from the Authorization header (Bearer or
//     DPoP scheme, case-insensitive; never the query string), at most
//     16 KiB, compact JWS only;
//  2. parses it with go-jose and an algorithm allow-list (ES256, ES384,
//     RS256, PS256, EdDSA), refuses crit, b64 and JWE, ignores any key the
//     header names or carries (jwk, jku, x5u, x5c), and verifies it with
//     the key of the configured JWKS that matches kid and alg;
//  3. requires typ at+jwt, iss exact, aud containing Audience exactly, exp,
//     nbf and iat within Leeway, a lifetime within MaxLifetime and a sub
//     (RFC 9068 section 4);
//  4. decides on the current actor only (RFC 8693 section 4.1) when
//     AllowedActors is set;
//  5. requires a DPoP proof for a cnf.jkt token and checks it as RFC 9449
//     section 4.3 says, with a jti replay cache; with MTLS, requires the TLS
//     client certificate a cnf.x5t#S256 token is bound to (RFC 8705
//     section 3), never one named in a request header;
//  6. enforces the ctx claim (zone, env, source networks from the TCP peer
//     address, never a forwarding header);
//  7. introspects the token when configured, failing closed;
//  8. checks the scope the tool or REST call needs (exact, space-delimited);
//  9. writes one audit record per decision, before acting (to a JSON-lines
//     file, a webhook, or both);
//  10. forwards to the upstream with a token obtained by RFC 8693 token
//     exchange, never the inbound token.
//
// Refusals follow RFC 6750 section 3 and RFC 9449 section 7.1: 401 with a
// WWW-Authenticate challenge carrying resource_metadata (RFC 9728 section
// 5.1), 403 insufficient_scope with the scope needed, 400 invalid_request
// for a token in the query or presented twice.
//
// Each check can be switched off by name through Config.Flaws (see
// FlawCatalog), so that each conformance scenario can be shown to pass on
// the reference gateway and to fail with the matching flaw.
package refgw
