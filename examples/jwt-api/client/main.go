// Command client is the jwt-api example's client: it gets a JWT-SVID for the API's audience from the
// SPIFFE Workload API (SPIFFE_ENDPOINT_SOCKET) and calls the API with it.
//
//	client --url http://127.0.0.1:8091/orders --audience orders-api
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/signet-id/signet/examples/jwt-api/jwtapi"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8091/orders", "the API's URL")
	audience := flag.String("audience", "orders-api", "the audience to ask the token for (the API's)")
	socket := flag.String("socket", "", "Workload API address, unix:///path (default: $SPIFFE_ENDPOINT_SOCKET)")
	staticKey := flag.String("static-key", "", "send this static API key instead of a JWT-SVID (what callers did before; refused now)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token := *staticKey
	if token == "" {
		var err error
		if token, err = jwtapi.FetchToken(ctx, *socket, *audience); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
	}
	code, body, err := jwtapi.Call(ctx, &http.Client{Timeout: 10 * time.Second}, *url, token)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	fmt.Printf("%d %s", code, body)
	if code != http.StatusOK {
		os.Exit(1)
	}
}
