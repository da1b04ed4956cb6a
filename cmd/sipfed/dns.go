package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sipfed/sipfed/resolver"
)

const dnsUsage = `Usage: sipfed dns --listen 127.0.0.1:5353 --zone FILE [--zone FILE ...]

A small authoritative DNS server for labs and tests: it serves RFC 1035 zone
files (NAPTR, SRV, A, AAAA, SOA, NS, CNAME) over UDP and TCP, and reads them
again on SIGHUP. Point "sipfed serve --dns" and "sipfed resolve --dns" at it.
A zone's origin is its $ORIGIN, else the file name without .zone; examples
for two lab domains are in deploy/lab/.

This is a lab tool: production domains publish their records in their real
DNS, where other domains' proxies find them.`

// runDNS is `sipfed dns`.
func runDNS(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "dns", dnsUsage)
	fs.withConfig()
	listen := fs.String("listen", "127.0.0.1:5353", "UDP and TCP `address` to answer on")
	zones := newListFlag()
	fs.Var(zones, "zone", "zone `file` to serve (repeatable)")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q (zone files go in --zone)", pos)
	}
	if len(zones.vals) == 0 {
		return usagef("--zone FILE is required (see deploy/lab/*.zone)")
	}
	srv, err := resolver.NewLabServer(zones.vals...)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "sipfed dns: this is for labs and tests: production domains publish their NAPTR/SRV/A records in their real DNS.")
	if err := srv.Listen(*listen); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := srv.Reload(); err != nil {
					fmt.Fprintf(e.stderr, "sipfed dns: reload failed, still serving the previous zones: %v\n", err)
					continue
				}
				fmt.Fprintf(e.stderr, "sipfed dns: reloaded %s\n", strings.Join(srv.Zones(), " "))
			}
		}
	}()
	fmt.Fprintf(e.stdout, "sipfed dns: lab DNS server for %s on %s (udp+tcp); SIGHUP reloads the zones.\n",
		strings.Join(srv.Zones(), " "), srv.Addr())
	return srv.Serve(ctx)
}
