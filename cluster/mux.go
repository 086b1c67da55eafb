package cluster

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// tlsHandshake is the first byte of every TLS connection (a handshake record): the cluster API's. A Raft
// connection starts with raftHeader, then its own TLS session (rafttls.go).
const tlsHandshake = 0x16

// firstByteTimeout bounds how long an accepted connection may stay silent before it is sorted.
const firstByteTimeout = 10 * time.Second

// Mux is the cluster port: one TCP listener shared by Raft's transport (RaftLayer) and the servers' own
// TLS API (APIListener), told apart by the first byte of each connection. Raft's connections are
// mutual TLS, authenticated with the credentials of the Node configured with this Mux; until then the
// Mux refuses them (and Raft's dials fail and are retried), except this node's own Raft connections to
// itself, which never leave the process.
type Mux struct {
	lis       net.Listener
	advertise net.Addr
	raft      *subListener
	api       *subListener
	auth      atomic.Pointer[raftAuth]
	closeOnce sync.Once
}

// Listen opens the cluster port on bind. advertise, if set, is the address other servers reach this one
// at (default: the bound address).
func Listen(bind, advertise string) (*Mux, error) {
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen on %q: %w", bind, err)
	}
	if adv == nil {
		adv = lis.Addr()
		if a, ok := adv.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			lis.Close()
			return nil, fmt.Errorf("cluster: bind address %q is not an address other servers can reach: set raft.advertise_address", bind)
		}
	}
	m := &Mux{lis: lis, advertise: adv}
	m.raft = newSubListener(adv)
	m.api = newSubListener(adv)
	go m.serve()
	return m, nil
}

// Addr is the address other servers reach this node at.
func (m *Mux) Addr() net.Addr { return m.advertise }

// RaftLayer is the stream layer for raft.NewNetworkTransport.
func (m *Mux) RaftLayer() raft.StreamLayer { return raftLayer{m} }

// APIListener yields the TLS connections, for the cluster gRPC server.
func (m *Mux) APIListener() net.Listener { return m.api }

// Close stops accepting connections.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		err = m.lis.Close()
		m.raft.close()
		m.api.close()
	})
	return err
}

func (m *Mux) serve() {
	for {
		c, err := m.lis.Accept()
		if err != nil {
			m.Close()
			return
		}
		go m.sort(c)
	}
}

func (m *Mux) sort(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	br := bufio.NewReaderSize(c, 1)
	b, err := br.Peek(1)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch b[0] {
	case tlsHandshake:
		m.api.push(&peekedConn{Conn: c, r: br})
	case raftHeader:
		auth := m.auth.Load()
		if auth == nil {
			c.Close() // no credentials yet: the peer's Raft retries
			return
		}
		_, _ = br.Discard(1)
		tc, err := auth.accept(&peekedConn{Conn: c, r: br})
		if err != nil {
			return // closed and logged, rate limited
		}
		m.raft.push(tc)
	default:
		c.Close() // plain Raft, or anything else: refused
	}
}

// peekedConn is a connection whose first byte was read ahead.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// subListener is a net.Listener fed by the Mux.
type subListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *subListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *subListener) close()         { l.closed.Do(func() { close(l.done) }) }
func (l *subListener) Close() error   { l.close(); return nil }
func (l *subListener) Addr() net.Addr { return l.addr }

type raftLayer struct{ m *Mux }

func (l raftLayer) Accept() (net.Conn, error) { return l.m.raft.Accept() }
func (l raftLayer) Close() error              { return l.m.raft.Close() }
func (l raftLayer) Addr() net.Addr            { return l.m.raft.Addr() }

// Dial opens a mutually authenticated Raft connection to address; one to this node itself (a lone
// voter's TimeoutNow to itself) is an in-process pipe.
func (l raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if string(address) == l.m.advertise.String() {
		client, server := net.Pipe()
		go l.m.raft.push(server)
		return client, nil
	}
	auth := l.m.auth.Load()
	if auth == nil {
		return nil, fmt.Errorf("cluster: raft connection to %s: this node's cluster credentials are not set up yet", address)
	}
	return auth.dial(string(address), timeout)
}

var _ raft.StreamLayer = raftLayer{}
