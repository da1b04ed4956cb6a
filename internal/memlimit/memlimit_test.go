package memlimit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "64KiB": 64 << 10, "1TiB": 1 << 40, "100B": 100,
		"off": 0, "0": 0, " 3GiB ": 3 << 30,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1.5GiB", "-1", "10MB", "GiB", "9999999TiB", "1 GiB x"} {
		if _, err := Parse(in); !errors.Is(err, ErrSize) {
			t.Errorf("Parse(%q): %v, want ErrSize", in, err)
		}
	}
}

// fakeRoot writes files under a temporary root: path → content.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCgroup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"v2 in a namespace", map[string]string{
			"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "536870912\n"}, 512 << 20},
		{"v2 nested, the parent lower", map[string]string{
			"proc/self/cgroup":                                     "0::/system.slice/sipfed.service\n",
			"sys/fs/cgroup/system.slice/memory.max":                "268435456\n",
			"sys/fs/cgroup/system.slice/sipfed.service/memory.max": "max\n"}, 256 << 20},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "max\n"}, 0},
		{"v1", map[string]string{
			"proc/self/cgroup": "4:memory:/docker/abc\n0::/\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n"}, 1 << 30},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup": "4:memory,foo:/x\n",
			"sys/fs/cgroup/memory/x/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"no /proc, v2 root", map[string]string{"sys/fs/cgroup/memory.max": "1048576"}, 1 << 20},
		{"nothing", map[string]string{}, 0},
	} {
		got, ok := Cgroup(fakeRoot(t, tc.files))
		if got != tc.want || ok != (tc.want != 0) {
			t.Errorf("%s: Cgroup = %d, %v; want %d", tc.name, got, ok, tc.want)
		}
	}
}

func TestChoose(t *testing.T) {
	root := fakeRoot(t, map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "1073741824\n"})
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name, env, flag string
		source          string
		bytes           int64
	}{
		{"cgroup, 90 %", "", "", FromCgroup, 966367641},
		{"flag wins over cgroup", "", "256MiB", FromFlag, 256 << 20},
		{"flag off", "", "off", FromNone, 0},
		{"environment wins", "100MiB", "256MiB", FromEnv, -1},
	} {
		c, err := Choose(env(tc.env), tc.flag, root)
		if err != nil || c.Source != tc.source || (tc.bytes >= 0 && c.Bytes != tc.bytes) {
			t.Errorf("%s: %+v, %v; want %s %d", tc.name, c, err, tc.source, tc.bytes)
		}
	}
	if c, _ := Choose(env(""), "", t.TempDir()); c.Source != FromNone || c.String() != "none" {
		t.Errorf("no cgroup: %+v", c)
	}
	if _, err := Choose(env(""), "lots", root); !errors.Is(err, ErrSize) {
		t.Errorf("bad flag: %v", err)
	}
}
