package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Torture returns the RFC 4475 torture messages (file name → bytes)
// that sipgo's module ships in sip/testdata/torture/{valid,invalid}: read
// where `go mod download` put them, not copied into this repository.
// kind is "valid" or "invalid".
func Torture(t testing.TB, kind string) map[string][]byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/emiago/sipgo").Output()
	if err != nil {
		t.Fatalf("locating sipgo's module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "sip", "testdata", "torture", kind)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("RFC 4475 messages: %v", err)
	}
	msgs := map[string][]byte{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".dat") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msgs[e.Name()] = b
	}
	if len(msgs) == 0 {
		t.Fatalf("no RFC 4475 messages in %s", dir)
	}
	return msgs
}
