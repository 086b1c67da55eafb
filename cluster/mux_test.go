package cluster

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestMuxSortsRaftAndTLS: Raft's transport and a TLS server share the cluster port; each gets its own
// connections, Raft's with the first byte intact.
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
		t.Fatal("the raft connection never reached the raft side")
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
