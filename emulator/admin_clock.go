package emulator

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/agentsso/agentsso/emulator/audit"
)

// ClockRequest changes a tenant's virtual clock. The steps run in this
// order: Reset, Skew, At (with Freeze), Freeze, Advance.
type ClockRequest struct {
	// Reset returns the clock to real time first.
	Reset bool
	// Freeze stops (true) or restarts (false) the clock where it stands,
	// or at At.
	Freeze *bool
	// At sets the clock to this time: frozen there if Freeze is true or
	// the clock is frozen, else running from there.
	At *time.Time
	// Skew sets a running clock to real time plus Skew.
	Skew *time.Duration
	// Advance moves the clock forward (or back, when negative).
	Advance time.Duration
}

type clockJSON struct {
	Reset   bool    `json:"reset"`
	Freeze  *bool   `json:"freeze"`
	At      *string `json:"at"`
	Skew    *string `json:"skew"`
	Advance string  `json:"advance"`
}

func (*ClockRequest) jsonFieldNames() []string { return jsonFields(&clockJSON{}) }

// UnmarshalJSON reads the JSON form: at is RFC 3339, skew and advance are
// duration strings such as "90s" or "-30s".
func (c *ClockRequest) UnmarshalJSON(b []byte) error {
	var j clockJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return jsonError(err, &j)
	}
	*c = ClockRequest{Reset: j.Reset, Freeze: j.Freeze}
	if j.At != nil {
		at, err := time.Parse(time.RFC3339Nano, *j.At)
		if err != nil {
			return badField("at", "%q is not an RFC 3339 time: want e.g. \"2030-01-01T00:00:00Z\"", *j.At)
		}
		c.At = &at
	}
	if j.Skew != nil {
		d, err := parseDuration("skew", *j.Skew)
		if err != nil {
			return err
		}
		c.Skew = &d
	}
	if j.Advance != "" {
		d, err := parseDuration("advance", j.Advance)
		if err != nil {
			return err
		}
		c.Advance = d
	}
	return nil
}

// ClockState returns a tenant's virtual clock.
func (s *Server) ClockState(tenant string) (ClockState, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return ClockState{}, err
	}
	return t.clock.State(), nil
}

// SetClock changes a tenant's virtual clock and returns its new state.
func (s *Server) SetClock(tenant string, r ClockRequest) (ClockState, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return ClockState{}, err
	}
	if r.At != nil && r.Skew != nil {
		return ClockState{}, badField("skew", "at and skew both set the time: send one of them")
	}
	if r.Skew != nil && r.Freeze != nil && *r.Freeze {
		return ClockState{}, badField("skew", "skew sets a running clock: to freeze at real time plus an offset, send at (or freeze, then advance)")
	}
	c := t.clock
	if r.Reset {
		c.Reset()
	}
	if r.Skew != nil {
		c.SetSkew(*r.Skew)
	}
	switch {
	case r.At != nil:
		if (r.Freeze != nil && *r.Freeze) || (r.Freeze == nil && c.State().Frozen) {
			c.Freeze(*r.At)
		} else {
			c.SetSkew(r.At.Sub(s.now()))
		}
	case r.Freeze != nil && *r.Freeze:
		if !c.State().Frozen {
			c.Freeze(time.Time{})
		}
	case r.Freeze != nil && !*r.Freeze:
		if c.State().Frozen {
			c.Unfreeze()
		}
	}
	if r.Advance != 0 {
		c.Advance(r.Advance)
	}
	st := c.State()
	s.adminEvent(t, audit.Event{Endpoint: "admin.clock", Extra: map[string]any{"frozen": st.Frozen, "offset": st.Offset}})
	return st, nil
}
