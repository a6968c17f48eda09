// Package flaws is the switch board of agentsso's reference
// implementations (the reference gateway, the reference agent): named
// flaws that each break exactly one behaviour, so that every scenario can
// be shown to fail when the behaviour it judges is broken.
package flaws

import (
	"fmt"
	"sort"
	"strings"
)

// Flaw is one switch. Scenarios names the catalogue scenarios that must
// fail when it is on: the negative controls it provides.
type Flaw struct {
	Name        string
	Description string
	Scenarios   []string
}

// Set is the flaws switched on; nil or empty is the conforming
// implementation.
type Set map[string]bool

// On reports whether the flaw name is switched on.
func (s Set) On(name string) bool { return s[name] }

// String lists the flaws that are on, sorted, comma-separated.
func (s Set) String() string {
	var on []string
	for n, v := range s {
		if v {
			on = append(on, n)
		}
	}
	sort.Strings(on)
	return strings.Join(on, ",")
}

// Catalog is an implementation's list of flaws.
type Catalog []Flaw

// Has reports whether name is a flaw of the catalogue.
func (c Catalog) Has(name string) bool {
	for _, f := range c {
		if f.Name == name {
			return true
		}
	}
	return false
}

// Names lists the catalogue's flaw names, in its order.
func (c Catalog) Names() []string {
	names := make([]string, len(c))
	for i, f := range c {
		names[i] = f.Name
	}
	return names
}

// Copy returns the catalogue with its Scenarios slices copied, for a
// caller that may change them.
func (c Catalog) Copy() []Flaw {
	out := make([]Flaw, len(c))
	for i, f := range c {
		f.Scenarios = append([]string(nil), f.Scenarios...)
		out[i] = f
	}
	return out
}

// Parse reads flaw names, each argument one name or a comma-separated
// list (blanks around names ignored), refusing a name that is not in the
// catalogue: the error names it and the known ones.
func (c Catalog) Parse(names ...string) (Set, error) {
	s := Set{}
	for _, list := range names {
		for n := range strings.SplitSeq(list, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if !c.Has(n) {
				return nil, fmt.Errorf("unknown flaw %q (known: %s)", n, strings.Join(c.Names(), ", "))
			}
			s[n] = true
		}
	}
	return s, nil
}
