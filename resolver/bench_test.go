package resolver

import (
	"context"
	"testing"
)

// BenchmarkResolveCached is a proxy resolving a domain it resolved before:
// the whole result comes from the cache, and the weighted order is drawn
// again.
func BenchmarkResolveCached(b *testing.B) {
	l := startLab(b, map[string]string{"lab.test": labZone})
	r := newResolver(b, l.Addr())
	ctx := context.Background()
	for _, c := range []struct{ name, uri string }{
		{"NAPTR_SRV_A_AAAA", "sip:bob@chain.lab.test"},
		{"SRV_weighted", "sip:bob@weights.lab.test"},
	} {
		u := uri(b, c.uri)
		if _, err := r.Resolve(ctx, u); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Resolve(ctx, u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResolveCold is a first resolution: NAPTR, SRV, A and AAAA
// queries to a lab server on loopback.
func BenchmarkResolveCold(b *testing.B) {
	l := startLab(b, map[string]string{"lab.test": labZone})
	r := newResolver(b, l.Addr())
	ctx := context.Background()
	u := uri(b, "sip:bob@chain.lab.test")
	b.ReportAllocs()
	for b.Loop() {
		r.flush()
		if _, err := r.Resolve(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkENUM is a proxy looking up a number it looked up before: the
// NAPTR records come from the cache, the regexp is compiled and applied
// again, and the steps are written again.
func BenchmarkENUM(b *testing.B) {
	l := startLab(b, enumZones)
	r := newResolver(b, l.Addr())
	ctx := context.Background()
	suffixes := []string{"e164.lab"}
	for _, c := range []struct{ name, number string }{
		{"terminal_backref", "+81300000006"},
		{"non_terminal", "+81300000007"},
		{"order_preference_4_records", "+81300000005"},
	} {
		if _, err := r.ENUM(ctx, c.number, suffixes); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.ENUM(ctx, c.number, suffixes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
