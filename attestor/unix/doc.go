// Package unix is Signet's Unix workload attestor: given the pid of a process calling the Workload
// API and the start time it had when it connected (internal/peercred reads both on the accepted
// socket), it reports what the kernel
// knows about that process as selectors:
//
//	unix:uid:<real uid>          unix:gid:<real gid>
//	unix:user:<name>             unix:group:<name>        (only when the id resolves to a name)
//	unix:path:<executable path>  unix:sha256:<hex digest of the executable>
//
// Usage:
//
//	att, err := unix.New(unix.Config{Logger: logger})
//	if err != nil {
//		return err
//	}
//	caller, _ := peercred.FromContext(ctx) // pid and start time, read when it connected
//	sels, err := att.Attest(ctx, caller.PID, caller.StartTime)
//	if errors.Is(err, unix.ErrProcessGone) {
//		// the caller exited (or its pid now names another process): refuse it
//	}
//
// # How the process is read
//
// Everything comes from the proc file system (Config.ProcRoot, normally /proc, which must be the
// proc of the pid namespace the pid was obtained in). The ids are the real ids, the first column of
// the Uid and Gid lines of /proc/<pid>/status. The digest is computed from the file opened through
// /proc/<pid>/exe, never by opening the path: a path can be replaced after the process started, the
// file the process runs cannot.
//
// # The path selector is weaker than sha256
//
// The path is the target of the /proc/<pid>/exe link, which is the path in the process's own mount
// namespace. Anyone who can create a user and mount namespace (unprivileged users can, on most
// distributions) can bind-mount their own binary over /usr/bin/anything there and run it under that
// name. So Attest reports unix:path only when the path, resolved in the agent's mount namespace, is
// the very file the process runs (same device and inode); otherwise the selector is left out and the
// reason is logged at debug level. The same holds when the executable was removed, or another file
// renamed over its path (as a package upgrade does), after the process started: the kernel then
// appends " (deleted)" to the link, the path names another file or none, and there is no unix:path.
//
// Even so, unix:path only says which file the path names now; what that file contains is whatever its
// owner last wrote. Prefer unix:sha256 (with unix:uid or unix:gid) for anything that matters, and give
// unix:path alone only to identities that are fine to hand to whoever can write that path.
//
// # Pid reuse
//
// A pid names a process only until that process is reaped, after which the kernel may hand the
// number to a new process; a (pid, start time) pair names one process for as long as the machine
// runs. The start time (field 22 of /proc/<pid>/stat) is read once when the caller connects (by
// internal/peercred during the handshake, checked against a pidfd of the connecting process where the
// kernel offers SO_PEERPIDFD) and passed to Attest with the pid. Attest refuses the call with
// ErrProcessGone if the pid now names a process with another start time (the caller exited and a
// new process got its pid: a connection handed to another process, or kept after its owner died,
// cannot borrow the identity of whatever runs under that pid now), and checks it again after
// everything has been read, so a process that exits during attestation is refused too.
//
// A process that calls exec during attestation keeps its pid and start time; Attest notices when
// the executable path changes between two readings and returns an error, but selectors read
// around an exec are, in general, only as current as the moment they were read.
//
// # Hashing and caches
//
// Hashing is the one expensive step, so it is done only when it can matter: when Config.DigestWanted
// is set (the agent sets it to "does any entry have a unix:sha256 selector?") and says no, nothing is
// hashed; executables larger than Config.MaxHashSize (default 128 MiB) are never hashed and get no
// sha256 selector; and at most Config.MaxHashesPerUID executables (default 2) of processes of one uid
// are hashed at a time, further attestations of that uid waiting for a slot until their context ends.
//
// Digests are cached by (device, inode, size, mtime, ctime) of the opened executable, so attesting
// many calls from the same binary hashes it once; a binary that is rewritten gets a new mtime and
// ctime (ctime cannot be set by an unprivileged user) and is hashed again, as is one merely touched.
// User and group names are cached for a minute, including failed look-ups. Both caches are bounded
// and safe for concurrent use.
package unix
