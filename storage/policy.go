package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// The entry policy lives in the replicated state, so every server decides an admin write by the same
// rules (docs/governance.md). The state holds the rules as text with a revision; the server compiles
// them (package policy) and this package never evaluates them. A write decided under the policy names
// the revision it was decided under (a policy-checked command wrapping it) and the state machine refuses
// it if the policy has changed since: a policy change racing an admin write cannot slip past it.

// MaxPolicyRules bounds the rules of the entry policy; each expression is bounded by the policy package.
const MaxPolicyRules = 256

// PolicyRule is one entry policy rule as stored: text, compiled by each server (package policy).
type PolicyRule struct {
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
	DenyUnless   string `json:"deny_unless,omitempty"`
	ApprovalWhen string `json:"approval_when,omitempty"`
}

// PolicyLimits are the cluster's limits on entries; a zero field leaves each server's configured value
// in force. The server validates them; this package stores them.
type PolicyLimits struct {
	MinX509SVIDTTL  time.Duration `json:"min_x509_svid_ttl,omitempty"`
	MinJWTSVIDTTL   time.Duration `json:"min_jwt_svid_ttl,omitempty"`
	DefaultEntryTTL time.Duration `json:"default_entry_ttl,omitempty"`
}

// Policy is the cluster's entry policy. Revision 0 means no policy was ever set: every request is
// allowed. An empty set of rules set on purpose has a revision and allows everything too.
type Policy struct {
	Revision uint64       `json:"revision"`
	Rules    []PolicyRule `json:"rules"`
	Limits   PolicyLimits `json:"limits"`
	// SHA256 is the digest of the rules and limits (hex), shown by `signet policy show` and in the
	// audit log.
	SHA256 string    `json:"sha256"`
	SetBy  string    `json:"set_by"`
	SetAt  time.Time `json:"set_at"`
	Reason string    `json:"reason,omitempty"`
}

var keyPolicy = []byte("policy") // meta: the entry policy, JSON of Policy

