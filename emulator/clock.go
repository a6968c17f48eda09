package emulator

import (
	"sync/atomic"
	"time"
)

// Clock is a tenant's virtual clock. It governs the emulator's own
// decisions: the iat/exp of tokens it issues through grants, whether codes,
// refresh tokens, client assertions and presented tokens have expired. By
// default it follows real time. A test can freeze it, advance it or give it
// a skew, and so play an IdP whose clock is off, or make a refresh token
// expire without waiting.
//
// Tokens minted through the admin API for an external target carry real
// time, shifted only by the offset the request names.
type Clock struct {
	st   atomic.Pointer[clockState]
	real func() time.Time
}

type clockState struct {
	frozen bool
	at     time.Time     // when frozen
	offset time.Duration // added to real time when not frozen
}

// ClockState is the JSON view of a clock, as the admin API shows it.
type ClockState struct {
	Now    time.Time `json:"now"`
	Frozen bool      `json:"frozen"`
	Offset string    `json:"offset"`
}

// NewClock returns a clock that follows real time.
func NewClock(real func() time.Time) *Clock {
	if real == nil {
		real = time.Now
	}
	c := &Clock{real: real}
	c.st.Store(&clockState{})
	return c
}

// Now is the tenant's current time.
func (c *Clock) Now() time.Time {
	s := c.st.Load()
	if s.frozen {
		return s.at
	}
	if s.offset == 0 {
		return c.real()
	}
	return c.real().Add(s.offset)
}

// Freeze stops the clock at t (the current time if t is zero).
func (c *Clock) Freeze(t time.Time) {
	if t.IsZero() {
		t = c.Now()
	}
	c.st.Store(&clockState{frozen: true, at: t})
}

// Unfreeze lets the clock run again from where it stands.
func (c *Clock) Unfreeze() {
	now := c.Now()
	c.st.Store(&clockState{offset: now.Sub(c.real())})
}

// Advance moves the clock forward by d (backward if d < 0), frozen or not.
func (c *Clock) Advance(d time.Duration) {
	for {
		old := c.st.Load()
		n := *old
		if n.frozen {
			n.at = n.at.Add(d)
		} else {
			n.offset += d
		}
		if c.st.CompareAndSwap(old, &n) {
			return
		}
	}
}

// SetSkew sets the running clock to real time plus d.
func (c *Clock) SetSkew(d time.Duration) { c.st.Store(&clockState{offset: d}) }

// Reset returns the clock to real time.
func (c *Clock) Reset() { c.st.Store(&clockState{}) }

// State reports the clock for the admin API.
func (c *Clock) State() ClockState {
	s := c.st.Load()
	off := s.offset
	if s.frozen {
		off = s.at.Sub(c.real())
	}
	return ClockState{Now: c.Now(), Frozen: s.frozen, Offset: off.Round(time.Millisecond).String()}
}
