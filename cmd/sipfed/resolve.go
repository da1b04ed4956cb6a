package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"github.com/sipfed/sipfed/resolver"
)

const resolveUsage = `Usage: sipfed resolve [--dns ADDR] [--json] sip:bob@b.example
       sipfed resolve [--dns ADDR] [--enum-suffix TREE] [--json] tel:+81312345678

Prints the targets a proxy tries for a SIP URI, in order (RFC 3263: NAPTR,
then SRV, then A/AAAA), with the DNS records that produced each one, so an
operator can check a domain's DNS. A bare "b.example" or "bob@b.example"
means sip:. The weighted order inside an SRV priority (RFC 2782) is drawn
anew on every run.

For a telephone number, tel:+81312345678 or a bare +81312345678 (visual
separators such as - . ( ) allowed), it first looks the number up in ENUM
(RFC 6116: the NAPTR records of 8.7.6.5.4.3.2.1.3.1.8.e164.arpa with the
E2U+sip service), under each --enum-suffix in turn, and prints what it asked
and what came back; then the targets of the SIP URI the record gave. With
--json that is {"enum": {...}, "targets": [...]}.`

// runResolve is `sipfed resolve`.
func runResolve(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "resolve", resolveUsage)
	fs.withConfig()
	servers := newListFlag()
	fs.Var(servers, "dns", "upstream DNS server `ADDR` (host[:port], repeatable; default: /etc/resolv.conf)")
	asJSON := fs.Bool("json", false, "print the targets (and for a number the ENUM look-up) as JSON")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for each DNS answer")
	tps := newListFlag(resolver.UDP, resolver.TCP, resolver.TLS, resolver.WS, resolver.WSS)
	fs.Var(tps, "transport", "transports to consider, in order of preference (repeatable)")
	family := fs.String("family", "prefer-ipv4", "address records: prefer-ipv4, prefer-ipv6, ipv4 or ipv6")
	suffixes := newListFlag("e164.arpa")
	fs.Var(suffixes, "enum-suffix", "ENUM `tree` (RFC 6116) a telephone number is looked up in, in turn (repeatable)")
	pos, err := fs.parse(e, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one SIP URI or telephone number, e.g. sip:bob@b.example or tel:+81312345678 (see --help)")
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
	number, isNumber, err := telNumber(s)
	if err != nil {
		return err
	}
	if isNumber {
		for _, sfx := range suffixes.vals {
			if _, ok := dns.IsDomainName(sfx); !ok || strings.Trim(sfx, ".") == "" {
				return usagef("--enum-suffix %q is not a domain name", sfx)
			}
		}
	} else if !strings.HasPrefix(strings.ToLower(s), "sip:") && !strings.HasPrefix(strings.ToLower(s), "sips:") {
		s = "sip:" + s
	}
	opts := []resolver.Option{resolver.WithTimeout(*timeout), resolver.WithTransports(tps.vals...), resolver.WithFamily(fam)}
	if len(servers.vals) > 0 {
		opts = append(opts, resolver.WithServers(servers.vals))
	}
	r, err := resolver.New(opts...)
	if err != nil {
		return usageError{err}
	}
	var found *resolver.ENUMResult
	if isNumber {
		res, err := r.ENUM(ctx, number, suffixes.vals)
		if !*asJSON {
			fmt.Fprintf(e.stdout, "%s: ENUM under %s (DNS %s)\n", number, strings.Join(suffixes.vals, ", "), strings.Join(r.Servers(), ", "))
			for _, step := range res.Steps {
				fmt.Fprintf(e.stdout, "    %s\n", step)
			}
		}
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(e.stdout, "%s is %s\n\n", number, res.URI)
		}
		found, s = &res, res.URI
	}
	var uri sip.Uri
	if err := sip.ParseUri(s, &uri); err != nil {
		if found != nil { // checked by ENUM: not expected
			return fmt.Errorf("ENUM gave %q, which is not a SIP URI: %v", s, err)
		}
		return usagef("%q is not a SIP URI: %v", pos[0], err)
	}
	if uri.Host == "" {
		return usagef("%q has no host to resolve", pos[0])
	}
	targets, err := r.Resolve(ctx, uri)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if found != nil {
			return enc.Encode(struct {
				ENUM    *resolver.ENUMResult `json:"enum"`
				Targets []resolver.Target    `json:"targets"`
			}{found, targets})
		}
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

// telNumber reads a telephone number from the command line: a tel: URI
// (RFC 3966; its parameters are ignored) or a bare "+..." number. ok is
// false for anything else (a SIP URI); a tel: URI or "+..." that is not a
// global E.164 number is a usage error.
func telNumber(s string) (number string, ok bool, err error) {
	rest := s
	if len(s) >= 4 && strings.EqualFold(s[:4], "tel:") {
		rest = s[4:]
	} else if !strings.HasPrefix(s, "+") {
		return "", false, nil
	}
	rest, _, _ = strings.Cut(rest, ";")
	n, ok := resolver.NormalizeE164(rest)
	if !ok {
		return "", false, usagef("%q is not a global telephone number: want + and 1 to 15 digits, e.g. tel:+81312345678", s)
	}
	return n, true, nil
}
