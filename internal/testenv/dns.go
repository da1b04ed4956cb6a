package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// StartKnot starts knotd on a free loopback port, authoritative for zones
// (origin such as "a.test" → zone file text), and stops it when the test
// ends. It returns the server's address, 127.0.0.1:PORT.
func StartKnot(t testing.TB, zones map[string]string) string {
	t.Helper()
	bin := Need(t, "knotd")
	dir := t.TempDir()
	zdir := filepath.Join(dir, "zones")
	if err := os.Mkdir(zdir, 0o755); err != nil {
		t.Fatal(err)
	}
	origins := make([]string, 0, len(zones))
	for o, text := range zones {
		o = strings.TrimSuffix(o, ".")
		origins = append(origins, o)
		if err := os.WriteFile(filepath.Join(zdir, o+".zone"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(origins)
	port := FreePort(t)
	var conf strings.Builder
	fmt.Fprintf(&conf, "server:\n  rundir: %q\n  listen: 127.0.0.1@%d\n", dir, port)
	fmt.Fprintf(&conf, "database:\n  storage: %q\n", filepath.Join(dir, "db"))
	fmt.Fprintf(&conf, "log:\n  - target: stderr\n    any: warning\n")
	fmt.Fprintf(&conf, "template:\n  - id: default\n    storage: %q\n    file: \"%%s.zone\"\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n", zdir)
	conf.WriteString("zone:\n")
	for _, o := range origins {
		fmt.Fprintf(&conf, "  - domain: %s\n", o)
	}
	cfg := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "-c", cfg)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start knotd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for _, o := range origins {
		if err := waitSOA(addr, o, 10*time.Second); err != nil {
			t.Fatalf("testenv: knotd: %v\n%s", err, stderr.String())
		}
	}
	return addr
}

// waitSOA waits until the server at addr answers the SOA of origin.
func waitSOA(addr, origin string, timeout time.Duration) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(origin), dns.TypeSOA)
	c := dns.Client{Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for {
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not serve %s after %v: %w", addr, origin, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
