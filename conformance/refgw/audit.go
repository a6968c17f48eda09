package refgw

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Decisions recorded in AuditRecord.Decision.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// AuditRecord is one line of the audit log: one per decision on a
// protected request. Identity fields come from the token as presented;
// TokenVerified says whether its signature and claims had been checked
// when the decision was made. It never holds a token, a proof or a query
// string.
type AuditRecord struct {
	Time time.Time `json:"time"`
	// Iss, Sub: the identity (iss, sub). Agent: the OAuth client the token
	// was issued to (client_id, else azp). Act: the current actor
	// (outermost act.sub); ActChain: the whole chain, current first.
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Agent    string   `json:"agent"`
	Act      string   `json:"act"`
	ActChain []string `json:"act_chain,omitempty"`
	Aud      []string `json:"aud"`
	JTI      string   `json:"jti"`
	// Instance is ctx.instance, when the token names its agent instance.
	Instance        string   `json:"instance,omitempty"`
	ScopesPresented []string `json:"scopes_presented"`
	ScopesRequired  []string `json:"scopes_required"`
	Decision        string   `json:"decision"`
	Reason          string   `json:"reason"`
	// Status is the HTTP status of a denial.
	Status int `json:"status,omitempty"`
	// Method and Path of the request (no query string).
	Method    string `json:"method"`
	Path      string `json:"path"`
	MCPMethod string `json:"mcp_method,omitempty"`
	Tool      string `json:"tool,omitempty"`
	// Source is the TCP peer address.
	Source string `json:"source"`
	// CertThumbprint is the x5t#S256 of the client certificate a
	// certificate-bound token was checked against.
	CertThumbprint string `json:"cert_x5t_s256,omitempty"`
	// Scheme is the authorization scheme used: Bearer or DPoP.
	Scheme        string `json:"scheme,omitempty"`
	TokenVerified bool   `json:"token_verified"`
	// UpstreamToken says what the upstream received on an allow:
	// "exchanged", "passthrough" or "none".
	UpstreamToken string `json:"upstream_token,omitempty"`
}

// auditLog appends JSON lines to a file, one write per record.
type auditLog struct {
	mu sync.Mutex
	f  *os.File
}

func openAuditLog(path string) (*auditLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &auditLog{f: f}, nil
}

func (a *auditLog) write(rec *AuditRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.f.Write(b)
	return err
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}

// auditWebhookTimeout bounds one POST of an audit record.
const auditWebhookTimeout = 2 * time.Second

// auditHook posts each record as JSON to a webhook (Config.AuditWebhook).
type auditHook struct {
	url    string
	client *http.Client // no redirects: a record goes where it was configured to
}

func (a *auditHook) post(rec *AuditRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditWebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("audit webhook answered %d", resp.StatusCode)
	}
	return nil
}
