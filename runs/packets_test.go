package runs

import (
	"testing"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/internal/pktpath"
)

// TestPacketDetail: a sampled run attaches the landmarks unless the
// experiment's verdict reads more, or every stage is asked for; tracing
// every packet attaches every stage.
func TestPacketDetail(t *testing.T) {
	reg := all.Registry()
	for _, tc := range []struct {
		experiment string
		rate       float64
		all        bool
		want       pktpath.Detail
	}{
		{"rr", 0.01, false, pktpath.Landmarks},
		{"rr", 0.01, true, pktpath.Every},
		{"rr", 1, false, pktpath.Every},
		{"io-models", 0.01, false, pktpath.Every},     // reads sk_data_ready and the wakeup
		{"capture-order", 0.01, false, pktpath.Every}, // reads netif_receive_skb
		{"zerocopy", 0.01, false, pktpath.Landmarks},  // reads no packet path
	} {
		e, ok := reg.Get(tc.experiment)
		if !ok {
			t.Fatalf("no experiment %s", tc.experiment)
		}
		if got := packetDetail(e, tc.rate, tc.all); got != tc.want {
			t.Errorf("%s at %v (all %v): detail %d, want %d", tc.experiment, tc.rate, tc.all, got, tc.want)
		}
	}
}
