package emulator

import (
	"context"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
)

// RFC 8693 token type identifiers.
const (
	tokenTypeAccessToken  = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
	tokenTypeIDToken      = "urn:ietf:params:oauth:token-type:id_token"
	tokenTypeJWT          = "urn:ietf:params:oauth:token-type:jwt"
)

// exchangeHandler is the RFC 8693 token exchange grant, plugged into
// fosite's token endpoint.
type exchangeHandler struct {
	t      *tenant
	helper *oauth2.HandleHelper
}

var _ fosite.TokenEndpointHandler = (*exchangeHandler)(nil)

func (h *exchangeHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantTokenExchange)
}

func (h *exchangeHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

func (h *exchangeHandler) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	return fosite.ErrUnsupportedGrantType.WithHint("token exchange is not implemented yet")
}

func (h *exchangeHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	return fosite.ErrUnsupportedGrantType
}
