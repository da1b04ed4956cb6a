package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// TestDNSAndResolveCommands runs `sipfed dns` on the lab zones and checks
// `sipfed resolve` against it: the targets in order with their records,
// --json, a clear error for a name that does not resolve, and a clean exit
// of the DNS server on SIGTERM.
func TestDNSAndResolveCommands(t *testing.T) {
	root := testenv.RepoRoot(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	dnsOut := &testenv.Buffer{}
	e := &env{stdout: dnsOut, stderr: dnsOut, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, e, []string{"dns", "--listen", addr,
			"--zone", filepath.Join(root, "deploy/lab/a.test.zone"), "--zone", filepath.Join(root, "deploy/lab/b.test.zone")})
	}()
	if err := testenv.WaitTCP(addr, 5*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, dnsOut)
	}
	if !strings.Contains(dnsOut.String(), "production domains publish") {
		t.Errorf("sipfed dns does not say it is a lab server:\n%s", dnsOut)
	}

	resolve := func(args ...string) (int, string) {
		out := &testenv.Buffer{}
		e := &env{stdout: out, stderr: out, getenv: func(string) string { return "" }}
		return run(context.Background(), e, append([]string{"resolve"}, args...)), out.String()
	}
	code, out := resolve("sip:bob@b.test", "--dns", addr)
	if code != 0 || !strings.Contains(out, "1. tcp  127.0.0.1:5062") || !strings.Contains(out, "2. udp  127.0.0.1:5062") || !strings.Contains(out, `"SIP+D2T"`) {
		t.Fatalf("resolve: exit %d\n%s", code, out)
	}
	code, out = resolve("--json", "--dns", addr, "sip:bob@a.test")
	var targets []struct {
		Transport string   `json:"transport"`
		IP        string   `json:"ip"`
		Port      int      `json:"port"`
		Records   []string `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &targets); code != 0 || err != nil || len(targets) != 2 || targets[0].Transport != "tcp" || targets[0].Port != 5061 {
		t.Fatalf("resolve --json: exit %d, %v\n%s", code, err, out)
	}
	code, out = resolve("--dns", addr, "sip:bob@nowhere.test")
	if code != 1 || !strings.Contains(out, "nowhere.test") {
		t.Fatalf("unknown domain: exit %d\n%s", code, out)
	}
	if code, _ := resolve(); code != 2 {
		t.Fatalf("resolve without a URI: exit %d, want 2", code)
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("sipfed dns exited %d\n%s", code, dnsOut)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sipfed dns did not stop")
	}
}
