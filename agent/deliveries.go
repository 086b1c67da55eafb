package agent

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Delivery reporting defaults and bounds.
const (
	// DefaultDeliveryReportInterval is how late a delivery reaches the server at most, when it is up.
	DefaultDeliveryReportInterval = 2 * time.Second
	// DefaultMaxTrackedDeliveries bounds the (credential, caller) pairs the agent keeps until their
	// credential expires; past it, deliveries to new pairs are not reported (and logged once).
	DefaultMaxTrackedDeliveries = 100000
	// maxDeliveriesPerReport is the server's bound on one report (agentapi.MaxDeliveriesPerReport).
	maxDeliveriesPerReport = 1000
	// maxReportedPathLen is the server's bound on an executable path (agentapi.MaxDeliveryPathLen):
	// longer paths are reported truncated.
	maxReportedPathLen = 1024
	// reportedDigestLen is how much of the executable's SHA-256 (hex) is reported.
	reportedDigestLen = 16
	// reportTimeout bounds one report call.
	reportTimeout = 10 * time.Second
	// finalReportTimeout bounds the report sent when the agent stops.
	finalReportTimeout = 2 * time.Second
)

type deliveryKey struct {
	credential string // serial or JWT ID
	caller     workloadapi.Caller
}

// deliveryState is what the agent knows of one (credential, caller): cumulative, so a report sent
// again changes nothing on the server.
type deliveryState struct {
	first, last time.Time
	count       uint64
	sent        uint64    // count at the last report the server acknowledged
	expires     time.Time // the credential's: then no more deliveries can come
}

// deliveryLog collects deliveries until they are reported. It never blocks a workload for longer
// than a map update.
type deliveryLog struct {
	mu      sync.Mutex
	max     int
	m       map[deliveryKey]*deliveryState
	dropped bool // a delivery was not tracked since the log was last below max (logged once)
}

func newDeliveryLog(max int) *deliveryLog {
	return &deliveryLog{max: max, m: map[deliveryKey]*deliveryState{}}
}

// add counts one delivery; it returns true when it could not be tracked and this is the first such
// since the log had room (for the caller to log once).
func (l *deliveryLog) add(credential string, expires time.Time, c workloadapi.Caller, now time.Time) (firstDrop bool) {
	c.Path = reportablePath(c.Path)
	if len(c.SHA256) > reportedDigestLen {
		c.SHA256 = c.SHA256[:reportedDigestLen]
	}
	k := deliveryKey{credential, c}
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.m[k]
	if !ok {
		if len(l.m) >= l.max {
			first := !l.dropped
			l.dropped = true
			return first
		}
		st = &deliveryState{first: now, expires: expires}
		l.m[k] = st
	}
	st.count++
	if now.After(st.last) {
		st.last = now
	}
	return false
}

// reportablePath makes an executable path fit a report: valid UTF-8 (a protobuf string must be; a Linux
// path need not be), at most maxReportedPathLen bytes, cut on a character boundary.
func reportablePath(p string) string {
	p = strings.ToValidUTF8(p, "\uFFFD")
	if len(p) <= maxReportedPathLen {
		return p
	}
	cut := maxReportedPathLen
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut]
}

// deliveryReport is a snapshot of reported states, to acknowledge once the server has them.
type deliveryReport struct {
	keys   []deliveryKey
	counts []uint64
	req    *agentv1.ReportDeliveriesRequest
}

// pending returns up to limit deliveries not yet acknowledged (nil when there are none), and forgets
// those whose credential expired and that the server has.
func (l *deliveryLog) pending(limit int, now time.Time) *deliveryReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r *deliveryReport
	for k, st := range l.m {
		if st.count == st.sent {
			if !now.Before(st.expires) {
				delete(l.m, k)
			}
			continue
		}
		if r == nil {
			r = &deliveryReport{req: &agentv1.ReportDeliveriesRequest{}}
		}
		if len(r.keys) == limit {
			break
		}
		r.keys = append(r.keys, k)
		r.counts = append(r.counts, st.count)
		r.req.Deliveries = append(r.req.Deliveries, &agentv1.Delivery{CredentialId: k.credential,
			Caller: &agentv1.Caller{Uid: k.caller.UID, Gid: k.caller.GID, Pid: k.caller.PID, StartTime: k.caller.StartTime,
				Path: k.caller.Path, Sha256Prefix: k.caller.SHA256},
			FirstDelivered: st.first.UnixNano(), LastDelivered: st.last.UnixNano(), Count: st.count})
	}
	if len(l.m) < l.max {
		l.dropped = false
	}
	return r
}

// acked records that the server has r.
func (l *deliveryLog) acked(r *deliveryReport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, k := range r.keys {
		if st, ok := l.m[k]; ok && st.sent < r.counts[i] {
			st.sent = r.counts[i]
		}
	}
}

// Delivered implements workloadapi.Source: it counts the hand-over of each SVID to caller, for the
// next report.
func (a *Agent) Delivered(c workloadapi.Caller, svids []workloadapi.X509SVID) {
	now := a.cfg.Clock()
	for _, s := range svids {
		a.noteDelivery(s.Serial, s.ExpiresAt, c, now)
	}
}

func (a *Agent) noteDelivery(credential string, expires time.Time, c workloadapi.Caller, now time.Time) {
	if a.deliveries.add(credential, expires, c, now) {
		a.log.Warn("too many deliveries waiting to be reported; deliveries to new callers are not recorded until some are",
			"max_tracked", a.cfg.MaxTrackedDeliveries)
	}
}

// reportLoop sends the deliveries to the server every DeliveryReportInterval, in reports of at most
// maxDeliveriesPerReport; a failed report is sent again (the counts are cumulative: nothing is
// counted twice) after the interval or a backoff, whichever is longer.
func (a *Agent) reportLoop(ctx context.Context) {
	attempt := 0
	for {
		wait := a.cfg.DeliveryReportInterval
		if attempt > 0 {
			wait = max(wait, backoff(attempt))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			// Stopping: one last try, briefly, so what was delivered since the last report is not lost.
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalReportTimeout)
			defer cancel()
			if err := a.report(final); err != nil {
				a.log.Warn("could not report the last deliveries before stopping", "error", err)
			}
			return
		}
		if err := a.report(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if isRevocation(err) {
				a.revoke(err)
				return
			}
			if attempt == 0 {
				a.log.Warn("reporting deliveries failed; will retry", "error", err)
			}
			attempt++
			continue
		}
		attempt = 0
	}
}

// report sends every pending delivery, in as many reports as needed.
func (a *Agent) report(ctx context.Context) error {
	for {
		r := a.deliveries.pending(maxDeliveriesPerReport, a.cfg.Clock())
		if r == nil {
			return nil
		}
		callCtx, cancel := context.WithTimeout(ctx, reportTimeout)
		_, err := a.cfg.Client.ReportDeliveries(callCtx, r.req)
		cancel()
		if status.Code(err) == codes.InvalidArgument {
			// Sending it again would fail again: drop it, loudly.
			a.log.Error("the server refused a delivery report; dropping it", "deliveries", len(r.keys), "error", err)
		} else if err != nil {
			return err
		}
		a.deliveries.acked(r)
		if len(r.keys) < maxDeliveriesPerReport {
			return nil
		}
	}
}
