package resolver

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sipfed/sipfed/internal/testenv"
)

func ask(t *testing.T, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := dns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func TestLabServerAnswers(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone, "big.test": bigZone()})
	for _, c := range []struct {
		name     string
		qtype    uint16
		rcode    int
		answers  int
		soa      bool // SOA in the authority section
		extra    int
		network  string
		notAuthz bool
	}{
		{name: "chain.lab.test.", qtype: dns.TypeNAPTR, answers: 4},
		{name: "CHAIN.Lab.Test.", qtype: dns.TypeNAPTR, answers: 4, network: "tcp"},
		{name: "_sip._udp.prio.lab.test.", qtype: dns.TypeSRV, answers: 3, extra: 3},
		{name: "lab.test.", qtype: dns.TypeSOA, answers: 1},
		{name: "lab.test.", qtype: dns.TypeNS, answers: 1},
		{name: "sip1.chain.lab.test.", qtype: dns.TypeAAAA, answers: 1},
		{name: "www.alias.lab.test.", qtype: dns.TypeA, answers: 2},
		{name: "www.alias.lab.test.", qtype: dns.TypeCNAME, answers: 1},
		{name: "aonly.lab.test.", qtype: dns.TypeAAAA, soa: true},                           // NODATA
		{name: "_udp.prio.lab.test.", qtype: dns.TypeA, soa: true},                          // empty non-terminal: NODATA
		{name: "nothere.lab.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true}, // NXDOMAIN
		{name: "elsewhere.example.", qtype: dns.TypeA, rcode: dns.RcodeRefused, notAuthz: true},
		{name: "many.big.test.", qtype: dns.TypeA, answers: 150, network: "tcp"},
	} {
		network := cmp.Or(c.network, "udp")
		resp := ask(t, l.Addr(), network, c.name, c.qtype)
		what := c.name + " " + dns.TypeToString[c.qtype] + " over " + network
		if resp.Rcode != c.rcode || len(resp.Answer) != c.answers || len(resp.Extra) != c.extra || resp.Authoritative == c.notAuthz {
			t.Errorf("%s: rcode %s, %d answers, %d extra, aa=%v; want %s, %d, %d, aa=%v\n%v", what,
				dns.RcodeToString[resp.Rcode], len(resp.Answer), len(resp.Extra), resp.Authoritative,
				dns.RcodeToString[c.rcode], c.answers, c.extra, !c.notAuthz, resp)
		}
		if gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA; gotSOA != c.soa {
			t.Errorf("%s: authority %v, want SOA: %v", what, resp.Ns, c.soa)
		}
	}
	if resp := ask(t, l.Addr(), "udp", "many.big.test.", dns.TypeA); !resp.Truncated {
		t.Errorf("150 A records over UDP without EDNS: not truncated")
	}
}

func TestLabServerReload(t *testing.T) {
	l := startLab(t, map[string]string{"lab.test": labZone})
	l.rewrite(t, "lab.test", labZone+"added IN A 127.0.0.60\n")
	if resp := ask(t, l.Addr(), "udp", "added.lab.test.", dns.TypeA); len(resp.Answer) != 1 {
		t.Errorf("after reload: %v", resp)
	}
	// A broken file keeps the zones served so far.
	if err := os.WriteFile(filepath.Join(l.dir, "lab.test.zone"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(); err == nil {
		t.Error("reload of a broken zone: no error")
	}
	if resp := ask(t, l.Addr(), "udp", "added.lab.test.", dns.TypeA); len(resp.Answer) != 1 {
		t.Errorf("after a failed reload: %v", resp)
	}
	if got := l.Zones(); !slices.Equal(got, []string{"lab.test."}) {
		t.Errorf("zones %q", got)
	}
}

func TestLabServerZonesOfDeployLab(t *testing.T) {
	root := testenv.RepoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "lab", "*.zone"))
	s, err := NewLabServer(files...)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Zones(); !slices.Equal(got, []string{"a.test.", "b.test.", "e164.lab."}) {
		t.Errorf("deploy/lab serves %q, want a.test., b.test. and e164.lab.", got)
	}
}

func TestParseZoneRejects(t *testing.T) {
	soa := "@ IN SOA ns hostmaster 1 3600 600 86400 30\n"
	for _, c := range []struct{ name, text, want string }{
		{"no SOA", "www IN A 127.0.0.1\n", "no SOA"},
		{"two SOA", soa + soa, "more than one SOA"},
		{"outside the zone", soa + "www.example. IN A 127.0.0.1\n", "outside the zone"},
		{"CNAME and other data", soa + "www IN CNAME x\nwww IN A 127.0.0.1\n", "CNAME and other"},
		{"include", soa + "$INCLUDE /etc/passwd\n", "$INCLUDE"},
		{"syntax", soa + "www IN A not-an-address\n", "A"},
		{"class", soa + "www CH A 127.0.0.1\n", "class IN"},
	} {
		_, err := parseZone(strings.NewReader(c.text), "x.test", "x.test.zone")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one about %q", c.name, err, c.want)
		}
	}
	if _, err := loadZone(filepath.Join(t.TempDir(), "missing.zone")); err == nil {
		t.Error("missing file: no error")
	}
}
