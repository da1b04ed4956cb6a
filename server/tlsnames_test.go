package server

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/sipfed/sipfed/resolver"
)

// TestPinnedNames: a pinned domain resolves, through Go's resolver as
// sipgo uses it, to the address pinned (v4 and v6) and nothing else; a
// name not pinned is asked of the name server.
func TestPinnedNames(t *testing.T) {
	n := newPinnedNames()
	n.pin("B.test.", netip.MustParseAddr("192.0.2.7"))
	n.pin("v6.test", netip.MustParseAddr("2001:db8::5"))
	r := n.resolver()
	for name, want := range map[string]string{"b.test": "192.0.2.7", "v6.test": "2001:db8::5"} {
		ips, err := r.LookupIPAddr(context.Background(), name)
		if err != nil || len(ips) != 1 || ips[0].IP.String() != want {
			t.Errorf("%s: %v %v, want only %s", name, ips, err, want)
		}
	}

	zone := filepath.Join(t.TempDir(), "c.test.zone")
	if err := os.WriteFile(zone, []byte("$ORIGIN c.test.\n$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 60\nsip IN A 198.51.100.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab, err := resolver.NewLabServer(zone)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go lab.Serve(ctx)
	q := new(dns.Msg)
	q.SetQuestion("sip.c.test.", dns.TypeA)
	res := n.reply(q, lab.Addr())
	if len(res.Answer) != 1 || res.Answer[0].(*dns.A).A.String() != "198.51.100.9" {
		t.Errorf("a name not pinned, asked of the name server: %v", res)
	}
	if res := n.reply(q, "127.0.0.1:1"); res.Rcode != dns.RcodeServerFailure {
		t.Errorf("name server unreachable: rcode %d, want SERVFAIL", res.Rcode)
	}
}
