package main

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/sipfed/sipfed/internal/testenv"
)

// TestDemoOnce: `sipfed demo --once` on free ports places its call and
// prints the signalling path through both proxies next to a direct media
// path, then exits 0.
func TestDemoOnce(t *testing.T) {
	ports := testenv.FreePorts(t, 5)
	dns, a, b, web, ws := strconv.Itoa(ports), strconv.Itoa(ports+1), strconv.Itoa(ports+2), strconv.Itoa(ports+3), strconv.Itoa(ports+4)
	code, stdout, stderr := runCLI(t, nil, "demo", "--once", "--duration", "1s", "--dns-port", dns, "--a-port", a, "--b-port", b, "--web-port", web, "--ws-port", ws)
	if code != 0 {
		t.Fatalf("demo --once: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, hop := range [][2]string{{a, "a.test proxy"}, {b, "b.test proxy"}} {
		found := false
		for _, line := range strings.Split(stdout, "\n") {
			f := strings.Fields(line)
			found = found || len(f) == 3 && f[0] == "udp:127.0.0.1:"+hop[0] && f[1]+" "+f[2] == hop[1]
		}
		if !found {
			t.Errorf("the signalling path lacks %s at port %s:\n%s", hop[1], hop[0], stdout)
		}
	}
	for _, want := range []string{
		"alice's phone", "bob's phone", "direct, no proxy in between",
		"alice audio opus", "alice video VP8", "bob   audio opus", "bob   video VP8",
		"web phone      http://127.0.0.1:" + web + "/phone/", "carol@a.test, password carol-pw",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "The two domains stay up") {
		t.Errorf("--once still stays up:\n%s", stdout)
	}
}

// TestDemoPortTaken: a taken port is named with the flag that moves it.
func TestDemoPortTaken(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.LocalAddr().(*net.UDPAddr).Port)
	// The other ports free ones, so that only ours is taken whatever else
	// runs (another package's test may hold the default DNS port).
	free := testenv.FreePorts(t, 4)
	code, _, stderr := runCLI(t, nil, "demo", "--once", "--a-port", port, "--dns-port", strconv.Itoa(free), "--b-port", strconv.Itoa(free+1),
		"--web-port", strconv.Itoa(free+2), "--ws-port", strconv.Itoa(free+3))
	if code != 1 || !strings.Contains(stderr, "port "+port+" (a.test's proxy) is taken: choose another with --a-port") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
