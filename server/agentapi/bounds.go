package agentapi

import (
	"github.com/signet-id/signet/attestor/jointoken"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/server/issuer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxEntryIDLen bounds entry IDs in requests (the server assigns 32 hex digits).
const maxEntryIDLen = 64

// fieldBound bounds one field of a request: n is the most bytes of a string or bytes field, or the
// most values of a repeated field; each is the most bytes of one value of a repeated string field.
type fieldBound struct{ n, each int }

// requestBounds is the table of bounds of the agent API: every string, bytes and repeated field of
// every request message (nested messages included), by its full protobuf name. A field missing here is
// refused (TestRequestBoundsCoverEveryField keeps the table complete).
var requestBounds = map[protoreflect.FullName]fieldBound{
	"signet.agent.v1.AttestAgentRequest.join_token":          {n: jointoken.MaxTokenLen},
	"signet.agent.v1.AttestAgentRequest.attestation_type":    {n: nodeattest.MaxTypeLen},
	"signet.agent.v1.AttestAgentRequest.attestation_payload": {n: nodeattest.MaxPayload},
	"signet.agent.v1.AttestAgentRequest.csr":                 {n: issuer.MaxCSRSize},
	"signet.agent.v1.RenewAgentRequest.csr":                  {n: issuer.MaxCSRSize},
	"signet.agent.v1.SignX509SVIDsRequest.requests":          {n: issuer.MaxCSRBatch},
	"signet.agent.v1.X509SVIDRequest.entry_id":               {n: maxEntryIDLen},
	"signet.agent.v1.X509SVIDRequest.csr":                    {n: issuer.MaxCSRSize},
	"signet.agent.v1.SignJWTSVIDRequest.entry_id":            {n: maxEntryIDLen},
	"signet.agent.v1.SignJWTSVIDRequest.audience":            {n: issuer.MaxAudiences, each: issuer.MaxAudienceLen},
	"signet.agent.v1.ReportDeliveriesRequest.deliveries":     {n: MaxDeliveriesPerReport},
	"signet.agent.v1.Delivery.credential_id":                 {n: MaxDeliveryCredentialIDLen},
	"signet.agent.v1.Caller.path":                            {n: MaxDeliveryPathLen},
	"signet.agent.v1.Caller.sha256_prefix":                   {n: MaxDeliverySHA256PrefixLen},
}

// checkRequest refuses a request with a field beyond its bound in requestBounds, naming the field (with
// its path, e.g. "requests[3].entry_id"). Every handler calls it first, before anything is logged.
func checkRequest(m proto.Message) error { return apierr.CheckRequest(m, RequestBound) }

// RequestBound is the bound of the agent API's request field name: the most bytes of a string or bytes
// field (n) or values of a repeated one, and the most bytes of each value of a repeated string field.
func RequestBound(name protoreflect.FullName) (n, each int, ok bool) {
	b, ok := requestBounds[name]
	return b.n, b.each, ok
}
