package interop

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	// auto_net_state_mon=0 and register_only_when_network_is_up=0: treat
	// the network as up even without a default route (only loopback here).
	rc := filepath.Join(home, "linphonerc")
	writeFile(t, rc, fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=0
sip_tls_port=0
default_proxy=0
auto_net_state_mon=0
register_only_when_network_is_up=0

[rtp]
audio_rtp_port=%d
audio_adaptive_jitt_comp_enabled=0

[video]
capture=0
display=0

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

func (l *linphonec) dump() string {
	var problems []string
	if b, err := os.ReadFile(l.log); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if (strings.Contains(line, "-error-") || strings.Contains(line, "-warning-")) && !strings.Contains(line, "alsa error") {
				problems = append(problems, line)
			}
		}
	}
	return "--- linphonec:\n" + tail(l.out.String(), 2000) + "\n--- linphonec log, errors and warnings:\n" + tail(strings.Join(problems, "\n"), 3000)
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

// TestLinphoneAnswersSipfedPhone: `sipfed phone call` from alice@a.test
// to linphonec registered as bob@b.test at the b.test proxy, auto
// answering, across the two domains: the call connects, and the audio
// flows straight between the two phones both ways: alice's statistics
// name linphonec's RTP port as the peer and count its packets, tshark sees
// alice's RTP arrive at linphonec's port and linphonec's leave it, and
// each side's recording holds the other's 440 Hz tone.
func TestLinphoneAnswersSipfedPhone(t *testing.T) {
	testenv.Need(t, "linphonec")
	testenv.Need(t, "tshark")
	f := startFederation(t, fedOptions{})
	dir := t.TempDir()
	tone, bobRec, aliceRec := filepath.Join(dir, "tone.wav"), filepath.Join(dir, "bob.wav"), filepath.Join(dir, "alice.wav")
	writeToneWAV(t, tone, 10)
	sipPort, rtpPort := testenv.FreePort(t), testenv.FreePorts(t, 2)
	bob := startLinphonec(t, f.b.addr(), "bob", "b.test", "pw-bob", sipPort, rtpPort, tone, bobRec)
	bob.waitRegistered(t, 10*time.Second, f.logs)
	capt := startCapture(t, 30)
	alice := runPhone(t, "pw-alice", "--aor", "alice@a.test", "--dns", f.dns, "--duration", "4s", "--record", aliceRec, "call", "bob@b.test")
	if err := alice.exit(t, 20*time.Second); err != nil {
		t.Fatalf("alice: %v\n%s\n%s\n%s", err, alice.dump(), bob.dump(), f.logs())
	}
	// linphonec closes its recording when the call has ended.
	bob.waitFor(t, "ended", 5*time.Second, f.logs)
	time.Sleep(300 * time.Millisecond)
	capt.stop(t)
	alice.wait(t, "answered", 0)
	as := stream(t, alice.wait(t, "hangup", 0))
	alicePort := port(fmt.Sprint(as["local"]))
	sipPorts := []int{f.a.Port, f.b.Port, sipPort}
	dnsPort := port(f.dns)
	in := capt.count(t, sipPorts, dnsPort, fmt.Sprintf("rtp && udp.srcport==%d && udp.dstport==%d", alicePort, rtpPort))
	out := capt.count(t, sipPorts, dnsPort, fmt.Sprintf("rtp && udp.srcport==%d && udp.dstport==%d", rtpPort, alicePort))
	t.Logf("alice: %v", as)
	t.Logf("tshark: RTP alice → linphonec %d packets, linphonec → alice %d", in, out)
	if port(fmt.Sprint(as["remote"])) != rtpPort {
		t.Errorf("alice's media peer %v is not linphonec's RTP port %d", as["remote"], rtpPort)
	}
	for _, proxy := range []string{f.a.addr(), f.b.addr()} {
		if as["remote"] == proxy {
			t.Errorf("media went to a proxy: %v", as["remote"])
		}
	}
	if n, _ := as["packets_received"].(float64); n < 50 {
		t.Errorf("alice received %v packets, want ≥ 50", as["packets_received"])
	}
	if in < 50 || out < 50 {
		t.Errorf("RTP on the wire: alice → linphonec %d packets, linphonec → alice %d; want ≥ 50 each way", in, out)
	}
	if b, err := os.ReadFile(bobRec); err == nil { os.WriteFile("/tmp/bobrec.wav", b, 0o644); t.Logf("DEBUG %d bytes %x", len(b), b[:48]) } // DEBUG
	if b, err := os.ReadFile(aliceRec); err == nil { os.WriteFile("/tmp/alicerec.wav", b, 0o644); t.Logf("DEBUG %d bytes %x", len(b), b[:48]) } // DEBUG
	if b, err := os.ReadFile(capt.file); err == nil { os.WriteFile("/tmp/call.pcapng", b, 0o644); t.Logf("DEBUG alice %d linphone %d", alicePort, rtpPort) } // DEBUG
	bobSNR, aliceSNR := recordedToneSNR(t, bobRec, 0.5, 2), recordedToneSNR(t, aliceRec, 0.5, 2)
	t.Logf("440 Hz over the rest: %.1f dB in linphonec's recording, %.1f dB in alice's", bobSNR, aliceSNR)
	if bobSNR < 10 {
		t.Errorf("linphonec's recording of alice: 440 Hz at %.1f dB over the rest, want ≥ 10", bobSNR)
	}
	if aliceSNR < 10 {
		t.Errorf("alice's recording of linphonec: 440 Hz at %.1f dB over the rest, want ≥ 10", aliceSNR)
	}
}
