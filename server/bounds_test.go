package server

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/apierr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// apiServices are the services whose requests the bounds of both APIs cover.
var apiServices = []protoreflect.ServiceDescriptor{
	agentv1.File_agentv1_agent_proto.Services().ByName("Agent"),
	adminv1.File_adminv1_admin_proto.Services().ByName("Admin"),
}

// fieldBound bounds one request field (agentapi.RequestBound, adminapi.RequestBound).
type fieldBound struct{ n, each int }

// boundOf is the bound of a request field of either API.
func boundOf(name protoreflect.FullName) fieldBound {
	if n, each, ok := agentapi.RequestBound(name); ok {
		return fieldBound{n: n, each: each}
	}
	n, each, _ := adminapi.RequestBound(name)
	return fieldBound{n: n, each: each}
}

// oversized is a request with one field beyond its bound.
type oversized struct {
	path string
	set  func(protoreflect.Message)
}

// oversizedCases returns, for md, one request per bound that breaks just that bound.
func oversizedCases(md protoreflect.MessageDescriptor, depth int) []oversized {
	if depth > 3 {
		return nil
	}
	var out []oversized
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		name := string(fd.Name())
		b := boundOf(fd.FullName())
		isMsg := fd.Kind() == protoreflect.MessageKind
		scalar := func(n int) protoreflect.Value {
			if fd.Kind() == protoreflect.BytesKind {
				return protoreflect.ValueOfBytes(make([]byte, n))
			}
			return protoreflect.ValueOfString(strings.Repeat("x", n))
		}
		switch {
		case fd.IsList():
			out = append(out, oversized{name, func(m protoreflect.Message) {
				l := m.Mutable(fd).List()
				for range b.n + 1 {
					if isMsg {
						l.AppendMutable()
					} else {
						l.Append(scalar(1))
					}
				}
			}})
			if isMsg {
				for _, c := range oversizedCases(fd.Message(), depth+1) {
					out = append(out, oversized{name + "[0]." + c.path, func(m protoreflect.Message) {
						c.set(m.Mutable(fd).List().AppendMutable().Message())
					}})
				}
			} else {
				out = append(out, oversized{name + "[0]", func(m protoreflect.Message) { m.Mutable(fd).List().Append(scalar(b.each + 1)) }})
			}
		case isMsg:
			for _, c := range oversizedCases(fd.Message(), depth+1) {
				out = append(out, oversized{name + "." + c.path, func(m protoreflect.Message) { c.set(m.Mutable(fd).Message()) }})
			}
		case apierr.NeedsBound(fd):
			out = append(out, oversized{name, func(m protoreflect.Message) { m.Set(fd, scalar(b.n+1)) }})
		}
	}
	return out
}

// Every RPC of both APIs refuses a request with any one field beyond its bound, with InvalidArgument
// naming the field, over real gRPC connections to the real services.
func TestEveryRequestFieldIsBoundedAtTheAPI(t *testing.T) {
	e := newEnv(t)
	conns := map[protoreflect.FullName]*grpc.ClientConn{
		"signet.agent.v1.Agent": serveBufconn(t, func(g *grpc.Server) { agentv1.RegisterAgentServer(g, e.srv.Agent) }),
		"signet.admin.v1.Admin": serveBufconn(t, func(g *grpc.Server) { adminv1.RegisterAdminServer(g, e.srv.Admin) }),
	}
	n := 0
	for _, sd := range apiServices {
		conn := conns[sd.FullName()]
		for i := 0; i < sd.Methods().Len(); i++ {
			md := sd.Methods().Get(i)
			full := "/" + string(sd.FullName()) + "/" + string(md.Name())
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				t.Fatal(err)
			}
			outType, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range oversizedCases(md.Input(), 0) {
				req := in.New()
				c.set(req)
				resp := outType.New().Interface()
				if md.IsStreamingServer() {
					var stream grpc.ClientStream
					if stream, err = conn.NewStream(testCtx(t), &grpc.StreamDesc{ServerStreams: true}, full); err == nil {
						if err = stream.SendMsg(req.Interface()); err == nil {
							_ = stream.CloseSend()
							err = stream.RecvMsg(resp)
						}
					}
				} else {
					err = conn.Invoke(testCtx(t), full, req.Interface(), resp)
				}
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.path+":") {
					t.Errorf("%s with %s beyond its bound: %v; want InvalidArgument naming %s", md.Name(), c.path, err, c.path)
				}
				n++
			}
		}
	}
	bounds := 0
	for _, sd := range apiServices {
		apierr.RequestFields(sd, func(protoreflect.FieldDescriptor) { bounds++ })
	}
	if n < bounds {
		t.Fatalf("only %d oversized requests for %d bounds", n, bounds)
	}
}
