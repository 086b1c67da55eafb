// Command api is the jwt-api example's HTTP API: GET /orders answers only callers with a JWT-SVID for
// its audience, validated against the OIDC issuer's published keys (no static API key any more).
//
//	api --listen 127.0.0.1:8091 --issuer http://127.0.0.1:8090 --audience orders-api
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/signet-id/signet/examples/jwt-api/jwtapi"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address to serve on")
	issuer := flag.String("issuer", "", "OIDC issuer URL whose keys sign the tokens (signet dev --oidc-listen prints it)")
	audience := flag.String("audience", "orders-api", "this API's audience: tokens must be for it")
	flag.Parse()
	if err := run(*listen, *issuer, *audience); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func run(listen, issuer, audience string) error {
	v, err := jwtapi.NewVerifier(jwtapi.VerifierConfig{Issuer: issuer, Audience: audience})
	if err != nil {
		return fmt.Errorf("%w (--issuer and --audience)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: listen, Handler: jwtapi.NewAPI(v), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("jwt-api serving", "address", listen, "issuer", issuer, "audience", audience)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
