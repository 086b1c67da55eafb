package cluster

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// tlsHandshake is the first byte of every TLS connection (a handshake record). Raft's transport starts
// each connection with its RPC type, a small number: the two never collide.
const tlsHandshake = 0x16

// firstByteTimeout bounds how long an accepted connection may stay silent before it is sorted.
const firstByteTimeout = 10 * time.Second

// Mux is the cluster port: one TCP listener shared by Raft's transport (RaftLayer) and the servers' own
// TLS API (APIListener), told apart by the first byte of each connection.
type Mux struct {
	lis       net.Listener
	advertise net.Addr
	raft      *subListener
	api       *subListener
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
func (m *Mux) RaftLayer() raft.StreamLayer { return raftLayer{m.raft} }

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
	pc := &peekedConn{Conn: c, r: br}
	if b[0] == tlsHandshake {
		m.api.push(pc)
	} else {
		m.raft.push(pc)
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

type raftLayer struct{ *subListener }

func (raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

var _ raft.StreamLayer = raftLayer{}
