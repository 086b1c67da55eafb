package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// faultNet is one TCP proxy in front of each server's cluster port (the address the server advertises
// and the others dial), which the test can partition: while some servers are cut off, a connection
// between a server cut off and one that is not is refused if new and closed if open; heal lets them
// connect again. Which server opened a connection is read from /proc: the process holding the socket
// whose local address is the connection's remote one.
type faultNet struct {
	t       *testing.T
	addrs   []string // the proxies' addresses, by server index
	mu      sync.Mutex
	pids    map[int]int // pid → server index
	cutOff  map[int]bool
	links   map[*faultLink]struct{}
	closers []io.Closer
}

// faultLink is one proxied connection: from the server src (-1 while not known) to the server dst.
type faultLink struct {
	src, dst int
	in, out  net.Conn
}

// newFaultNet starts a proxy for each of targets (the servers' real cluster ports).
func newFaultNet(t *testing.T, targets []string) *faultNet {
	f := &faultNet{t: t, pids: map[int]int{}, cutOff: map[int]bool{}, links: map[*faultLink]struct{}{}}
	for i, target := range targets {
		lis, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addrs = append(f.addrs, lis.Addr().String())
		f.closers = append(f.closers, lis)
		go f.serve(lis, i, target)
	}
	t.Cleanup(f.close)
	return f
}

// setPID tells the proxies that server i runs as pid (after each start).
func (f *faultNet) setPID(i, pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, j := range f.pids {
		if j == i {
			delete(f.pids, p)
		}
	}
	f.pids[pid] = i
}

func (f *faultNet) serve(lis net.Listener, dst int, target string) {
	for {
		in, err := lis.Accept()
		if err != nil {
			return
		}
		go f.link(in, dst, target)
	}
}

func (f *faultNet) link(in net.Conn, dst int, target string) {
	out, err := net.Dial("tcp4", target)
	if err != nil {
		in.Close()
		return
	}
	l := &faultLink{src: -1, dst: dst, in: in, out: out}
	f.mu.Lock()
	l.src = f.owner(in)
	if f.blocked(l) {
		f.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	f.links[l] = struct{}{}
	f.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(w, r net.Conn) {
		io.Copy(w, r)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	in.Close()
	out.Close()
	f.mu.Lock()
	delete(f.links, l)
	f.mu.Unlock()
}

// blocked reports whether l crosses the partition (f.mu held). A connection from no known server
// (src -1) is outside every partition: it is refused only to a server cut off.
func (f *faultNet) blocked(l *faultLink) bool {
	return f.cutOff[l.dst] != (l.src >= 0 && f.cutOff[l.src])
}

// cut isolates the servers given from the others and closes the connections that cross.
func (f *faultNet) cut(servers ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, i := range servers {
		f.cutOff[i] = true
	}
	for l := range f.links {
		if l.src < 0 {
			l.src = f.owner(l.in) // opened before its server's pid was known
		}
		if f.blocked(l) {
			l.in.Close()
			l.out.Close()
		}
	}
}

// heal ends the partition.
func (f *faultNet) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.cutOff)
}

func (f *faultNet) close() {
	for _, c := range f.closers {
		c.Close()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for l := range f.links {
		l.in.Close()
		l.out.Close()
	}
}

// owner returns the index of the server whose process holds the other end of in (the socket bound to
// in's remote address and connected to its local one), or -1 (f.mu held).
func (f *faultNet) owner(in net.Conn) int {
	inode := tcpInode(in.RemoteAddr().(*net.TCPAddr), in.LocalAddr().(*net.TCPAddr))
	if inode == "" {
		return -1
	}
	want := "socket:[" + inode + "]"
	for pid, i := range f.pids {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && link == want {
				return i
			}
		}
	}
	return -1
}

// tcpInode returns the inode of the IPv4 TCP socket bound to local and connected to remote, from
// /proc/net/tcp, or "".
func tcpInode(local, remote *net.TCPAddr) string {
	hexAddr := func(a *net.TCPAddr) string {
		ip := a.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
	}
	l, r := hexAddr(local), hexAddr(remote)
	file, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == l && fields[2] == r {
			if _, err := strconv.ParseUint(fields[9], 10, 64); err == nil {
				return fields[9]
			}
		}
	}
	return ""
}