// PolicyDigest is the digest of a policy's rules and limits as the state records it (hex of SHA-256 over
// the limits in nanoseconds, then each rule's fields, length-prefixed, in order): one policy has one
// digest on every node and build.
func PolicyDigest(rules []PolicyRule, l PolicyLimits) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d,%d,%d;", int64(l.MinX509SVIDTTL), int64(l.MinJWTSVIDTTL), int64(l.DefaultEntryTTL))
	for _, r := range rules {
		for _, f := range []string{r.Name, r.Description, r.DenyUnless, r.ApprovalWhen} {
			fmt.Fprintf(h, "%d:%s", len(f), f)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

type policySetCmd struct {
	Rules        []PolicyRule
	Limits       PolicyLimits
	PrevRevision uint64
	Meta         auditMeta
}

func (c policySetCmd) wire() *raftv1.PolicySet {
	m := &raftv1.PolicySet{PrevRevision: c.PrevRevision, Meta: metaToWire(c.Meta), MinX509SvidTtlNs: int64(c.Limits.MinX509SVIDTTL),
		MinJwtSvidTtlNs: int64(c.Limits.MinJWTSVIDTTL), DefaultEntryTtlNs: int64(c.Limits.DefaultEntryTTL)}
	for _, r := range c.Rules {
		m.Rules = append(m.Rules, &raftv1.PolicyRule{Name: r.Name, Description: r.Description, DenyUnless: r.DenyUnless, ApprovalWhen: r.ApprovalWhen})
	}
	return m
}

func policySetFromWire(m *raftv1.PolicySet) policySetCmd {
	c := policySetCmd{PrevRevision: m.GetPrevRevision(), Meta: metaFromWire(m.GetMeta()), Limits: PolicyLimits{
		MinX509SVIDTTL: time.Duration(m.GetMinX509SvidTtlNs()), MinJWTSVIDTTL: time.Duration(m.GetMinJwtSvidTtlNs()),
		DefaultEntryTTL: time.Duration(m.GetDefaultEntryTtlNs())}}
	for _, r := range m.GetRules() {
		c.Rules = append(c.Rules, PolicyRule{Name: r.GetName(), Description: r.GetDescription(), DenyUnless: r.GetDenyUnless(), ApprovalWhen: r.GetApprovalWhen()})
	}
	return c
}

// readPolicy returns the stored policy; a zero Policy when none was ever set.
func readPolicy(tx *bolt.Tx) (Policy, error) {
	var p Policy
	v := tx.Bucket(bucketMeta).Get(keyPolicy)
	if v == nil {
		return p, nil
	}
	err := decodeStored("policy", string(keyPolicy), v, &p)
	return p, err
}

func applyPolicySet(tx *bolt.Tx, c policySetCmd) (applied, error) {
	cur, err := readPolicy(tx)
	if err != nil {
		return applied{}, err
	}
	if c.PrevRevision != cur.Revision {
		return applied{}, fmt.Errorf("entry policy: %w: it is at revision %d, the change was based on revision %d: read it again (signet policy show) and retry",
			ErrConflict, cur.Revision, c.PrevRevision)
	}
	if len(c.Rules) > MaxPolicyRules {
		return applied{}, fmt.Errorf("entry policy: %w: %d rules, at most %d", ErrInvalid, len(c.Rules), MaxPolicyRules)
	}
	for i, r := range c.Rules {
		if r.Name == "" || (r.DenyUnless == "") == (r.ApprovalWhen == "") {
			return applied{}, fmt.Errorf("entry policy: %w: rule #%d %q needs a name and exactly one of deny_unless and approval_when", ErrInvalid, i+1, r.Name)
		}
	}
	if l := c.Limits; l.MinX509SVIDTTL < 0 || l.MinJWTSVIDTTL < 0 || l.DefaultEntryTTL < 0 {
		return applied{}, fmt.Errorf("entry policy: %w: negative limits %+v", ErrInvalid, l)
	}
	next := Policy{Revision: cur.Revision + 1, Rules: c.Rules, Limits: c.Limits, SHA256: PolicyDigest(c.Rules, c.Limits),
		SetBy: c.Meta.Actor, SetAt: c.Meta.Time.UTC(), Reason: c.Meta.Reason}
	if next.Rules == nil {
		next.Rules = []PolicyRule{}
	}
	mustPut(tx.Bucket(bucketMeta), keyPolicy, mustJSON(&next))
	var before any
	if cur.Revision != 0 {
		before = &cur
	}
	appendAudit(tx, c.Meta.record("policy.set", "policy"), before, &next)
	return applied{resp: next}, nil
}

// policyGoverned reports whether commands of type t are decided under the entry policy, so that one
// proposed without the policy revision it was checked against counts as checked against no policy.
func policyGoverned(t commandType) bool {
	switch t {
	case cmdEntryCreate, cmdEntryBatch, cmdEntryUpdate, cmdOwnerOffboard, cmdKeyRevoke, cmdKeyRevokeIntermediate, cmdEntryCreateFederated, cmdEntryBatchFederated, cmdEntryUpdateFederated:
		return true
	}
	return false
}

// checkPolicyRevision refuses a command of type t decided under policy revision rev (0: no policy)
// when the state's policy is now another one.
func checkPolicyRevision(tx *bolt.Tx, t commandType, rev uint64) error {
	cur, err := readPolicy(tx)
	if err != nil {
		return err
	}
	if cur.Revision != rev {
		return fmt.Errorf("%s: %w: the entry policy changed (revision %d now) since this request was checked against revision %d: send it again",
			t, ErrConflict, cur.Revision, rev)
	}
	return nil
}

// policyCheckedCmd is a governed command (its type byte and message) and the policy revision it was
// decided under.
type policyCheckedCmd struct {
	PolicyRevision uint64
	Command        []byte
}

func (c policyCheckedCmd) wire() *raftv1.PolicyChecked {
	return &raftv1.PolicyChecked{PolicyRevision: c.PolicyRevision, Command: c.Command}
}

func policyCheckedFromWire(m *raftv1.PolicyChecked) policyCheckedCmd {
	return policyCheckedCmd{PolicyRevision: m.GetPolicyRevision(), Command: m.GetCommand()}
}

// applyPolicyChecked applies the command a policy-checked command wraps, if the policy is still the one
// it was decided under.
func applyPolicyChecked(tx *bolt.Tx, index uint64, c policyCheckedCmd) (applied, error) {
	if len(c.Command) == 0 || !policyGoverned(commandType(c.Command[0])) {
		return applied{}, fmt.Errorf("%w: a policy-checked command must wrap an entry create, batch create, update, offboarding or key revocation", ErrInvalid)
	}
	t := commandType(c.Command[0])
	if err := checkPolicyRevision(tx, t, c.PolicyRevision); err != nil {
		return applied{}, err
	}
	return dispatch(tx, index, t, c.Command[1:], true)
}

// policyRevisionKey carries, in a context, the policy revision a write was decided under.
type policyRevisionKey struct{}

// WithPolicyRevision records in ctx that the governed writes made with it (entry create, batch create,
// update, checked offboarding) were decided under the entry policy of revision rev: the state machine
// refuses them (ErrConflict) if the policy has changed since. Without it, such a write counts as decided
// under no policy (revision 0), and is refused once a policy has been set.
func WithPolicyRevision(ctx context.Context, rev uint64) context.Context {
	return context.WithValue(ctx, policyRevisionKey{}, rev)
}

// wrapPolicyChecked wraps cmd in a policy-checked command when ctx names a policy revision and cmd is
// governed by the policy; otherwise it returns cmd as it is (revision 0: no wrapper, no new command
// type, so a cluster that never set a policy proposes exactly what it did before).
func wrapPolicyChecked(ctx context.Context, cmd []byte) ([]byte, error) {
	rev, _ := ctx.Value(policyRevisionKey{}).(uint64)
	if rev == 0 || len(cmd) == 0 || !policyGoverned(commandType(cmd[0])) {
		return cmd, nil
	}
	return encodeCommand(cmdPolicyChecked, policyCheckedCmd{PolicyRevision: rev, Command: cmd}.wire())
}

// resultType is the type of command whose result a forwarded cmd returns: the wrapped one's, for a
// policy-checked command.
func resultType(cmd []byte) commandType {
	t := commandType(cmd[0])
	if t != cmdPolicyChecked {
		return t
	}
	var m raftv1.PolicyChecked
	if err := proto.Unmarshal(cmd[1:], &m); err != nil || len(m.GetCommand()) == 0 {
		return t
	}
	return commandType(m.GetCommand()[0])
}

// Policy returns the cluster's entry policy as this node has applied it (Revision 0: none set).
func (s *Store) Policy() (Policy, error) {
	var p Policy
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		p, err = readPolicy(tx)
		return err
	})
	if err != nil {
		return Policy{}, fmt.Errorf("storage: read the entry policy: %w", err)
	}
	return p, nil
}

// SetPolicy replaces the entry policy with rules and limits, if it is still at revision prev (else
// ErrConflict): the caller compiles and validates them. prev 0 sets the first policy of a cluster, which
// is how a server's configured policy seeds it. The stored policy, with its new revision, is returned.
func (s *Store) SetPolicy(ctx context.Context, rules []PolicyRule, limits PolicyLimits, prev uint64, reason string) (Policy, error) {
	if len(rules) > MaxPolicyRules {
		return Policy{}, fmt.Errorf("storage: set the entry policy: %w: %d rules, at most %d", ErrInvalid, len(rules), MaxPolicyRules)
	}
	resp, err := s.propose(ctx, cmdPolicySet, policySetCmd{Rules: rules, Limits: limits, PrevRevision: prev, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return Policy{}, fmt.Errorf("storage: set the entry policy: %w", err)
	}
	return resp.(Policy), nil
}
