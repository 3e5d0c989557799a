package runs

import (
	"testing"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/internal/pktpath"
)

// TestPacketStages: a sampled run attaches the landmarks unless the
// experiment's verdict reads more, or every stage is asked for; tracing
// every packet attaches every stage. Netfilter's hooks attach with every
// packet, in a lab with rules, or when the verdict reads them.
func TestPacketStages(t *testing.T) {
	reg := all.Registry()
	for _, tc := range []struct {
		experiment string
		rate       float64
		all, rules bool
		want       pktpath.Detail
		netfilter  bool
	}{
		{"rr", 0.01, false, false, pktpath.Landmarks, false},
		{"rr", 0.01, false, true, pktpath.Landmarks, true},
		{"rr", 0.01, true, false, pktpath.Every, false},
		{"rr", 1, false, false, pktpath.Every, true},
		{"io-models", 0.01, false, false, pktpath.Every, false},    // reads sk_data_ready and the wakeup
		{"capture-order", 0.01, false, false, pktpath.Every, true}, // reads netif_receive_skb and LOCAL_IN (rules=run)
		{"zerocopy", 0.01, false, false, pktpath.Landmarks, false}, // reads no packet path
	} {
		e, ok := reg.Get(tc.experiment)
		if !ok {
			t.Fatalf("no experiment %s", tc.experiment)
		}
		if got, nf := PacketStages(e, tc.rate, tc.all, tc.rules); got != tc.want || nf != tc.netfilter {
			t.Errorf("%s at %v (all %v, rules %v): %d, netfilter %v; want %d, %v", tc.experiment, tc.rate, tc.all, tc.rules, got, nf, tc.want, tc.netfilter)
		}
	}
}
