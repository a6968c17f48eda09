package flaws

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	c := Catalog{{Name: "a"}, {Name: "b", Scenarios: []string{"s"}}}
	s, err := c.Parse("a, b", "", " a ")
	if err != nil || !s.On("a") || !s.On("b") || s.String() != "a,b" {
		t.Fatalf("Parse: %v %v", s, err)
	}
	if _, err := c.Parse("a,nope"); err == nil || !strings.Contains(err.Error(), `unknown flaw "nope" (known: a, b)`) {
		t.Fatalf("unknown flaw: %v", err)
	}
	if s, err := c.Parse(); err != nil || len(s) != 0 || s.On("a") {
		t.Fatalf("none: %v %v", s, err)
	}
	cp := c.Copy()
	cp[1].Scenarios[0] = "changed"
	if c[1].Scenarios[0] != "s" {
		t.Error("Copy shares the Scenarios slices")
	}
}
