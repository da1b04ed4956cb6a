package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/server"
)

// writeTLSZone writes a zone whose only target is TLS: NAPTR SIPS+D2T,
// SRV _sips._tcp at port.
func writeTLSZone(t *testing.T, path, domain string, port int) {
	t.Helper()
	writeZoneFor(t, path, domain, "SIPS+D2T", "_sips._tcp", port)
}

// federateOverTLS runs a.test and b.test with TLS listeners, b.test's
// certificate naming bDomainInCert, b.test found only through
// _sips._tcp, and returns the status of alice's MESSAGE to bob@b.test and
// how many MESSAGEs bob's phone got.
func federateOverTLS(t *testing.T, bDomainInCert string) (int, int32) {
	lab := startTLSLab(t, map[string]string{"b.test": bDomainInCert})
	return lab.message(t, "bob@b.test")
}

// tlsLab is a.test (alice) and other domains, each with a TLS listener
// whose certificate comes from one private CA, found only through
// NAPTR SIPS+D2T and SRV _sips._tcp, each with one phone that answers
// MESSAGE.
type tlsLab struct {
	a   *server.Server
	got map[string]*atomic.Int32 // user@domain → MESSAGEs its phone got
}

// startTLSLab starts the lab; certNames maps each domain besides a.test
// (user "bob" at b.test, else "carol") to the name its certificate gives.
func startTLSLab(t *testing.T, certNames map[string]string) *tlsLab {
	t.Helper()
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	zones := map[string]string{}
	var files []string
	for d := range certNames {
		zones[d] = filepath.Join(dir, d+".zone")
		writeTLSZone(t, zones[d], d, 1)
		files = append(files, zones[d])
	}
	dns := startLabDNS(t, files...)

	listen := []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"}
	aCert, aKey := ca.Issue(t, "a.test")
	lab := &tlsLab{got: map[string]*atomic.Int32{}}
	lab.a = start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), DNS: []string{dns.Addr()},
		Listen: listen, TLSCert: aCert, TLSKey: aKey, TLSCA: ca.File})
	for d, name := range certNames {
		user := "carol"
		if d == "b.test" {
			user = "bob"
		}
		cert, key := ca.Issue(t, name)
		s := start(t, server.Config{Domains: []string{d}, Users: usersFile(t, d, user), DNS: []string{dns.Addr()},
			Listen: listen, TLSCert: cert, TLSKey: key, TLSCA: ca.File})
		writeTLSZone(t, zones[d], d, s.Addr("tls").(*net.TCPAddr).Port)
		got := &atomic.Int32{}
		lab.got[user+"@"+d] = got
		startPhone(t, s, user, d, messagePhone(got))
	}
	if err := dns.Reload(); err != nil {
		t.Fatal(err)
	}
	return lab
}

// message sends a MESSAGE from alice@a.test to aor and returns its final
// status and how many MESSAGEs aor's phone has got so far.
func (l *tlsLab) message(t *testing.T, aor string) (int, int32) {
	t.Helper()
	alice := newClient(t, "alice-phone")
	msg := request(sip.MESSAGE, "alice@a.test", aor, l.a.Addr("udp"))
	msg.SetBody([]byte("over TLS"))
	msg.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	res := do(t, alice, msg, "alice")
	return res.StatusCode, l.got[aor].Load()
}

// TestFederationOverTLS: a.test reaches b.test through NAPTR SIPS+D2T
// and SRV _sips._tcp, over TLS with a private CA, b.test's certificate
// naming the SIP domain b.test (RFC 5922).
func TestFederationOverTLS(t *testing.T) {
	code, got := federateOverTLS(t, "b.test")
	if code != 200 || got != 1 {
		t.Fatalf("MESSAGE over TLS: %d, phone got %d, want 200 and 1", code, got)
	}
}

