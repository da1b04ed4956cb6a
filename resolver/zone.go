package resolver

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"
)

// zone is one parsed RFC 1035 zone file: the records by owner name.
type zone struct {
	origin string              // apex, lower case, with the trailing dot
	soa    *dns.SOA            // the apex SOA
	names  map[string][]dns.RR // owner (lower case) → records
	exists map[string]bool     // owners and their ancestors up to the apex (empty non-terminals exist)
}

// loadZone reads a zone file. The origin is $ORIGIN when the file sets
// one, else the file name without ".zone" (a.test.zone serves a.test).
func loadZone(path string) (*zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: zone: %w", err)
	}
	defer f.Close()
	return parseZone(f, strings.TrimSuffix(filepath.Base(path), ".zone"), path)
}

// parseZone parses a zone file whose default origin is origin. It needs
// exactly one SOA, at the apex, and every record inside the zone;
// $INCLUDE is refused.
func parseZone(r io.Reader, origin, file string) (*zone, error) {
	if _, ok := dns.IsDomainName(origin); !ok || origin == "" {
		return nil, fmt.Errorf("resolver: zone %s: bad origin %q", file, origin)
	}
	zp := dns.NewZoneParser(r, dns.Fqdn(origin), file)
	zp.SetIncludeAllowed(false)
	var rrs []dns.RR
	var soa *dns.SOA
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if s, isSOA := rr.(*dns.SOA); isSOA {
			if soa != nil {
				return nil, fmt.Errorf("resolver: zone %s: more than one SOA record", file)
			}
			soa = s
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("resolver: zone: %w", err)
	}
	if soa == nil {
		return nil, fmt.Errorf("resolver: zone %s: no SOA record", file)
	}
	z := &zone{
		origin: strings.ToLower(soa.Hdr.Name),
		soa:    soa,
		names:  map[string][]dns.RR{},
		exists: map[string]bool{},
	}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			return nil, fmt.Errorf("resolver: zone %s: %s: only class IN is served", file, h.Name)
		}
		name := strings.ToLower(h.Name)
		if !dns.IsSubDomain(z.origin, name) {
			return nil, fmt.Errorf("resolver: zone %s: %s is outside the zone %s", file, h.Name, z.origin)
		}
		z.names[name] = append(z.names[name], rr)
		for off, end := 0, false; !end && name[off:] != z.origin; off, end = dns.NextLabel(name, off) {
			z.exists[name[off:]] = true
		}
	}
	z.exists[z.origin] = true
	for name, rrs := range z.names {
		cname, other := 0, 0
		for _, rr := range rrs {
			switch rr.Header().Rrtype {
			case dns.TypeCNAME:
				cname++
			case dns.TypeRRSIG, dns.TypeNSEC:
			default:
				other++
			}
		}
		if cname > 1 || (cname == 1 && other > 0) {
			return nil, fmt.Errorf("resolver: zone %s: %s has a CNAME and other records (RFC 1034 §3.6.2)", file, name)
		}
	}
	return z, nil
}
