package workloadapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The child process: this test binary started again with childEnv set, as a Workload API caller of its
// own (its own pid, and a uid it can drop to). It reads one command per line on stdin and answers
// each with one line on stdout:
//
//	setuid N   drop to uid and gid N                       -> "ok"
//	jwt AUD    FetchJWTSVID for audience AUD               -> "<code> <number of SVIDs>"
//	stream     open FetchX509SVID, receive the first reply -> "<code> <number of SVIDs>"
//	next       receive the stream's next reply             -> "<code> <number of SVIDs>"
//	sds NAME   open StreamSecrets for NAME, receive the first response -> "<code> <number of secrets>"
//	sdsnext    receive the SDS stream's next response      -> "<code> <number of secrets>"
const (
	childEnv       = "SIGNET_WORKLOADAPI_TEST_CHILD"
	childSocketEnv = "SIGNET_WORKLOADAPI_TEST_SOCKET"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild(os.Getenv(childSocketEnv), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func runChild(addr string, in io.Reader, out io.Writer) int {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(out, "error", err)
		return 1
	}
	defer conn.Close()
	c := workload.NewSpiffeWorkloadAPIClient(conn)
	// Every call ends within a minute, so a child never outlives a failed test for long.
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), time.Minute)
	defer cancel()
	var stream workload.SpiffeWorkloadAPI_FetchX509SVIDClient
	recv := func() string {
		resp, err := stream.Recv()
		return fmt.Sprintf("%s %d", status.Code(err), len(resp.GetSvids()))
	}
	sdsc := secretv3.NewSecretDiscoveryServiceClient(conn)
	var sds secretv3.SecretDiscoveryService_StreamSecretsClient
	sdsRecv := func() string {
		resp, err := sds.Recv()
		return fmt.Sprintf("%s %d", status.Code(err), len(resp.GetResources()))
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "setuid":
			id, _ := strconv.Atoi(arg)
			if err := dropTo(id); err != nil {
				fmt.Fprintln(out, "error", err)
				continue
			}
			fmt.Fprintln(out, "ok")
		case "jwt":
			resp, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{arg}})
			fmt.Fprintf(out, "%s %d\n", status.Code(err), len(resp.GetSvids()))
		case "stream":
			if stream, err = c.FetchX509SVID(ctx, &workload.X509SVIDRequest{}); err != nil {
				fmt.Fprintln(out, status.Code(err), 0)
				continue
			}
			fmt.Fprintln(out, recv())
		case "next":
			fmt.Fprintln(out, recv())
		case "sds":
			if sds, err = sdsc.StreamSecrets(ctx); err == nil {
				err = sds.Send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{arg}})
			}
			if err != nil {
				fmt.Fprintln(out, status.Code(err), 0)
				continue
			}
			fmt.Fprintln(out, sdsRecv())
		case "sdsnext":
			fmt.Fprintln(out, sdsRecv())
		default:
			fmt.Fprintln(out, "error unknown command", cmd)
		}
	}
	return 0
}

func dropTo(id int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(id); err != nil {
		return err
	}
	return syscall.Setuid(id)
}

// child is a running child process.
type child struct {
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *testkit.SyncBuffer
}

// nobody is the uid a child drops to.
const nobody = 65534

// startChild starts a child process calling the Workload API at addr (which must be reachable by
// every uid when the child drops root: serveOpts.open). It needs root, as CI runs tests, to drop to
// another uid; without it the test is skipped with that reason.
func startChild(t *testing.T, addr string) *child {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to start a child process that changes its uid (CI runs tests as root)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childSocketEnv+"="+addr)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{in: in, out: bufio.NewScanner(outPipe), stderr: &testkit.SyncBuffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return c
}

// do sends one command and returns the child's answer.
func (c *child) do(t *testing.T, command string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, command); err != nil {
		t.Fatalf("child %q: %v (stderr: %s)", command, err, c.stderr)
	}
	if !c.out.Scan() {
		t.Fatalf("child %q: no answer: %v (stderr: %s)", command, c.out.Err(), c.stderr)
	}
	return c.out.Text()
}
