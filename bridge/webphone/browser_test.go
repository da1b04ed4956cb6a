package webphone

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// TestChromiumLoadsPages loads both pages in headless Chromium and checks
// that their scripts ran (each logs "ready" with its SIP stack's version
// into the page) without an uncaught error or a refused resource.
func TestChromiumLoadsPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	if !Built() {
		if testenv.Required() {
			t.Fatal("the web phone is not built: run make web")
		}
		t.Skip("the web phone is not built: run make web")
	}
	chromium := "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		chromium = testenv.Need(t, "chromium")
	}
	mux := http.NewServeMux()
	mux.Handle("/phone/", Handler(Config{Domain: "a.test", WSPort: 1}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, tc := range []struct{ page, ready string }{
		{"/phone/?user=carol@a.test&password=p", "ready (JsSIP 3."},
		{"/phone/sipjs.html?user=carol", "ready (SIP.js 0."},
	} {
		t.Run(tc.page, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
				"--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--no-first-run", "--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--v=0",
				"--virtual-time-budget=5000", "--dump-dom", srv.URL+tc.page)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			var stderr strings.Builder
			cmd.Stderr = &stderr
			dom, err := cmd.Output()
			if err != nil {
				t.Fatalf("chromium: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(string(dom), tc.ready) || strings.Contains(string(dom), "error: ") {
				t.Errorf("the page's script did not get ready:\n%s\n%s", dom, consoleLines(stderr.String()))
			}
			for _, l := range consoleLines(stderr.String()) {
				if strings.Contains(l, "Uncaught") || strings.Contains(l, "Refused") || strings.Contains(l, "Content Security Policy") {
					t.Errorf("console: %s", l)
				}
			}
		})
	}
}

func consoleLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, ":CONSOLE") {
			out = append(out, l)
		}
	}
	return out
}
