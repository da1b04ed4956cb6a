package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tlsState is the TLS side of a server: the certificate of its tls:
// listeners, reloadable (SIGHUP), and the check of other domains'
// certificates (RFC 5922).
type tlsState struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	roots             *x509.CertPool // nil: the system's

	names *pinnedNames // the SIP domains dialed by name, each pinned to its address

	mu     sync.Mutex
	expect map[netip.Addr]map[string]time.Time // address → domains expected there, until
}

func newTLSState(c Config) (*tlsState, error) {
	t := &tlsState{certFile: c.TLSCert, keyFile: c.TLSKey, expect: map[netip.Addr]map[string]time.Time{}, names: newPinnedNames()}
	if c.TLSCert != "" {
		if err := t.reload(); err != nil {
			return nil, err
		}
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("server: tls ca: %w", err)
		}
		t.roots = x509.NewCertPool()
		if !t.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: tls ca %s: no PEM certificate", c.TLSCA)
		}
	}
	return t, nil
}

// reload reads the certificate and key files again.
func (t *tlsState) reload() error {
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return fmt.Errorf("server: tls certificate: %w", err)
	}
	t.cert.Store(&cert)
	return nil
}

// serverConfig is the configuration of tls: listeners.
func (t *tlsState) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.cert.Load(), nil
		},
	}
}

// Expect notes that the server at ip is reached for domain, so that its
// certificate must name domain (RFC 5922 §7.2: the SIP domain, not the
// host name found through NAPTR and SRV).
//
// The proxy sends a request for a domain named in DNS with that name as
// its destination; sipgo then looks the name up through names (pinned
// here to ip), dials ip and puts the name in the handshake as SNI, so
// each connection is checked against its own domain. A destination that
// is an address (a Route or Contact naming an IP) sends no name; its
// certificate must then name one of the domains or addresses expected
// at that moment.
func (t *tlsState) Expect(ip netip.Addr, domain string) {
	ip = ip.Unmap()
	if _, err := netip.ParseAddr(domain); err != nil {
		t.names.pin(domain, ip)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.expect[ip]
	now := time.Now()
	for d, until := range m {
		if now.After(until) {
			delete(m, d)
		}
	}
	if m == nil {
		if len(t.expect) > 10000 {
			t.expect = map[netip.Addr]map[string]time.Time{} // bounded; entries are renewed per request
		}
		m = map[string]time.Time{}
		t.expect[ip] = m
	}
	m[strings.ToLower(domain)] = now.Add(time.Minute)
}

// expected returns every domain expected now, at any address.
func (t *tlsState) expected() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	now := time.Now()
	for _, m := range t.expect {
		for d, until := range m {
			if now.Before(until) {
				out = append(out, d)
			}
		}
	}
	return out
}

// clientConfig is the configuration of connections to other domains:
// the chain is checked against the roots, and the certificate must name
// one of the domains expected at that address, as a DNS name or a sip:
// URI in its subjectAltName (RFC 5922 §7.1).
func (t *tlsState) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and the name are checked below: the name is the SIP
		// domain (RFC 5922), not the host name found through SRV.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server: tls: no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter}); err != nil {
				return fmt.Errorf("server: tls: %w", err)
			}
			if cs.ServerName != "" {
				// A domain dialed by name (see Expect): this connection is
				// for that domain and no other.
				if namesDomain(leaf, cs.ServerName) {
					return nil
				}
				return fmt.Errorf("server: tls: the certificate does not name %q (RFC 5922)", cs.ServerName)
			}
			// An address: the certificate must name a domain or address
			// the proxy is connecting to now.
			want := t.expected()
			for _, d := range want {
				if namesDomain(leaf, d) {
					return nil
				}
			}
			return fmt.Errorf("server: tls: the certificate names none of the domains connected to, %q (RFC 5922)", want)
		},
	}
}

// namesDomain reports whether cert is for the SIP domain d: a sip: URI
// or a DNS name in subjectAltName (RFC 5922 §7.1).
func namesDomain(cert *x509.Certificate, d string) bool {
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "sip") && strings.EqualFold(u.Opaque, d) {
			return true
		}
	}
	return cert.VerifyHostname(d) == nil
}
