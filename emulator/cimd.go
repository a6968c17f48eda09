package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
)

// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document),
// as MCP clients use them: the client_id is an https URL, and the document
// served at that URL is the client's registration. A tenant accepts them
// when registration.client_id_metadata_documents is on.
//
// What agentsso accepts:
//   - an https URL with a path, no fragment, no user or password, no "." or
//     ".." segment; for local testing also an http URL whose host is a
//     loopback address (127.0.0.0/8, [::1] or localhost), which the draft
//     does not allow: never point a real deployment at such a client;
//   - served with status 200, a JSON content type, at most 64 KiB, within 5
//     seconds, without redirects, through the Server's HTTP client
//     (WithHTTPClient);
//   - whose client_id equals the URL exactly;
//   - with no client_secret or client_secret_expires_at, and
//     token_endpoint_auth_method none (the default when absent) or
//     private_key_jwt with jwks or jwks_uri;
//   - with redirect_uris when its grant_types (default authorization_code)
//     include authorization_code.
//
// Everything else in the document is checked as RFC 7591 registration
// metadata is (see register.go). A usable document is cached, by the
// tenant's clock, for its Cache-Control max-age capped at one hour (five
// minutes when the response names none; not at all with no-store or
// no-cache). A document that cannot be used makes the request fail with
// invalid_client, with a description naming the problem.

const (
	// remoteTimeout bounds one fetch of a metadata document or a JWK Set.
	remoteTimeout = 5 * time.Second
	// maxRemoteBytes bounds the body of a fetched document.
	maxRemoteBytes = 64 << 10
	// defaultRemoteTTL is how long a fetched document is kept when the
	// response does not say.
	defaultRemoteTTL = 5 * time.Minute
	// maxRemoteTTL caps Cache-Control max-age.
	maxRemoteTTL = time.Hour
	// maxRemoteEntries bounds each cache of a tenant.
	maxRemoteEntries = 1024
)

// clientDocs caches what a tenant fetched about clients from the network:
// client ID metadata documents (as built clients) and JWK Sets named by a
// client's jwks_uri. The zero value is ready to use.
type clientDocs struct {
	mu   sync.Mutex
	docs map[string]docEntry
	jwks map[string]jwksEntry
}

type docEntry struct {
	c       *client
	expires time.Time
}

type jwksEntry struct {
	set     *jose.JSONWebKeySet
	fetched time.Time
	expires time.Time
}

// reset drops everything cached.
func (d *clientDocs) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs, d.jwks = nil, nil
}

func (d *clientDocs) doc(id string, now time.Time) *client {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.docs[id]
	if !ok || !now.Before(e.expires) {
		return nil
	}
	return e.c
}

func (d *clientDocs) putDoc(id string, c *client, now, expires time.Time) {
	if !now.Before(expires) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.docs == nil {
		d.docs = map[string]docEntry{}
	}
	if len(d.docs) >= maxRemoteEntries {
		for k, e := range d.docs {
			if !now.Before(e.expires) || len(d.docs) >= maxRemoteEntries {
				delete(d.docs, k)
			}
		}
	}
	d.docs[id] = docEntry{c: c, expires: expires}
}

func (d *clientDocs) keySet(uri string) (jwksEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.jwks[uri]
	return e, ok
}

func (d *clientDocs) putKeySet(uri string, e jwksEntry, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.jwks == nil {
		d.jwks = map[string]jwksEntry{}
	}
	if len(d.jwks) >= maxRemoteEntries {
		for k, old := range d.jwks {
			if !now.Before(old.expires) || len(d.jwks) >= maxRemoteEntries {
				delete(d.jwks, k)
			}
		}
	}
	d.jwks[uri] = e
}

// isURLClientID tells whether a client_id is meant as a metadata
// document URL (registered client ids never contain ':').
func isURLClientID(id string) bool {
	return strings.HasPrefix(id, "https://") || strings.HasPrefix(id, "http://")
}

// checkClientIDURL applies the draft's rules for a client identifier URL
// (section 3), plus agentsso's loopback-http exception.
func checkClientIDURL(id string) error {
	u, err := url.Parse(id)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if err := checkRemoteURL(u); err != nil {
		return err
	}
	if u.Path == "" || u.Path == "/" {
		return errors.New("the URL has no path: a client ID metadata document URL must name a document, e.g. https://app.example/oauth/client.json")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return errors.New(`the URL's path has a "." or ".." segment`)
		}
	}
	return nil
}

// checkRemoteURL is what every URL the emulator fetches from a client's
// say-so must be: https, or http on a loopback host; no fragment, no user
// or password.
func checkRemoteURL(u *url.URL) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	case u.Scheme == "http":
		return fmt.Errorf("http is allowed only on a loopback host (127.0.0.1, [::1], localhost), not %q: use https", u.Hostname())
	default:
		return fmt.Errorf("scheme %q: want https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("the URL has no host")
	}
	if u.User != nil {
		return errors.New("the URL must not contain a user name or password")
	}
	if u.Fragment != "" || strings.Contains(u.String(), "#") {
		return errors.New("the URL must not contain a fragment")
	}
	return nil
}

