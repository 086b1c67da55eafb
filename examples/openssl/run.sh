#!/bin/sh
# The OpenSSL example end to end (`make example-openssl`): a throwaway `signet dev`; the server's and
# the client's SVIDs written as PEM files by `signet svid fetch --write`; openssl s_server requiring a
# client certificate from the trust bundle; openssl s_client with the client's SVID (accepted), with no
# certificate and with a self-signed one claiming the same SPIFFE ID (both refused). SIGNET is the
# signet binary (the make target builds it); PORT the port on 127.0.0.1 (default 8443).
set -eu
here=$(dirname "$0")
. "$here/../dev.sh"
PORT=${PORT:-8443}
steps() { sh "$here/steps.sh" "$@"; }

start_dev
steps fetch "$work/server"
steps fetch "$work/client"
steps impostor "$work/client"
sh "$here/steps.sh" serve "$work/server" "$PORT" >"$work/s_server.out" 2>&1 & # steps.sh execs s_server
pids="$! $pids"
wait_for "$work/s_server.out" "^ACCEPT"

# summary FILE: what s_client verified, and what the server answered (its page shows our certificate).
summary() {
	if grep -q '^Verify return code: 0 (ok)' "$1"; then
		echo "    s_client verified the server's SVID against the bundle: Verify return code: 0 (ok)"
	fi
	if grep -q '^HTTP/1.0 200' "$1"; then
		echo "    the server answered; the client certificate it verified: $(grep -m1 'URI:spiffe' "$1" | sed 's/^ *//')"
	fi
	grep -o 'alert [a-z ]*[a-z]' "$1" | grep -v '^alert number' | sed 's/^/    the server refused the client: TLS /' || :
}

if ! steps connect "$work/client" "$PORT" >"$work/accepted.out" 2>&1; then
	echo "openssl example: the client's SVID was refused:" >&2
	cat "$work/accepted.out" "$work/s_server.out" >&2
	exit 1
fi
echo "s_client with its SVID: accepted"
summary "$work/accepted.out"
for cert in none impostor; do
	if steps connect "$work/client" "$PORT" "$cert" >"$work/$cert.out" 2>&1; then
		echo "openssl example: the server accepted a client with certificate \"$cert\":" >&2
		cat "$work/$cert.out" >&2
		exit 1
	fi
	echo "s_client with certificate \"$cert\": refused"
	summary "$work/$cert.out"
done
echo "openssl example: mutual TLS with SVIDs as PEM files; clients without an SVID of the trust domain refused"
