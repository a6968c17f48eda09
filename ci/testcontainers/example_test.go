package agentssotc_test

import (
	"context"
	"fmt"
	"log"
	"time"

	agentssotc "github.com/agentsso/agentsso/ci/testcontainers"
	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/emulator"
)

// Start the emulator in a container, point the system under test at a
// tenant's issuer, and drive the emulator through its admin API.
func ExampleRun() {
	ctx := context.Background()
	idp, err := agentssotc.Run(ctx, agentssotc.WithImage("agentsso:ci"), agentssotc.WithKeyBackend("pkcs11"))
	if err != nil {
		log.Fatal(err)
	}
	defer idp.Terminate(ctx)

	fmt.Println(idp.IssuerURL("acme")) // http://127.0.0.1:PORT/t/acme, also in discovery and every token

	// A token that expired five minutes ago, for the gateway to refuse.
	expired, err := idp.Admin().Mint(ctx, "acme", conformance.MintRequest{
		Claims: map[string]any{"client_id": "support-bot"}, Offset: "-15m", Lifetime: "10m"})
	if err != nil {
		log.Fatal(err)
	}
	_ = expired.Token

	// The tenant's clock 11 minutes ahead, and a JWKS that fails three times.
	freeze := true
	if _, err := idp.Admin().SetClock(ctx, "acme", agentssotc.ClockChange{Freeze: &freeze, Advance: 11 * time.Minute}); err != nil {
		log.Fatal(err)
	}
	if err := idp.Admin().SetFault(ctx, "acme", emulator.Fault{Endpoint: "jwks", Mode: "unavailable", Count: 3}); err != nil {
		log.Fatal(err)
	}
}
