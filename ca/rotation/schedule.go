package rotation

import (
	"fmt"
	"time"
)

// Defaults and bounds of a Schedule. The zero Schedule means these defaults.
const (
	// DefaultTTL is the life of each key when Schedule.TTL is zero (the ca package's default root life).
	DefaultTTL = 365 * 24 * time.Hour
	// DefaultMaxSVIDTTL is the longest SVID TTL signed under a key when Schedule.MaxSVIDTTL is zero and
	// TTL/8 is longer: the admin API's bound on an entry's TTL.
	DefaultMaxSVIDTTL = 30 * 24 * time.Hour
	// MinTTL is the shortest key life a schedule accepts (the ca key store's minimum root life is 1m;
	// a key must live long enough to be prepared, active and old).
	MinTTL = 2 * time.Minute
)

// Schedule is when a node's keys are prepared, activated and pruned. For a key created at c with
// NotAfter e = c + TTL:
//
//	c                      prepared: in the bundle, signs nothing
//	c + PrepareBefore      active: signs every SVID (a freshly started node's first key is active at c)
//	h = c + (e - c)/2      its successor, prepared at h - PrepareBefore, becomes active; this key is old
//	e                      pruned: out of the bundle, key files deleted (every SVID it signed expired,
//	                       since no SVID outlives its CA)
//
// While a key is active its remaining life is at least TTL/2, so every SVID up to MaxSVIDTTL (at most
// TTL/2) can be signed, and a successor is in the bundle PrepareBefore (at least MaxSVIDTTL) before it
// signs: workloads renew their SVIDs (and receive the bundle) at half their TTL, so every workload
// trusts the successor before it meets an SVID the successor signed.
type Schedule struct {
	// TTL is the life of each key (config ca.ttl); zero means DefaultTTL.
	TTL time.Duration
	// MaxSVIDTTL is the longest SVID TTL signed under a key (config ca.rotation.max_svid_ttl); zero
	// means min(DefaultMaxSVIDTTL, TTL/8 in whole seconds).
	MaxSVIDTTL time.Duration
	// PrepareBefore is how long a successor is in the bundle before it becomes active (config
	// ca.rotation.prepare_before), at least MaxSVIDTTL and less than TTL/2; zero means MaxSVIDTTL.
	PrepareBefore time.Duration
}

// WithDefaults returns s with its zero fields set to their defaults.
func (s Schedule) WithDefaults() Schedule {
	if s.TTL == 0 {
		s.TTL = DefaultTTL
	}
	if s.MaxSVIDTTL == 0 {
		s.MaxSVIDTTL = min(DefaultMaxSVIDTTL, (s.TTL / 8).Truncate(time.Second)) // SVID TTLs are whole seconds
	}
	if s.PrepareBefore == 0 {
		s.PrepareBefore = s.MaxSVIDTTL
	}
	return s
}

// Validate checks a schedule (after WithDefaults). Errors name the configuration key and the fix.
func (s Schedule) Validate() error {
	switch {
	case s.TTL < MinTTL:
		return fmt.Errorf("ca.ttl: %s: at least %s", s.TTL, MinTTL)
	case s.MaxSVIDTTL < time.Second:
		return fmt.Errorf("ca.rotation.max_svid_ttl: %s: at least 1s", s.MaxSVIDTTL)
	case s.PrepareBefore < s.MaxSVIDTTL:
		return fmt.Errorf("ca.rotation.prepare_before: %s is shorter than the longest SVID TTL %s (ca.rotation.max_svid_ttl): a next key must be in the bundle at least that long before it signs; raise ca.rotation.prepare_before or lower ca.rotation.max_svid_ttl",
			s.PrepareBefore, s.MaxSVIDTTL)
	case s.PrepareBefore >= s.TTL/2:
		return fmt.Errorf("ca.rotation.prepare_before: %s must be shorter than half of ca.ttl (%s), when a key's successor becomes active; raise ca.ttl or lower ca.rotation.prepare_before",
			s.PrepareBefore, s.TTL/2)
	}
	return nil
}

// activateSuccessorAt is when the successor of a key created at created with NotAfter notAfter becomes
// active: at the key's half life.
func activateSuccessorAt(created, notAfter time.Time) time.Time {
	return created.Add(notAfter.Sub(created) / 2)
}
