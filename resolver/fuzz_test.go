package resolver

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzZoneParse feeds zone files to the parser the lab server uses: it
// must never panic, and what it accepts must hold only names inside the
// zone, with one SOA at the apex.
func FuzzZoneParse(f *testing.F) {
	f.Add(labZone)
	f.Add(bigZone())
	f.Add("$ORIGIN x.test.\n@ IN SOA ns hm 1 2 3 4 5\n")
	f.Add("@ IN SOA ns hm 1 2 3 4 5\nwww IN CNAME x\n_sip._udp 30 IN SRV 0 0 0 .\n")
	f.Add("$INCLUDE x\n")
	f.Add("@ IN SOA ns hm 1 2 3 4 5\n@ IN NAPTR 1 1 \"S\" \"SIP+D2U\" \"!a!b!\" .\n( ;\n")
	f.Fuzz(func(t *testing.T, text string) {
		z, err := parseZone(strings.NewReader(text), "x.test", "fuzz.zone")
		if err != nil {
			return
		}
		if z.soa == nil || !strings.EqualFold(z.soa.Hdr.Name, z.origin) {
			t.Fatalf("accepted a zone without its SOA at %s", z.origin)
		}
		for name := range z.names {
			if !dns.IsSubDomain(z.origin, name) || !z.exists[name] {
				t.Fatalf("accepted %s in zone %s", name, z.origin)
			}
		}
	})
}

// FuzzNAPTR checks which NAPTR records we follow (RFC 3263 §4.1): only
// flag "S", a known SIP service, no regexp and a replacement; the fields
// come from other domains' DNS.
func FuzzNAPTR(f *testing.F) {
	f.Add(uint16(10), uint16(10), "S", "SIP+D2U", "", "_sip._udp.b.test.")
	f.Add(uint16(10), uint16(10), "s", "sips+d2t", "", "_sips._tcp.b.test.")
	f.Add(uint16(10), uint16(10), "U", "E2U+sip", "!^.*$!sip:x@y!", ".")
	f.Add(uint16(0), uint16(0), "S", "SIP+D2W", "", ".")
	f.Add(uint16(1), uint16(2), "SA", "SIP+D2X", "x", "")
	f.Fuzz(func(t *testing.T, order, pref uint16, flags, service, regexp, replacement string) {
		n := &dns.NAPTR{
			Hdr:   dns.RR_Header{Name: "b.test.", Rrtype: dns.TypeNAPTR, Class: dns.ClassINET, Ttl: 60},
			Order: order, Preference: pref, Flags: flags, Service: service, Regexp: regexp, Replacement: replacement,
		}
		b := &builder{}
		tp, ok := b.usable(n)
		if !ok {
			return
		}
		if !strings.EqualFold(flags, "s") || regexp != "" || replacement == "" || replacement == "." {
			t.Fatalf("followed %v", n)
		}
		if !strings.EqualFold(transports[tp].naptr, service) {
			t.Fatalf("service %q gave transport %s", service, tp)
		}
	})
}

// FuzzAnswer feeds DNS responses (wire format, from any upstream) to the
// code that reads them: no panic, and records only of the type asked for.
func FuzzAnswer(f *testing.F) {
	seed := func(rrs ...string) []byte {
		m := new(dns.Msg)
		m.SetQuestion("b.test.", dns.TypeA)
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed("b.test. 60 IN A 127.0.0.1"))
	f.Add(seed("b.test. 60 IN CNAME c.test.", "c.test. 60 IN CNAME b.test.", "c.test. 5 IN A 127.0.0.1"))
	f.Add(seed("b.test. 60 IN SRV 1 2 3 x.test.", "b.test. 60 IN NAPTR 1 1 \"S\" \"SIP+D2U\" \"\" _sip._udp.b.test."))
	f.Fuzz(func(t *testing.T, wire []byte) {
		m := new(dns.Msg)
		if m.Unpack(wire) != nil {
			return
		}
		r := &Resolver{now: func() time.Time { return time.Unix(0, 0) }}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeNAPTR} {
			a := r.parse("b.test.", qt, m)
			if a.neg == nil && len(a.rrs) == 0 {
				t.Fatal("neither records nor a negative answer")
			}
			if slices.ContainsFunc(a.rrs, func(rr dns.RR) bool { return rr.Header().Rrtype != qt }) {
				t.Fatalf("%s answer holds other types: %v", dns.TypeToString[qt], a.rrs)
			}
		}
	})
}

// FuzzNAPTRRewrite feeds NAPTR regexp fields and numbers to the DDDS
// substitution of RFC 3402 §3.2 (the fields come from other domains'
// DNS): no panic, a result of at most 1024 bytes, no CR or LF in an error,
// and a result taken for a SIP URI only of printable ASCII.
func FuzzNAPTRRewrite(f *testing.F) {
	for _, c := range naptrRewriteCases {
		f.Add(c.re, c.aus)
	}
	f.Add(`!^\+81(.*)$!sip:\1@b.test!`, "+81312345678")
	f.Add("!^(.*)$!sip:\\1\\1\\1\\1\\1\\1\\1\\1\\1@b.test!i", "+1\r\n")
	f.Fuzz(func(t *testing.T, re, aus string) {
		out, err := NAPTRRewrite(re, aus)
		if err != nil {
			if out != "" || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("NAPTRRewrite(%q, %q) = %q, %q", re, aus, out, err)
			}
			return
		}
		if len(out) > maxRewrite || len(re) > maxRegexpField {
			t.Fatalf("NAPTRRewrite(%q, %q): accepted, %d bytes out", re, aus, len(out))
		}
		uri, err := checkSIPURI(out)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("checkSIPURI(%q): error %q", out, err)
			}
			return
		}
		if strings.ContainsFunc(uri, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("NAPTRRewrite(%q, %q) = %q, taken for a SIP URI", re, aus, uri)
		}
	})
}
