// Package lab builds sipfed's network-namespace lab: one network
// namespace per host (the lab DNS, Redis, three sipfed nodes of a.test,
// one of b.test, Kamailio serving kam.test, and phones), each joined by a
// veth pair to a Linux bridge in a namespace of its own, all on one
// subnet (10.77.0.0/24) that exists only inside the lab. Two labs side by
// side never meet: every name carries the lab's prefix, and their
// addresses live in different namespaces.
//
// Tests use it through Up and the returned Lab; `go run ./deploy/lab/cmd/lab
// up|status|down` drives it by hand. Linux only, as root. See README.md.
package lab
