package emulator_test

import (
	"context"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/agentsso/agentsso/emulator/emulatortest"
)

func TestSmokeClientCredentials(t *testing.T) {
	env := emulatortest.New(t, nil)
	cc := clientcredentials.Config{ClientID: "support-bot", ClientSecret: "support-bot-secret", TokenURL: env.TokenURL("acme"), AuthStyle: 2}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(tok.AccessToken, tok.Expiry, tok.TokenType)
}
