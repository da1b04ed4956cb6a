// Package labtest runs sipfed in the network-namespace lab of deploy/lab
// (Linux only, as root): three nodes of a.test on one Redis, b.test,
// Kamailio serving kam.test, the lab DNS and phones, each in a namespace
// of its own on one switch. See deploy/lab/README.md.
package labtest
