package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer that several goroutines may write to: the
// output of a process or of a server under test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Lines returns the lines written so far that contain every one of subs.
func (b *Buffer) Lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// BuildSipfed builds cmd/sipfed into a new temporary directory, for a
// TestMain that runs the binary as a separate process; remove deletes
// the directory.
func BuildSipfed() (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "sipfed-bin")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "sipfed")
	build := exec.Command("go", "build", "-o", bin, "github.com/sipfed/sipfed/cmd/sipfed")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building sipfed: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// LazySipfed is cmd/sipfed built on first use and shared by a test
// binary's tests: call Path from the tests that run it and Remove from
// TestMain after m.Run.
type LazySipfed struct {
	once   sync.Once
	bin    string
	remove func()
	err    error
}

// Path builds the binary the first time (BuildSipfed) and returns it;
// a failed build fails t.
func (l *LazySipfed) Path(t testing.TB) string {
	t.Helper()
	l.once.Do(func() { l.bin, l.remove, l.err = BuildSipfed() })
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.bin
}

// Remove deletes the binary, if it was built.
func (l *LazySipfed) Remove() {
	if l.remove != nil {
		l.remove()
	}
}
