package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sipfed/sipfed/resolver"
)

const resolveUsage = `Usage: sipfed resolve [--dns ADDR] [--json] sip:bob@b.example

Prints the targets a proxy tries for a SIP URI, in order (RFC 3263: NAPTR,
then SRV, then A/AAAA), with the DNS records that produced each one, so an
operator can check a domain's DNS. A bare "b.example" or "bob@b.example"
means sip:. The weighted order inside an SRV priority (RFC 2782) is drawn
anew on every run.`

// runResolve is `sipfed resolve`.
func runResolve(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "resolve", resolveUsage)
	fs.withConfig()
	servers := newListFlag()
	fs.Var(servers, "dns", "upstream DNS server `ADDR` (host[:port], repeatable; default: /etc/resolv.conf)")
	asJSON := fs.Bool("json", false, "print the targets as JSON")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for each DNS answer")
	tps := newListFlag(resolver.UDP, resolver.TCP, resolver.TLS, resolver.WS, resolver.WSS)
	fs.Var(tps, "transport", "transports to consider, in order of preference (repeatable)")
	family := fs.String("family", "prefer-ipv4", "address records: prefer-ipv4, prefer-ipv6, ipv4 or ipv6")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one SIP URI, e.g. sip:bob@b.example (see --help)")
	}
	if *timeout <= 0 {
		return usagef("--timeout %v: want a positive duration, e.g. 2s", *timeout)
	}
	fam, ok := map[string]resolver.Family{
		"prefer-ipv4": resolver.PreferIPv4, "prefer-ipv6": resolver.PreferIPv6,
		"ipv4": resolver.IPv4Only, "ipv6": resolver.IPv6Only,
	}[*family]
	if !ok {
		return usagef("--family %q: want prefer-ipv4, prefer-ipv6, ipv4 or ipv6", *family)
	}
	s := pos[0]
	if !strings.HasPrefix(strings.ToLower(s), "sip:") && !strings.HasPrefix(strings.ToLower(s), "sips:") {
		s = "sip:" + s
	}
	var uri sip.Uri
	if err := sip.ParseUri(s, &uri); err != nil {
		return usagef("%q is not a SIP URI: %v", pos[0], err)
	}
	if uri.Host == "" {
		return usagef("%q has no host to resolve", pos[0])
	}
	opts := []resolver.Option{resolver.WithTimeout(*timeout), resolver.WithTransports(tps.vals...), resolver.WithFamily(fam)}
	if len(servers.vals) > 0 {
		opts = append(opts, resolver.WithServers(servers.vals))
	}
	r, err := resolver.New(opts...)
	if err != nil {
		return usageError{err}
	}
	targets, err := r.Resolve(ctx, uri)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(targets)
	}
	fmt.Fprintf(e.stdout, "%s: %d target(s), in the order to try (DNS %s)\n", uri.String(), len(targets), strings.Join(r.Servers(), ", "))
	for i, t := range targets {
		fmt.Fprintf(e.stdout, "%2d. %-4s %-22s %s\n", i+1, t.Transport, t.AddrPort(), t.Host)
		for _, rec := range t.Records {
			fmt.Fprintf(e.stdout, "      %s\n", rec)
		}
	}
	return nil
}
