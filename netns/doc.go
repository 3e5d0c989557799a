// Package netns makes a topologies.Plan real in the kernel, takes it away
// exactly, and observes it.
//
// A lab is a set of named network namespaces (one per node, plus a fabric
// namespace holding the lab's bridges), kept in /run/netns as iproute2
// keeps them, so `ip netns exec labctl-<lab>.<node> ...` works. Apply builds
// or reconciles a lab as a transaction recorded in a Journal; Destroy takes
// it away, with or without the journal; Observe compares the kernel with
// the plan for `status`; CheckHost looks for problems before anything is
// touched.
//
// Everything labctl creates carries a marker: the namespace name
// labctl-<lab>.<node>, and, since a name says nothing of who made it (and
// labs of earlier versions used labctl-<lab>-<node>, which two labs could
// share), the ifalias of lo in each namespace (labctl:<lab>:<node>,
// labctl:<lab>:fabric), which decides; interfaces get the ifalias
// labctl:<lab>, and a host interface
// moved into a node records in its ifalias how to give it back. labctl only
// deletes what carries its marker.
//
// Namespaces and threads: a netlink handle or socket belongs to the
// namespace it was made in and can then be used from any goroutine, so each
// namespace is opened once with one handle. Work that needs a thread inside
// a namespace (sysctls, starting processes) runs in Do, on a locked thread
// that is switched back afterwards and reused. Processes that must live in
// a namespace are started from such a thread (Start), so every thread they
// ever have is in the namespace.
package netns
