// Package memlimit chooses the Go runtime's soft memory limit for a
// server (runtime/debug.SetMemoryLimit, the GOMEMLIMIT setting): from a
// flag, else from the memory limit of the process's cgroup (v2
// memory.max, v1 memory.limit_in_bytes), so that the garbage collector
// works harder before the kernel's OOM killer steps in. See
// https://go.dev/doc/gc-guide#Memory_limit.
package memlimit

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// CgroupFraction is the part of a cgroup's limit taken as the soft limit:
// the rest is room for what the Go runtime does not count (thread stacks
// outside the heap, C allocations, page tables) and for the collector to
// catch up.
const CgroupFraction = 0.9

// Where a Choice comes from.
const (
	FromEnv    = "GOMEMLIMIT"
	FromFlag   = "flag"
	FromCgroup = "cgroup"
	FromNone   = "none"
)

// ErrSize is returned by Parse for a value that is not a size.
var ErrSize = errors.New("memlimit: not a size (want bytes with an optional suffix B, KiB, MiB, GiB or TiB, or off)")

// Choice is a memory limit and where it came from.
type Choice struct {
	Bytes  int64  // the limit; 0 with FromNone
	Source string // FromEnv, FromFlag, FromCgroup or FromNone
	Cgroup int64  // the cgroup's own limit, when one was read
}

// Parse parses a size as GOMEMLIMIT writes it: a number of bytes with an
// optional unit B, KiB, MiB, GiB or TiB ("512MiB"). "off" and "0" mean no
// limit and return 0.
func Parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%w: %q", ErrSize, s)
	}
	return n * mult, nil
}

// Choose picks the limit: GOMEMLIMIT in the environment wins (the runtime
// has applied it already), then flag (a size for Parse; "" when not
// given), then CgroupFraction of the cgroup limit found under root ("/"
// but in tests).
func Choose(getenv func(string) string, flag, root string) (Choice, error) {
	if v := getenv("GOMEMLIMIT"); v != "" {
		return Choice{Bytes: debug.SetMemoryLimit(-1), Source: FromEnv}, nil
	}
	if flag != "" {
		n, err := Parse(flag)
		if err != nil {
			return Choice{}, err
		}
		if n == 0 {
			return Choice{Source: FromNone}, nil
		}
		return Choice{Bytes: n, Source: FromFlag}, nil
	}
	if cg, ok := Cgroup(root); ok {
		return Choice{Bytes: int64(float64(cg) * CgroupFraction), Source: FromCgroup, Cgroup: cg}, nil
	}
	return Choice{Source: FromNone}, nil
}

// Apply sets c as the runtime's soft memory limit, unless it came from
// the environment (already applied) or is none.
func (c Choice) Apply() {
	if c.Source == FromFlag || c.Source == FromCgroup {
		debug.SetMemoryLimit(c.Bytes)
	}
}

// String writes the limit in MiB, as it is logged.
func (c Choice) String() string {
	if c.Source == FromNone {
		return "none"
	}
	return strconv.FormatInt(c.Bytes>>20, 10) + " MiB"
}

// unlimited is where cgroup v1 writes "no limit" (a page-rounded
// MaxInt64) and beyond.
const unlimited = 1 << 62

// Cgroup returns the memory limit of the process's cgroup under root:
// the smallest limit of its cgroup and that cgroup's ancestors, cgroup v2
// (memory.max) or v1 (memory.limit_in_bytes). ok is false when there is
// none.
func Cgroup(root string) (limit int64, ok bool) {
	sys := filepath.Join(root, "sys", "fs", "cgroup")
	type place struct{ dir, file, path string }
	var places []place
	if b, err := os.ReadFile(filepath.Join(root, "proc", "self", "cgroup")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				places = append(places, place{sys, "memory.max", parts[2]})
			case hasController(parts[1], "memory"):
				places = append(places, place{filepath.Join(sys, "memory"), "memory.limit_in_bytes", parts[2]})
			}
		}
	}
	// Without /proc (or with a path this mount does not show): the
	// mount's own root.
	places = append(places, place{sys, "memory.max", "/"}, place{filepath.Join(sys, "memory"), "memory.limit_in_bytes", "/"})
	for _, p := range places {
		for dir := path.Clean("/" + p.path); ; dir = path.Dir(dir) {
			if n, found := readLimit(filepath.Join(p.dir, filepath.FromSlash(dir), p.file)); found && (!ok || n < limit) {
				limit, ok = n, true
			}
			if dir == "/" {
				break
			}
		}
	}
	return limit, ok
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a limit file: a number of bytes, or "max" (none).
func readLimit(file string) (int64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= unlimited {
		return 0, false
	}
	return n, true
}
