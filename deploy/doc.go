// Package deploy holds the files that run sipfed in production: a systemd
// unit (systemd/), a container image (docker/), a three-node domain with
// Docker Compose (compose/) and with Kubernetes (k8s/); README.md says how
// to run a domain with them.
//
// No Go code imports it. Its test checks every file against the sipfed
// binary built from this tree: each --flag, SIPFED_* variable and config
// key must be one `sipfed serve --help` lists, each value must parse, each
// configuration must start and drain, and the unit, image and manifests
// must keep their safety properties (non-root, one capability, stop
// timeouts above the drain, ports published as advertised).
package deploy
