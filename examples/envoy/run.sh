#!/bin/sh
# Runs Envoy with envoy.yaml against `signet dev` (make example-envoy). Envoy must be installed
# (https://www.envoyproxy.io/docs/envoy/latest/start/install); it is not on Signet's build machines,
# where examples/envoy/envoy_test.go checks the file instead.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
signet=${SIGNET:-$here/../../bin/signet}
if ! command -v envoy >/dev/null 2>&1; then
	echo "envoy is not installed (or not on PATH): install it, then run this again" >&2
	exit 1
fi
dir=$(mktemp -d)
"$signet" dev --socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" --data-dir "$dir/data" &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
i=0
until [ -S "$dir/agent.sock" ]; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "signet dev did not open $dir/agent.sock in 20s" >&2
		exit 1
	fi
	sleep 0.2
done
# The example names the agent's default socket; point it at this dev instance's.
sed "s#/run/signet/agent.sock#$dir/agent.sock#" "$here/envoy.yaml" >"$dir/envoy.yaml"
echo "Envoy: mutual TLS on :8443 with your dev SVID (curl localhost:9901/certs), proxied to 127.0.0.1:8080"
envoy -c "$dir/envoy.yaml" --log-level info
