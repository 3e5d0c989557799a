package judge

import (
	"fmt"
	"strings"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// The helpers below read a variant's packet path (docs/packet-path.md)
// for experiments that use it as evidence (experiments.PacketJudged).
// Stages are named as the summary names them, "reader wakeup@n2"; these
// match by the name before the node.

func stageIs(label, name string) bool {
	s, _, _ := strings.Cut(label, "@")
	return s == name
}

// Gap is the time from stage from to stage to, when traced packets passed
// from one straight to the other; nil otherwise.
func Gap(pp *experimentv1.PacketPath, from, to string) *experimentv1.StageTime {
	for _, st := range pp.GetStages() {
		if stageIs(st.GetFrom(), from) && stageIs(st.GetTo(), to) {
			return st
		}
	}
	return nil
}

// Reached counts the traced packets that came to stage name from another
// stage (a packet's first stage is not counted: it came from nowhere).
func Reached(pp *experimentv1.PacketPath, name string) int64 {
	var n int64
	for _, st := range pp.GetStages() {
		if stageIs(st.GetTo(), name) {
			n += st.GetPackets()
		}
	}
	return n
}

// Dropped counts the drops with reason, and says where they were.
func Dropped(pp *experimentv1.PacketPath, reason string) (int64, string) {
	var n int64
	var where []string
	for _, d := range pp.GetDrops() {
		if d.GetReason() == reason {
			n += d.GetCount()
			where = append(where, fmt.Sprintf("%s on %s", d.GetLocation(), d.GetNode()))
		}
	}
	return n, strings.Join(where, ", ")
}

// Micros writes nanoseconds as microseconds, for verdicts.
func Micros(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1e3) }
