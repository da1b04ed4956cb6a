package sipcore

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// emfileChild is set in the environment of the process that
// TestLimitListenerSurvivesDescriptorExhaustion starts.
const emfileChild = "SIPCORE_TEST_EMFILE_CHILD"

// TestLimitListenerSurvivesDescriptorExhaustion runs an echo server on a
// LimitListener with no connection limits in a child process whose
// RLIMIT_NOFILE leaves room for 20 connections, and opens 80: the child
// runs out of descriptors, sheds the extra connections at once (rather
// than leaving them in the backlog), keeps serving the ones it holds, and
// accepts again once some are closed. A plain accept loop (sipgo's)
// would have returned on the first EMFILE.
func TestLimitListenerSurvivesDescriptorExhaustion(t *testing.T) {
	if os.Getenv(emfileChild) != "" {
		runEMFILEChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLimitListenerSurvivesDescriptorExhaustion$")
	cmd.Env = append(os.Environ(), emfileChild+"=1")
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.Lines())
		}
	}()
	lines := bufio.NewScanner(out)
	if !lines.Scan() {
		t.Fatal("the child printed no address")
	}
	addr, ok := strings.CutPrefix(lines.Text(), "addr ")
	if !ok {
		t.Fatalf("child: %q", lines.Text())
	}
	go io.Copy(io.Discard, out)

	var held, shed []net.Conn
	for range 80 {
		c := dialTCPFrom(t, "127.0.0.1", addr)
		if echoesPing(c) {
			held = append(held, c)
		} else {
			shed = append(shed, c)
		}
	}
	t.Logf("%d connections served, %d shed", len(held), len(shed))
	if len(held) < 5 || len(held) > 25 || len(shed) < 50 {
		t.Fatalf("%d connections served, %d shed: want about 20 served, the rest shed", len(held), len(shed))
	}
	for _, c := range shed {
		if !closedByPeer(c, time.Second) {
			t.Fatal("a connection beyond the descriptors is neither served nor closed")
		}
	}
	for _, c := range held {
		if !echoesPing(c) {
			t.Fatal("a held connection stopped being served")
		}
	}
	if got := stderr.Lines("level=WARN", "tcp connection refused", "reason=descriptors", "peer=127.0.0.1"); len(got) != 1 {
		t.Errorf("want one warn line for the shed connections, got:\n%s", strings.Join(stderr.Lines(), "\n"))
	}

	// Close some: new connections are served again.
	for _, c := range held[:5] {
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	served := 0
	for range 3 {
		if echoesPing(dialTCPFrom(t, "127.0.0.1", addr)) {
			served++
		}
	}
	if served != 3 {
		t.Errorf("after closing 5 connections, %d of 3 new ones were served", served)
	}
	select {
	case err := <-exited:
		t.Fatalf("the child exited: %v", err)
	default:
	}
}

// echoes reports whether c is served: what is written comes back.
func echoesPing(c net.Conn) bool {
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == "ping"
}

// runEMFILEChild is the child's side: an echo server with 20 spare
// descriptors. It prints its address, and exits 1 if Accept ever returns.
func runEMFILEChild() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	l := LimitListener(inner, ConnLimits{MaxConns: -1, MaxPerSource: -1, IdleTimeout: -1}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	lim := syscall.Rlimit{Cur: uint64(len(fds) + 20), Max: uint64(len(fds) + 20)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("addr", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "Accept returned:", err)
			os.Exit(1)
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}