// isLoopbackHost tells whether a URL host is a loopback address or
// localhost.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// metadataClient returns the client described by the client ID metadata
// document at id. It returns (nil, nil) when the tenant does not accept
// such documents, and an invalid_client error naming the problem when the
// document cannot be fetched or used.
func (t *tenant) metadataClient(ctx context.Context, id string) (*client, error) {
	t.mu.RLock()
	on := t.cfg.Registration.ClientIDMetadataDocuments
	t.mu.RUnlock()
	if !on || !isURLClientID(id) {
		return nil, nil
	}
	now := t.clock.Now()
	if c := t.docs.doc(id, now); c != nil {
		return c, nil
	}
	bad := func(format string, a ...any) error {
		return fosite.ErrInvalidClient.WithHintf("Client ID metadata document %s: %s", id, fmt.Sprintf(format, a...))
	}
	if err := checkClientIDURL(id); err != nil {
		return nil, bad("%v.", err)
	}
	body, ttl, err := t.fetchJSON(ctx, id)
	if err != nil {
		return nil, bad("%v.", err)
	}
	raw, err := jsonObject(body)
	if err != nil {
		return nil, bad("%v.", err)
	}
	var docID string
	if err := json.Unmarshal(raw["client_id"], &docID); err != nil || docID == "" {
		return nil, bad("the document has no client_id string: it must hold client_id equal to the URL it is served from.")
	}
	if docID != id {
		return nil, bad("its client_id is %q: it must equal the URL it is served from exactly.", docID)
	}
	md, merr := t.parseClientMetadata(raw, fromDocument)
	if merr != nil {
		return nil, bad("%s.", merr.Description())
	}
	cc := t.clientConfig(md, id, "", "client ID metadata document")
	c, err := t.newClient(cc)
	if err != nil {
		return nil, bad("%v.", err)
	}
	if ttl > 0 {
		t.docs.putDoc(id, c, now, now.Add(ttl))
	}
	return c, nil
}

// fetchJSON GETs a small JSON document with the Server's HTTP client: at
// most remoteTimeout, no redirects followed, a 200 with a JSON content type
// and at most maxRemoteBytes. It returns the body and how long it may be
// cached (from Cache-Control).
func (t *tenant) fetchJSON(ctx context.Context, u string) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot request %s: %v", u, err)
	}
	req.Header.Set("Accept", "application/json")
	hc := *t.srv.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch failed: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if loc := resp.Header.Get("Location"); loc != "" {
			return nil, 0, fmt.Errorf("fetch answered %s redirecting to %s: redirects are not followed, serve the document at the URL itself", resp.Status, loc)
		}
		return nil, 0, fmt.Errorf("fetch answered %s, want 200 OK", resp.Status)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, 0, fmt.Errorf("served as %q: want Content-Type application/json", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRemoteBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the body failed: %v", err)
	}
	if len(body) > maxRemoteBytes {
		return nil, 0, fmt.Errorf("the document is larger than %d KiB", maxRemoteBytes>>10)
	}
	return body, cacheTTL(resp.Header.Values("Cache-Control")), nil
}

// cacheTTL reads Cache-Control: max-age (capped at maxRemoteTTL), zero for
// no-store or no-cache, defaultRemoteTTL when it says neither.
func cacheTTL(values []string) time.Duration {
	ttl := defaultRemoteTTL
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return 0
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				if n > int64(maxRemoteTTL/time.Second) {
					n = int64(maxRemoteTTL / time.Second)
				}
				ttl = time.Duration(n) * time.Second
			}
		}
	}
	return ttl
}

// jsonObject decodes a JSON object into its members, undecoded.
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	if raw == nil {
		return nil, errors.New("not a JSON object: got null")
	}
	return raw, nil
}

// remoteKeySet returns the JWK Set at a client's jwks_uri, cached like
// metadata documents. With refresh, a set fetched more than 10 seconds
// ago (by the tenant's clock) is fetched again: the client may have
// rotated to a key the cached set does not have yet.
func (t *tenant) remoteKeySet(ctx context.Context, uri string, refresh bool) (*jose.JSONWebKeySet, error) {
	now := t.clock.Now()
	if e, ok := t.docs.keySet(uri); ok && now.Before(e.expires) && (!refresh || now.Sub(e.fetched) < 10*time.Second) {
		return e.set, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("jwks_uri %q is not a URL", uri)
	}
	if err := checkRemoteURL(u); err != nil {
		return nil, fmt.Errorf("jwks_uri %s: %v", uri, err)
	}
	body, ttl, err := t.fetchJSON(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("jwks_uri %s: %v", uri, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks_uri %s: not a JWK Set: %v", uri, err)
	}
	// Even a no-store set is kept for a few seconds, so that one request
	// does not fetch it repeatedly.
	t.docs.putKeySet(uri, jwksEntry{set: &set, fetched: now, expires: now.Add(max(ttl, 10*time.Second))}, now)
	return &set, nil
}
