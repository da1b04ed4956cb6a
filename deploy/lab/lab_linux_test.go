package lab_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/deploy/lab"
	"github.com/sipfed/sipfed/internal/testenv"
)

// The lab's own machinery: what up makes, status shows and down removes.
// The calls it carries are tested in test/lab.

var (
	built     testenv.LazySipfed
	sipfedBin string
)

func TestMain(m *testing.M) {
	code := m.Run()
	built.Remove()
	os.Exit(code)
}

// needRoot skips loudly (fails under CI) unless run as root with ip and
// redis-server, and returns a sipfed built once for the package.
func needRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "the lab makes network namespaces, veth pairs and a bridge: run the tests as root"
		if testenv.Required() {
			t.Fatalf("%s; CI requires it", msg)
		}
		t.Skipf("SKIPPING: %s", msg)
	}
	testenv.Need(t, "ip")
	testenv.Need(t, "redis-server")
	sipfedBin = built.Path(t)
	return sipfedBin
}

// leftovers lists what of lab prefix is still on the machine.
func leftovers(prefix string) []string {
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix+"-") {
			left = append(left, "namespace "+strings.Fields(line)[0])
		}
	}
	etc, _ := filepath.Glob("/etc/netns/" + prefix + "-*")
	left = append(left, etc...)
	for _, f := range []string{filepath.Join(lab.StateDir, prefix+".json"), filepath.Join(lab.StateDir, prefix)} {
		if _, err := os.Stat(f); err == nil {
			left = append(left, f)
		}
	}
	return left
}

// TestDownRemovesAHalfBuiltLab: namespaces, an /etc/netns folder and a
// process in one of them, as an up that died halfway leaves them (no
// marker): Down removes all of it, and again finds nothing to do.
func TestDownRemovesAHalfBuiltLab(t *testing.T) {
	needRoot(t)
	prefix := lab.NewPrefix()
	t.Cleanup(func() { lab.Down(prefix) })
	for _, args := range [][]string{{"netns", "add", prefix + "-sw"}, {"netns", "add", prefix + "-a1"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	if err := os.MkdirAll("/etc/netns/"+prefix+"-a1", 0o755); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("ip", "netns", "exec", prefix+"-a1", "sleep", "300")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	if got := lab.Labs(); !strings.Contains(strings.Join(got, " "), prefix) {
		t.Errorf("Labs() = %v: the half-built %s is missing", got, prefix)
	}
	if err := lab.Down(prefix); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the process in the lab's namespace survived Down")
		sleep.Process.Kill()
	}
	if left := leftovers(prefix); len(left) > 0 {
		t.Errorf("left after Down: %v", left)
	}
	if err := lab.Down(prefix); err != nil {
		t.Errorf("Down of a lab that is gone: %v", err)
	}
}

// TestTwoLabsWithTheCLI brings two labs up side by side with the command
// (detached: they outlive it), checks that status shows each one's hosts
// with their addresses and listening servers, takes one down while the
// other keeps answering, then the other.
func TestTwoLabsWithTheCLI(t *testing.T) {
	sipfed := needRoot(t)
	cli := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", cli, "github.com/sipfed/sipfed/deploy/lab/cmd/lab").CombinedOutput(); err != nil {
		t.Fatalf("building the lab command: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("lab %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	p, q := lab.NewPrefix(), lab.NewPrefix()
	for p == q {
		q = lab.NewPrefix()
	}
	t.Cleanup(func() { lab.Down(p); lab.Down(q) })
	start := time.Now()
	run("up", "-prefix", p, "-phones", "1", "-kamailio", "none", "-sipfed", sipfed)
	run("up", "-prefix", q, "-phones", "1", "-kamailio", "none", "-sipfed", sipfed)
	t.Logf("two labs up in %v", time.Since(start).Round(time.Millisecond))

	status := func(prefix string) string {
		t.Helper()
		out := run("status", prefix)
		for _, want := range []string{
			prefix + "-dns ", "udp  10.77.0.2:53 ",
			prefix + "-redis ", "tcp  10.77.0.3:6379 ",
			prefix + "-a1 ", "udp  10.77.0.11:5060 ", "tcp  10.77.0.11:5060 ", "tcp  10.77.0.11:8080 ",
			prefix + "-a2 ", "udp  10.77.0.12:5060 ",
			prefix + "-a3 ", "udp  10.77.0.13:5060 ",
			prefix + "-b1 ", "udp  10.77.0.21:5060 ",
			prefix + "-p1 ", "10.77.0.101/24",
			"(detached)", "bridge br0, 7 ports", // dns, redis, a1–a3, b1, p1
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status of %s lacks %q:\n%s", prefix, want, out)
			}
		}
		return out
	}
	t.Logf("status of %s:\n%s", p, status(p))
	status(q)

	run("down", p)
	if left := leftovers(p); len(left) > 0 {
		t.Errorf("left after down %s: %v", p, left)
	}
	run("down", p) // nothing left to do
	// The other lab, on the same addresses in namespaces of its own,
	// still answers.
	out := status(q)
	if strings.Contains(out, p) {
		t.Errorf("status of %s mentions %s:\n%s", q, p, out)
	}
	run("down", q)
	if left := leftovers(q); len(left) > 0 {
		t.Errorf("left after down %s: %v", q, left)
	}
}

// TestLabDiesWithItsMaker: a process brings a lab up (as a test does) and
// is killed with SIGKILL, so that no cleanup of its runs: every process of
// the lab dies with it, and Sweep, which the next Up runs, removes the
// namespaces and the marker.
func TestLabDiesWithItsMaker(t *testing.T) {
	sipfed := needRoot(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperLabMaker$")
	helper.Env = append(os.Environ(), "SIPFED_LAB_HELPER="+sipfed)
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	prefix := ""
	lines := bufio.NewScanner(stdout)
	for prefix == "" && lines.Scan() {
		prefix, _ = strings.CutPrefix(lines.Text(), "LAB ")
	}
	if prefix == "" {
		t.Fatal("the helper did not bring a lab up")
	}
	t.Cleanup(func() { lab.Down(prefix) })
	running := func() int {
		n := 0
		for _, h := range []string{"dns", "redis", "a1", "a2", "a3", "b1"} {
			out, _ := exec.Command("ip", "netns", "pids", prefix+"-"+h).Output()
			n += len(strings.Fields(string(out)))
		}
		return n
	}
	if n := running(); n != 6 {
		t.Fatalf("%d processes in the lab, want 6 (DNS, Redis, four nodes)", n)
	}
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for running() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d processes of the lab still run 5 s after its maker was killed", running())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// (Another package's Up may sweep it first: the same end.)
	lab.Sweep()
	if left := leftovers(prefix); len(left) > 0 {
		t.Errorf("left after Sweep: %v", left)
	}
}

// TestHelperLabMaker is TestLabDiesWithItsMaker's other process.
func TestHelperLabMaker(t *testing.T) {
	sipfed := os.Getenv("SIPFED_LAB_HELPER")
	if sipfed == "" {
		t.Skip("a helper of TestLabDiesWithItsMaker")
	}
	l, err := lab.Up(context.Background(), lab.Config{Sipfed: sipfed, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("LAB %s\n", l.Prefix)
	time.Sleep(time.Minute) // until killed
	l.Close()
}
