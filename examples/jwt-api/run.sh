#!/bin/sh
# Runs the jwt-api example against signet dev (make example-jwt-api builds the binaries first):
# signet dev with the OIDC provider on 127.0.0.1:8090, the API on 127.0.0.1:8091, then the client with
# a JWT-SVID (200), with the old static API key (401) and with a token for another audience (401).
set -eu
BIN=${BIN:-bin}
dir=$(mktemp -d "${TMPDIR:-/tmp}/signet-jwt-api.XXXXXX")
pids=""
cleanup() {
	for p in $pids; do kill -INT "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$BIN/signet" dev --data-dir "$dir/data" --socket "$dir/run/agent.sock" --admin-socket "$dir/run/admin.sock" \
	--log-level warn --oidc-listen 127.0.0.1:8090 >"$dir/dev.out" &
pids="$!"
i=0
until grep -q '^OIDC discovery:' "$dir/dev.out" 2>/dev/null; do
	i=$((i + 1))
	if [ "$i" -gt 300 ]; then echo "signet dev did not start" >&2; exit 1; fi
	sleep 0.1
done
cat "$dir/dev.out"
export SPIFFE_ENDPOINT_SOCKET="unix://$dir/run/agent.sock"

"$BIN/jwt-api" --listen 127.0.0.1:8091 --issuer http://127.0.0.1:8090 --audience orders-api &
pids="$! $pids"
# Wait for the API: a probe with a static key is refused (401) once it listens.
i=0
until "$BIN/jwt-api-client" --static-key probe 2>/dev/null | grep -q '^401'; do
	i=$((i + 1))
	if [ "$i" -gt 300 ]; then echo "the API did not start" >&2; exit 1; fi
	sleep 0.1
done

echo "--- with a JWT-SVID for orders-api (want 200):"
"$BIN/jwt-api-client" --audience orders-api
echo "--- with the old static API key (want 401):"
if "$BIN/jwt-api-client" --static-key orders-api-static-key-8f3a9c; then echo "accepted: wrong" >&2; exit 1; fi
echo "--- with a JWT-SVID for billing-api (want 401):"
if "$BIN/jwt-api-client" --audience billing-api; then echo "accepted: wrong" >&2; exit 1; fi
echo "--- the example works."
