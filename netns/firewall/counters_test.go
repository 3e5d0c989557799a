package firewall

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCounters(t *testing.T) {
	// testdata/counters.json is `nft -j list ruleset` from a node with the
	// labctl table and a table of someone else (whose rule has a
	// labctl-looking comment that must be ignored).
	data, err := os.ReadFile(filepath.Join("testdata", "counters.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCounters(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []Counter{
		{Rule: 0, Chain: "input", Packets: 3, Bytes: 252},
		{Rule: 1, Chain: "input", Packets: 0, Bytes: 0},
		{Rule: 2, Chain: "output", Packets: 7, Bytes: 588},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseCounters = %+v\nwant %+v", got, want)
	}
}

func TestParseCountersErrors(t *testing.T) {
	for _, c := range []struct {
		name, data, want string
	}{
		{"not json", "table inet labctl {", "nft json"},
		{"rule without counter", `{"nftables":[{"rule":{"family":"inet","table":"labctl","chain":"input","comment":"labctl:0","expr":[{"drop":null}]}}]}`, `rule "labctl:0" in chain input has no counter`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCounters([]byte(c.data))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
