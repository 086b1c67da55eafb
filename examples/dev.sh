# Sourced by the examples' run.sh scripts (POSIX sh): a throwaway `signet dev` in a temporary
# directory, stopped and removed on exit. Set SIGNET to the signet binary (default: bin/signet).

SIGNET=${SIGNET:-bin/signet}
work=$(mktemp -d "${TMPDIR:-/tmp}/signet-example.XXXXXX")
pids=""

stop_all() {
	for p in $pids; do kill -TERM "$p" 2>/dev/null || :; done
	for p in $pids; do wait "$p" 2>/dev/null || :; done
	rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# abs PATH: the absolute path with symlinks resolved, as unix:path selectors name executables.
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$1")"); }

# wait_for FILE TEXT: wait up to 30s until FILE (a background process's output) contains TEXT.
wait_for() {
	i=0
	until grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt 300 ]; then
			echo "gave up after 30s waiting for \"$2\" in $1:" >&2
			cat "$1" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# start_dev: run `signet dev` with its state and sockets in $work; export its sockets.
start_dev() {
	export SPIFFE_ENDPOINT_SOCKET="unix://$work/agent.sock" SIGNET_ADMIN_SOCKET="$work/admin.sock"
	"$SIGNET" dev --data-dir "$work/data" --socket "$work/agent.sock" --admin-socket "$work/admin.sock" \
		--log-level warn >"$work/dev.out" 2>&1 &
	pids="$! $pids"
	wait_for "$work/dev.out" "export SPIFFE_ENDPOINT_SOCKET="
	sed -n 's/^Your identity: /signet dev: your identity is /p' "$work/dev.out"
}
