#!/bin/sh
# The mTLS example end to end (`make example-mtls`): a throwaway `signet dev`, an entry for the server
# and one for the client, told apart by the path of their executables (both run as you), then the
# server and REQUESTS calls of the client. Needs SERVER and CLIENT, the built examples (the make target
# builds them), and SIGNET, the signet binary.
set -eu
. "$(dirname "$0")/../dev.sh"
SERVER=$(abs "${SERVER:-bin/examples/mtls-server}")
CLIENT=$(abs "${CLIENT:-bin/examples/mtls-client}")
REQUESTS=${REQUESTS:-5}
SERVER_ID=spiffe://example.org/example/mtls-server
CLIENT_ID=spiffe://example.org/example/mtls-client

start_dev
"$SIGNET" owner add mtls-example --kind team --name "mTLS example" >/dev/null
"$SIGNET" entry create --spiffe-id "$SERVER_ID" --owner mtls-example --purpose "mTLS example server" \
	--selector "unix:uid:$(id -u)" --selector "unix:path:$SERVER" >/dev/null
"$SIGNET" entry create --spiffe-id "$CLIENT_ID" --owner mtls-example --purpose "mTLS example client" \
	--selector "unix:uid:$(id -u)" --selector "unix:path:$CLIENT" >/dev/null
echo "registered $SERVER_ID (unix:path:$SERVER) and $CLIENT_ID (unix:path:$CLIENT)"

"$SERVER" -addr 127.0.0.1:0 -id "$SERVER_ID" -client-id "$CLIENT_ID" >"$work/server.out" 2>&1 &
pids="$! $pids"
wait_for "$work/server.out" "^listening on "
cat "$work/server.out"
addr=$(sed -n 's/^listening on \([^,]*\),.*/\1/p' "$work/server.out")
"$CLIENT" -url "https://$addr/" -id "$CLIENT_ID" -server-id "$SERVER_ID" -requests "$REQUESTS"
echo "mtls example: $REQUESTS requests over mutual TLS, both sides authorized by SPIFFE ID"
