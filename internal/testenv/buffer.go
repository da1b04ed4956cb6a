package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
