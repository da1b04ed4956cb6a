package deploy_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	from, name string
	instrs     []instruction
}

// parseDockerfile reads a Dockerfile into its stages.
func parseDockerfile(text string) []stage {
	var stages []stage
	var cur strings.Builder
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue // comments, also inside continued lines, as Docker drops them
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			continue
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			st := stage{}
			if len(f) > 0 {
				st.from = f[0]
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	return stages
}

// execForm parses a JSON-array instruction argument ("exec form"): the
// final image has no shell for the other form.
func execForm(s string) ([]string, error) {
	var a []string
	if err := json.Unmarshal([]byte(s), &a); err != nil || len(a) == 0 {
		return nil, fmt.Errorf("%q: want the exec form [\"…\"] (the image has no shell)", s)
	}
	return a, nil
}

// image is what the Dockerfile's final stage makes.
type image struct {
	uid        int
	entrypoint []string
	cmd        []string
	files      map[string]bool // paths COPY'd into it
	exposed    map[string]bool // "5060/udp"
	healthURL  string
}

// checkDockerfile checks the image: a static sipfed on an empty base as
// a numeric non-root user, exec-form ENTRYPOINT and CMD (the CMD a valid
// sipfed serve line), the ports it exposes, its health check, no SIPFED_*
// in its environment.
func checkDockerfile(tr tree) (image, nodeConfig, []error) {
	const file = "docker/Dockerfile"
	img := image{uid: -1, files: map[string]bool{}, exposed: map[string]bool{}}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(file+": "+format, args...)) }
	stages := parseDockerfile(tr[file])
	if len(stages) == 0 {
		fail("no FROM")
		return img, nodeConfig{}, errs
	}
	final := stages[len(stages)-1]
	if final.from != "scratch" && !strings.Contains(final.from, "distroless") {
		fail("final stage FROM %s: want scratch or a distroless image (nothing but sipfed to attack)", final.from)
	}
	// Every stage that builds sipfed builds it static.
	builds := 0
	for _, st := range stages {
		cgoOff := false
		for _, in := range st.instrs {
			if (in.cmd == "ENV" || in.cmd == "ARG" || in.cmd == "RUN") && regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.args) {
				cgoOff = true
			}
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "./cmd/sipfed") {
				builds++
				if !cgoOff {
					fail("stage %s builds ./cmd/sipfed without CGO_ENABLED=0 before it: the binary would need a libc the image does not have", st.from)
				}
			}
		}
	}
	if builds == 0 {
		fail("no stage runs go build ./cmd/sipfed")
	}
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			u, _, _ := strings.Cut(in.args, ":")
			img.uid = -1
			if n, err := strconv.Atoi(u); err == nil {
				img.uid = n
			}
		case "COPY", "ADD":
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) >= 2 {
				img.files[f[len(f)-1]] = true
			}
		case "ENTRYPOINT", "CMD":
			a, err := execForm(in.args)
			if err != nil {
				fail("%s %v", in.cmd, err)
			}
			if in.cmd == "ENTRYPOINT" {
				img.entrypoint = a
			} else {
				img.cmd = a
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				img.exposed[p] = true
			}
		case "ENV":
			if strings.Contains(in.args, "SIPFED_") {
				fail("ENV %s: an image's SIPFED_* would silently win over every --config file mounted into it; give defaults as CMD flags", in.args)
			}
		case "HEALTHCHECK":
			_, c, ok := strings.Cut(in.args, "CMD ")
			a, err := execForm(strings.TrimSpace(c))
			if !ok || err != nil {
				fail("HEALTHCHECK: want CMD in exec form")
				continue
			}
			if !img.files[a[0]] {
				fail("HEALTHCHECK runs %s, which is not copied into the final stage", a[0])
			}
			if len(a) > 1 {
				img.healthURL = a[1]
			}
		}
	}
	if img.uid <= 0 {
		fail("the final stage needs a numeric non-root USER (Kubernetes' runAsNonRoot can only check a number)")
	}
	if len(img.entrypoint) != 1 || !img.files[img.entrypoint[0]] || path.Base(img.entrypoint[0]) != "sipfed" {
		fail("ENTRYPOINT %q: want the sipfed binary copied into the final stage, alone", img.entrypoint)
	}
	n := nodeConfig{name: file + ": CMD"}
	ss, e := parseArgv(img.cmd, file+": CMD")
	errs = append(errs, e...)
	n.settings = ss
	errs = append(errs, checkNode(n)...)
	ls, _ := listeners(ss)
	hp, _ := httpPort(ss)
	want := []string{"5060/udp", "5060/tcp", "5061/tcp"}
	for _, l := range ls {
		want = append(want, fmt.Sprintf("%d/%s", l.port, l.proto()))
	}
	if hp != 0 {
		want = append(want, fmt.Sprintf("%d/tcp", hp))
		if img.healthURL != "" && !strings.HasSuffix(hostPort(img.healthURL), ":"+strconv.Itoa(hp)) {
			fail("HEALTHCHECK asks %s, but CMD serves --http on port %d", img.healthURL, hp)
		}
	}
	for _, p := range want {
		if !img.exposed[p] {
			fail("EXPOSE lacks %s", p)
		}
	}
	return img, n, errs
}

// hostPort is the host:port of a URL.
func hostPort(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}

// TestStaticBinary checks the binary built as the Dockerfile builds it
// needs no libc (the image has none) and runs as the image's user.
func TestStaticBinary(t *testing.T) {
	for _, b := range []string{sipfedBin, healthzBin} {
		if err := checkStatic(b); err != nil {
			t.Error(err)
		}
	}
	// The check itself: the same binary with one program header turned
	// into PT_INTERP fails it.
	if err := checkStatic(withInterp(t, sipfedBin)); err == nil {
		t.Error("checkStatic passes a binary with a PT_INTERP program header")
	}
	cmd := exec.Command(sipfedBin, "--version")
	asImageUser(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sipfed ") {
		t.Errorf("sipfed --version as uid %d: %v: %s", imageUID, err, out)
	}
}

// checkStatic reports whether an ELF file needs a dynamic loader or
// shared libraries.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s has a program interpreter (PT_INTERP): dynamically linked", file)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs %v", file, libs)
	}
	return nil
}

// withInterp writes a copy of the ELF64 file bin whose PT_GNU_STACK
// program header claims to be PT_INTERP.
func withInterp(t *testing.T, bin string) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	phoff := binary.LittleEndian.Uint64(b[0x20:])     // e_phoff
	phentsize := binary.LittleEndian.Uint16(b[0x36:]) // e_phentsize
	for i, p := range f.Progs {
		if p.Type == elf.PT_GNU_STACK {
			binary.LittleEndian.PutUint32(b[phoff+uint64(i)*uint64(phentsize):], uint32(elf.PT_INTERP))
			out := filepath.Join(t.TempDir(), "dynamic")
			if err := os.WriteFile(out, b, 0o755); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatalf("%s has no PT_GNU_STACK header to turn into PT_INTERP", bin)
	return ""
}

// asImageUser makes cmd run as the image's uid when the test is root.
func asImageUser(cmd *exec.Cmd) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID}}
	}
}