// TestFederationOverTLSWrongCertificateRefused: a certificate from the
// right CA that names another domain is refused: nothing reaches b.test.
func TestFederationOverTLSWrongCertificateRefused(t *testing.T) {
	code, got := federateOverTLS(t, "c.test")
	if code == 200 || got != 0 {
		t.Fatalf("MESSAGE to a server whose certificate names c.test: %d, phone got %d; want a failure and nothing delivered", code, got)
	}
}

// TestFederationOverTLSCertificatePerConnection: each connection's
// certificate must name the domain that connection is for. c.test's
// server shows a valid certificate for b.test, a domain a.test is
// talking to at the same moment: the connection to c.test is refused
// all the same, while b.test is reached.
func TestFederationOverTLSCertificatePerConnection(t *testing.T) {
	lab := startTLSLab(t, map[string]string{"b.test": "b.test", "c.test": "b.test"})
	if code, got := lab.message(t, "bob@b.test"); code != 200 || got != 1 {
		t.Fatalf("MESSAGE to bob@b.test: %d, phone got %d, want 200 and 1", code, got)
	}
	if code, got := lab.message(t, "carol@c.test"); code == 200 || got != 0 {
		t.Fatalf("MESSAGE to carol@c.test, whose server shows b.test's certificate: %d, phone got %d; want a failure and nothing delivered", code, got)
	}
	if code, got := lab.message(t, "bob@b.test"); code != 200 || got != 2 {
		t.Fatalf("second MESSAGE to bob@b.test: %d, phone got %d, want 200 and 2", code, got)
	}
}

// TestTLSListenerReload: a client registers over TLS, and after the
// certificate files change, ReloadTLS makes new connections see the new
// certificate.
func TestTLSListenerReload(t *testing.T) {
	ca := testenv.NewCA(t)
	certFile, keyFile := ca.Issue(t, "a.test")
	s := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), DNS: []string{"127.0.0.1:1"},
		Listen: []string{"tls:127.0.0.1:0"}, TLSCert: certFile, TLSKey: keyFile})
	serial := func() *big.Int {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		c, err := tls.Dial("tcp", s.Addr("tls").String(), &tls.Config{RootCAs: roots, ServerName: "a.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	first := serial()

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(&tls.Config{RootCAs: roots, ServerName: "a.test"}))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	reg := request(sip.REGISTER, "alice@a.test", "alice@a.test", s.Addr("tls"))
	reg.Recipient = sip.Uri{Scheme: "sip", Host: "a.test"}
	reg.SetTransport("TLS")
	reg.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:9;transport=tls>"))
	if res := do(t, c, reg, "alice"); res.StatusCode != 200 {
		t.Fatalf("REGISTER over TLS: %d %s", res.StatusCode, res.Reason)
	}

	newCert, newKey := ca.Issue(t, "a.test")
	for _, f := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if second := serial(); second.Cmp(first) == 0 {
		t.Fatal("the listener still shows the old certificate after ReloadTLS")
	}
}

// TestFederationTLSRefusesPlainTargets: with FederationTLS, a domain
// that publishes only a UDP target is not reached (503), and nothing
// leaves in clear.
func TestFederationTLSRefusesPlainTargets(t *testing.T) {
	dir := t.TempDir()
	zoneB := filepath.Join(dir, "b.test.zone")
	sink, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	writeZone(t, zoneB, "b.test", sink.LocalAddr().(*net.UDPAddr).Port)
	lab := startLabDNS(t, zoneB)
	a := start(t, server.Config{Domains: []string{"a.test"}, Users: usersFile(t, "a.test", "alice"), DNS: []string{lab.Addr()}, FederationTLS: true})
	alice := newClient(t, "alice-phone")
	msg := request(sip.MESSAGE, "alice@a.test", "bob@b.test", a.Addr("udp"))
	if res := do(t, alice, msg, "alice"); res.StatusCode != 503 {
		t.Fatalf("MESSAGE to a domain without TLS: %d %s, want 503", res.StatusCode, res.Reason)
	}
	sink.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := sink.ReadFrom(make([]byte, 2048)); err == nil {
		t.Fatalf("%d bytes went to b.test in clear", n)
	}
}
