// Package topologies reads a lab's topology file and turns it into a Plan:
// pure data, no kernel.
//
// Decode reads the YAML strictly (unknown fields and bad values are errors
// naming file:line:col and the field) into a Topology that mirrors the file
// (spec.go); Topology.Plan resolves defaults, automatic addresses from the
// pool (198.18.0.0/15 unless the file names another), interface and
// namespace names, and checks the whole: the result is a Plan (plan.go),
// which is everything package netns needs to build the lab and everything
// status needs to compare it with the kernel. Load does both for a file.
//
// The package also holds what is derived from a plan alone: the JSON
// schema of the file (labctl schema), graphs (labctl graph), what a plan
// reaches on the host (Topology.Reaches, for the remote API's policy), and
// tc's units (units.go). Examples ship embedded in the binary (examples/).
package topologies
