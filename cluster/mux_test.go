package cluster

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestMuxSortsRaftAndTLS: the cluster API's TLS connections reach the API side; Raft's plain stream is
// refused before the mux has Raft credentials and after (TestRaftPortRefusesUnauthenticated); a node's
// Raft connection to itself is an in-process pipe that reaches its own Raft side, bytes intact.
func TestMuxSortsRaftAndTLS(t *testing.T) {
	m, err := Listen("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cert, err := placeholderCert()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		tl := tls.NewListener(m.APIListener(), &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}})
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	raftGot := make(chan []byte, 1)
	go func() {
		c, err := m.RaftLayer().Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err == nil {
			raftGot <- b
		}
	}()

	rc, err := m.RaftLayer().Dial(raft.ServerAddress(m.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.Write([]byte{0, 1, 2}); err != nil { // rpcAppendEntries is 0
		t.Fatal(err)
	}
	select {
	case b := <-raftGot:
		if string(b) != "\x00\x01\x02" {
			t.Fatalf("raft side read %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the raft connection to itself never reached the raft side")
	}
	if _, err := m.RaftLayer().Dial("127.0.0.1:1", time.Second); err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("a raft dial without credentials: %v", err)
	}

	// Plain Raft through the port: closed without an answer.
	pc, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.Write([]byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := pc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("plain raft through the port: read %d bytes, %v; want the connection closed", n, err)
	}

	tc, err := tls.Dial("tcp", m.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("TLS through the cluster port: %v", err)
	}
	defer tc.Close()
	if _, err := tc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(tc, b); err != nil || string(b) != "ping" {
		t.Fatalf("TLS echo: %q, %v", b, err)
	}
}

// TestListenRefusesUnadvertisableWildcard: a wildcard bind address without an advertise address is
// refused, naming the key to set.
func TestListenRefusesUnadvertisableWildcard(t *testing.T) {
	m, err := Listen("0.0.0.0:0", "")
	if err == nil {
		m.Close()
		t.Fatal("a wildcard bind address without advertise_address was accepted")
	}
	if want := "raft.advertise_address"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}
