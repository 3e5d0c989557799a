package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/labctl/labctl/netns"
	"github.com/labctl/labctl/topologies"
)

// The host checks run before anything is created and point into the file:
// paths.yaml names host interfaces that this test makes sure do not exist.
func TestPlanRefusesMissingHostNIC(t *testing.T) {
	plan, err := loadPlan("paths")
	if err != nil {
		t.Fatal(err)
	}
	for i := range plan.Links {
		if plan.Links[i].Host != "" {
			plan.Links[i].Host = "lt-absent" + plan.Links[i].Host[len(plan.Links[i].Host)-1:]
		}
	}
	err = netns.CheckHost(plan)
	if !topologies.IsInvalid(err) {
		t.Fatalf("CheckHost: %v; want a topology error", err)
	}
	lines := strings.Split(err.Error(), "\n")
	located := regexp.MustCompile(`^topologies/examples/paths\.yaml:\d+:\d+: .*host interface lt-absent. does not exist`)
	if len(lines) != 2 || !located.MatchString(lines[0]) || !located.MatchString(lines[1]) {
		t.Errorf("errors do not name file:line:col and the missing interface:\n%s", err)
	}
}
