package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/signet-id/signet/server/oidc"
	"github.com/signet-id/signet/storage"
)

// listenOIDC binds the OIDC provider's address, if it is to be served, before the node starts (a taken
// port fails before any state is touched), and settles an empty issuer (dev) to http://<bound address>.
func listenOIDC(s *oidcSetup) (net.Listener, error) {
	if s.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", s.ListenKey, s.Listen, err)
	}
	if s.Issuer == "" {
		s.Issuer, s.AllowHTTP = "http://"+ln.Addr().String(), true
	}
	return ln, nil
}

// newOIDCProvider builds the provider on the node's store; run serves it on ln until ctx ends.
func newOIDCProvider(st *storage.Store, s oidcSetup, ln net.Listener, log *slog.Logger) (run func(context.Context), err error) {
	p, err := oidc.New(oidc.Config{Issuer: s.Issuer, AllowHTTP: s.AllowHTTP, Bundle: st, MaxAge: s.MaxAge, Logger: log})
	if err != nil {
		return nil, err
	}
	scheme := "https"
	if s.TLS == nil {
		scheme = "http"
	}
	return func(ctx context.Context) {
		go p.Run(ctx)
		log.Info("OIDC discovery provider serving", "address", ln.Addr().String(), "scheme", scheme, "issuer", s.Issuer)
		if err := p.Serve(ctx, ln, s.TLS); err != nil {
			log.Error("OIDC discovery provider stopped", "error", err)
		}
	}, nil
}
