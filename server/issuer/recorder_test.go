package issuer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/storage"
)

// countingAppender is a test adapter around the real store: it forwards every batch to it and counts
// the Raft commands (ProposeLedger calls) and the largest batch.
type countingAppender struct {
	st       *storage.Store
	calls    atomic.Int64
	records  atomic.Int64
	maxBatch atomic.Int64
}

func (a *countingAppender) ProposeLedger(recs []storage.Issuance) *storage.LedgerProposal {
	a.calls.Add(1)
	a.records.Add(int64(len(recs)))
	for {
		m := a.maxBatch.Load()
		if int64(len(recs)) <= m || a.maxBatch.CompareAndSwap(m, int64(len(recs))) {
			break
		}
	}
	return a.st.ProposeLedger(recs)
}

func testIssuance(prefix string, i int) storage.Issuance {
	now := time.Now().UTC()
	return storage.Issuance{ID: fmt.Sprintf("%s%08x", prefix, i), Kind: storage.KindX509SVID,
		SPIFFEID: fmt.Sprintf("spiffe://example.org/w/%d", i), EntryID: fmt.Sprintf("entry-%d", i%7),
		Owner: fmt.Sprintf("owner-%d", i%3), Selectors: []string{"unix:uid:1000"}, IssuedAt: now,
		ExpiresAt: now.Add(time.Hour), Node: "node-test", Agent: agentA.String()}
}

// recordConcurrently makes n goroutines call Record at once (one record each) and returns the records.
func recordConcurrently(tb testing.TB, rec *Recorder, prefix string, n int) []storage.Issuance {
	tb.Helper()
	ctx := testCtx(tb)
	recs := make([]storage.Issuance, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = testIssuance(prefix, i)
		wg.Go(func() {
			<-start
			errs[i] = rec.Record(ctx, recs[i])
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("Record %d: %v", i, err)
		}
	}
	return recs
}

func TestRecorderConcurrentRecordsAreDurable(t *testing.T) {
	st := openStore(t)
	app := &countingAppender{st: st}
	rec, err := NewRecorder(RecorderConfig{Appender: app})
	if err != nil {
		t.Fatal(err)
	}
	startRecorder(t, rec)

	const n = 200
	recs := recordConcurrently(t, rec, "aa", n)
	// Record returned nil: each record must be readable at once, no waiting.
	for _, want := range recs {
		got, err := st.LookupIssuance(want.ID)
		if err != nil {
			t.Fatalf("LookupIssuance(%s) after Record returned nil: %v", want.ID, err)
		}
		if got.Owner != want.Owner || got.EntryID != want.EntryID || got.SPIFFEID != want.SPIFFEID || got.Agent != want.Agent {
			t.Fatalf("record %s = %+v, want %+v", want.ID, got, want)
		}
	}
	if got := app.records.Load(); got != n {
		t.Fatalf("appender saw %d records, want exactly %d (none lost or duplicated)", got, n)
	}
	// Group commit: the 200 concurrent records shared Raft commands.
	if calls := app.calls.Load(); calls >= n {
		t.Fatalf("%d ProposeLedger calls for %d concurrent records: no batching", calls, n)
	} else {
		t.Logf("%d records committed in %d Raft commands", n, calls)
	}
}

func TestRecorderMaxBatch(t *testing.T) {
	st := openStore(t)
	app := &countingAppender{st: st}
	rec, err := NewRecorder(RecorderConfig{Appender: app, MaxBatch: 8, InFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	startRecorder(t, rec)
	recordConcurrently(t, rec, "bb", 100)
	if m := app.maxBatch.Load(); m > 8 {
		t.Fatalf("a batch of %d records with MaxBatch 8", m)
	}
	if calls := app.calls.Load(); calls < 100/8 {
		t.Fatalf("%d calls cannot carry 100 records in batches of at most 8", calls)
	}
	if got := app.records.Load(); got != 100 {
		t.Fatalf("appender saw %d records, want 100", got)
	}
}

func TestRecorderMultiRecordCall(t *testing.T) {
	st := openStore(t)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	startRecorder(t, rec)
	recs := []storage.Issuance{testIssuance("cc", 1), testIssuance("cc", 2), testIssuance("cc", 3)}
	if err := rec.Record(testCtx(t), recs...); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := st.LookupIssuance(r.ID); err != nil {
			t.Fatalf("record %s: %v", r.ID, err)
		}
	}
}

func TestRecorderStopped(t *testing.T) {
	st := openStore(t)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	stop := startRecorder(t, rec)
	if err := rec.Record(testCtx(t), testIssuance("dd", 0)); err != nil {
		t.Fatalf("Record while running: %v", err)
	}
	stop()

	for i := range 5 { // Record's selects are random: try a few times
		done := make(chan error, 1)
		go func() { done <- rec.Record(context.Background(), testIssuance("dd", i+1)) }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrRecorderStopped) {
				t.Fatalf("Record after Run returned: got %v, want ErrRecorderStopped", err)
			}
		case <-time.After(testDeadline):
			t.Fatalf("Record after Run returned blocked for %s", testDeadline)
		}
	}
}

func TestRecorderCancelledContext(t *testing.T) {
	st := openStore(t)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	t.Run("not running", func(t *testing.T) {
		if err := rec.Record(ctx, testIssuance("ee", 0)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Record with cancelled ctx: got %v, want context.Canceled", err)
		}
	})
	t.Run("running", func(t *testing.T) {
		startRecorder(t, rec)
		for i := range 20 {
			if err := rec.Record(ctx, testIssuance("ef", i)); !errors.Is(err, context.Canceled) {
				t.Fatalf("Record %d with cancelled ctx: got %v, want context.Canceled", i, err)
			}
		}
	})
}

func TestRecorderCommitErrorReachesCallers(t *testing.T) {
	st := openStore(t)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	startRecorder(t, rec)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if err := rec.Record(testCtx(t), testIssuance("ff", i)); !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Record on a closed store: got %v, want storage.ErrClosed", err)
			}
		})
	}
	wg.Wait()
}

func TestNewRecorderRequiresAppender(t *testing.T) {
	if _, err := NewRecorder(RecorderConfig{}); err == nil {
		t.Fatal("NewRecorder without Appender succeeded")
	}
}
