package interop

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/media/file"
)

// linphonec is a running linphonec (the console Linphone, Debian's
// linphone-cli), driven through its stdin.
type linphonec struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testenv.Buffer
	log   string // its debug log (-d 6 -l), SIP messages included
	done  chan error
}

// startLinphonec runs linphonec registered as user@domain (password) at
// the proxy (host:port, over UDP), with SIP on 127.0.0.1:sipPort and RTP
// on rtpPort (RTCP on the next one), answering every call (-a). It has no
// sound card: it sends the WAV file play and records what it receives
// into the WAV file record (its "file mode").
func startLinphonec(t *testing.T, proxy, user, domain, password string, sipPort, rtpPort int, play, record string) *linphonec {
	t.Helper()
	bin := testenv.Need(t, "linphonec")
	home := t.TempDir()
	// linphonec's core never starts (no SIP socket, registered=-1) when
	// it cannot create its database in ~/.local/share/linphone.
	if err := os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(home, "linphonerc")
	writeFile(t, rc, fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=0
sip_tls_port=0
default_proxy=0

[rtp]
audio_rtp_port=%d

[proxy_0]
reg_proxy=<sip:%s;transport=udp>
reg_identity=sip:%s@%s
reg_expires=300
reg_sendregister=1
publish=0

[auth_info_0]
username=%s
passwd=%s
domain=%s
`, sipPort, rtpPort, proxy, user, domain, user, password, domain))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	l := &linphonec{out: &testenv.Buffer{}, log: filepath.Join(home, "linphonec.log"), done: make(chan error, 1)}
	l.cmd = exec.CommandContext(ctx, bin, "-c", rc, "-a", "-d", "6", "-l", l.log)
	l.cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_DATA_HOME="+filepath.Join(home, ".local", "share"))
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	var err error
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start linphonec: %v", err)
	}
	go func() { l.done <- l.cmd.Wait(); cancel() }()
	t.Cleanup(func() { l.cmd.Process.Kill(); <-l.done })
	// Files instead of a sound card even where there is one; play and
	// record apply to the calls that follow.
	l.command(t, "soundcard use files")
	l.command(t, "play "+play)
	l.command(t, "record "+record)
	return l
}

func (l *linphonec) command(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, line+"\n"); err != nil {
		t.Fatalf("linphonec %q: %v\n%s", line, err, l.dump())
	}
}

// waitFor waits until linphonec's output contains s.
func (l *linphonec) waitFor(t *testing.T, s string, timeout time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(l.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("linphonec did not print %q within %v\n%s\n%s", s, timeout, l.dump(), logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRegistered asks `status register` until linphonec says it is
// registered.
func (l *linphonec) waitRegistered(t *testing.T, timeout time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(l.out.String(), "registered, identity=") {
		if time.Now().After(deadline) {
			t.Fatalf("linphonec did not register within %v\n%s\n%s", timeout, l.dump(), logs())
		}
		l.command(t, "status register")
		time.Sleep(250 * time.Millisecond)
	}
}

// dump returns linphonec's output, without the polling of
// waitRegistered, and the errors, warnings and state changes of its log.
func (l *linphonec) dump() string {
	var out, log []string
	for _, line := range strings.Split(l.out.String(), "\n") {
		if !strings.Contains(line, "status register") && !strings.HasPrefix(line, "registered=-1") {
			out = append(out, line)
		}
	}
	if b, err := os.ReadFile(l.log); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if (strings.Contains(line, "-error-") || strings.Contains(line, "-warning-") || strings.Contains(line, "moving from state")) && !strings.Contains(line, "alsa error") {
				log = append(log, line)
			}
		}
	}
	return "--- linphonec:\n" + tail(strings.Join(out, "\n"), 2000) + "\n--- linphonec log, errors, warnings and state changes:\n" + tail(strings.Join(log, "\n"), 3000)
}

// writeToneWAV writes seconds of a 440 Hz tone as 8 kHz 16-bit mono WAV.
func writeToneWAV(t *testing.T, path string, seconds int) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	w, err := file.NewWAVWriter(fh, file.PlayoutRate)
	if err != nil {
		t.Fatal(err)
	}
	tone, frame := file.NewTone(440, 0.3), make([]int16, 160)
	for i := 0; i < seconds*file.PlayoutRate/len(frame); i++ {
		tone.ReadFrame(frame)
		if err := w.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// rtpStats returns the packets linphonec sent and received in its first
// audio session, from the statistics oRTP logs when the session ends.
func (l *linphonec) rtpStats(t *testing.T, timeout time.Duration) (sent, received int) {
	t.Helper()
	re := regexp.MustCompile(`AUDIO SESSION'S RTP STATISTICS(?s:.*?)ortp-message-sent +(\d+) packets(?s:.*?)ortp-message-received +(\d+) packets`)
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(l.log)
		if m := re.FindSubmatch(b); m != nil {
			sent, _ = strconv.Atoi(string(m[1]))
			received, _ = strconv.Atoi(string(m[2]))
			return sent, received
		}
		if time.Now().After(deadline) {
			t.Fatalf("no RTP statistics in linphonec's log within %v\n%s", timeout, l.dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// toneWindows returns in how many of the 15 windows of 0.2 s of a
// recording, from 0.6 s to 3.6 s, the 440 Hz tone is at least 10 dB over
// the rest. Windows, not one span: linphonec's recording jumps in phase
// now and then (its audio mixer entering bypass mode a second into the
// call, its ticker late on a loaded machine), and a jump cancels a tone
// measured across it.
func toneWindows(t *testing.T, path string) int {
	t.Helper()
	n := 0
	for i := range 15 {
		from := 0.5 + 0.2*float64(i) // recordedToneSNR skips the first 0.1 s
		if recordedToneSNR(t, path, from, from+0.3) >= 10 {
			n++
		}
	}
	return n
}

// TestLinphoneAnswersSipfedPhone: `sipfed phone call` from alice@a.test
// to linphonec registered as bob@b.test at the b.test proxy, answering
// on its own (-a), across the two domains: the call connects, and the
// audio flows straight between the two phones both ways: alice's media
// peer is linphonec's RTP port, each side's RTP statistics count the
// other's packets, and each side's recording holds the other's 440 Hz
// tone.
func TestLinphoneAnswersSipfedPhone(t *testing.T) {
	testenv.Need(t, "linphonec")
	f := startFederation(t, fedOptions{})
	dir := t.TempDir()
	tone, bobRec, aliceRec := filepath.Join(dir, "tone.wav"), filepath.Join(dir, "bob.wav"), filepath.Join(dir, "alice.wav")
	writeToneWAV(t, tone, 10)
	sipPort, rtpPort := testenv.FreePort(t), testenv.FreePorts(t, 2)
	bob := startLinphonec(t, f.b.addr(), "bob", "b.test", "pw-bob", sipPort, rtpPort, tone, bobRec)
	bob.waitRegistered(t, 10*time.Second, f.logs)
	alice := runPhone(t, "pw-alice", "--aor", "alice@a.test", "--dns", f.dns, "--duration", "4s", "--record", aliceRec, "call", "bob@b.test")
	if err := alice.exit(t, 20*time.Second); err != nil {
		t.Fatalf("alice: %v\n%s\n%s\n%s", err, alice.dump(), bob.dump(), f.logs())
	}
	// "Call 1 with sip:alice@a.test ended": linphonec has stopped its
	// streams and closed its recording.
	bob.waitFor(t, "ended", 5*time.Second, f.logs)
	alice.wait(t, "answered", 0)
	as := stream(t, alice.wait(t, "hangup", 0))
	sent, received := bob.rtpStats(t, 5*time.Second)
	t.Logf("alice: %v", as)
	t.Logf("linphonec: RTP on port %d, sent %d packets, received %d", rtpPort, sent, received)
	if port(fmt.Sprint(as["remote"])) != rtpPort {
		t.Errorf("alice's media peer %v is not linphonec's RTP port %d", as["remote"], rtpPort)
	}
	for _, proxy := range []string{f.a.addr(), f.b.addr()} {
		if as["remote"] == proxy {
			t.Errorf("media went to a proxy: %v", as["remote"])
		}
	}
	if n, _ := as["packets_received"].(float64); n < 50 || received < 50 {
		t.Errorf("packets received: alice %v, linphonec %d; want ≥ 50 each", as["packets_received"], received)
	}
	bobTone, aliceTone := toneWindows(t, bobRec), toneWindows(t, aliceRec)
	t.Logf("440 Hz clear in %d of 15 windows of linphonec's recording, %d of alice's", bobTone, aliceTone)
	if bobTone < 10 || aliceTone < 10 {
		t.Errorf("440 Hz at least 10 dB over the rest in %d of 15 windows of linphonec's recording of alice, %d of alice's of linphonec; want ≥ 10 each", bobTone, aliceTone)
	}
}
