package jwtapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

type subjectKey struct{}

// Protect lets a request through to next only with "Authorization: Bearer <JWT-SVID>" that v accepts;
// anything else (no header, the old static API key, a token expired or for another audience) gets
// 401 with a WWW-Authenticate challenge (RFC 6750 §3). next finds the caller with Subject.
func Protect(v *Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			unauthorized(w, `Bearer realm="jwt-api"`, "a JWT-SVID is required: Authorization: Bearer <token>")
			return
		}
		claims, err := v.Verify(r.Context(), token)
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) {
				// The issuer's keys could not be fetched: not the caller's fault.
				slog.Error("jwt-api: cannot validate tokens", "error", err)
				http.Error(w, "cannot validate tokens now", http.StatusServiceUnavailable)
				return
			}
			slog.Info("jwt-api: token refused", "error", err)
			unauthorized(w, `Bearer realm="jwt-api", error="invalid_token"`, "invalid token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), subjectKey{}, claims.Subject.String())))
	})
}

func unauthorized(w http.ResponseWriter, challenge, msg string) {
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, msg, http.StatusUnauthorized)
}

// Subject is the SPIFFE ID of the caller Protect let through ("" outside Protect).
func Subject(r *http.Request) string {
	s, _ := r.Context().Value(subjectKey{}).(string)
	return s
}

// NewAPI is the example API: GET /orders, for callers with a JWT-SVID v accepts.
func NewAPI(v *Verifier) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /orders", Protect(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "orders for %s\n", Subject(r))
	})))
	return mux
}
