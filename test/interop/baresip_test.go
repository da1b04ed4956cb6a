package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/testenv"
)

// baresipConfig writes a headless baresip configuration (no sound card:
// ausine source, null player) for one account on 127.0.0.1 and returns
// its folder. Extra lines are appended to the config file.
func baresipConfig(t *testing.T, sipPort, rtpBase int, account string, extra ...string) string {
	t.Helper()
	return baresipConfigAt(t, "127.0.0.1", sipPort, rtpBase, account, extra...)
}

// baresipConfigAt is baresipConfig with SIP and RTP on the IPv4 address ip.
func baresipConfigAt(t *testing.T, ip string, sipPort, rtpBase int, account string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`poll_method epoll
sip_listen %[1]s:%[2]d
net_interface %[1]s
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
audio_player alsa,null
audio_alert alsa,null
rtp_ports %[3]d-%[4]d
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module alsa.so
module account.so
module uuid.so
`, ip, sipPort, rtpBase, rtpBase+19)
	for _, line := range extra {
		config += line + "\n"
	}
	writeFile(t, filepath.Join(dir, "config"), config)
	writeFile(t, filepath.Join(dir, "accounts"), account+"\n")
	return dir
}

// TestBaresipRegisters starts baresip 1.0 against `sipfed serve` with the
// Redis store and finds its binding there, with baresip's User-Agent.
func TestBaresipRegisters(t *testing.T) {
	bin := testenv.Need(t, "baresip")
	r := testenv.StartRedis(t)
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	addUsers(t, 1, []string{"--store", r.URL()}, inf)
	srv := startServe(t, "--store", r.URL(), "--users", "redis")

	sipPort := testenv.FreePorts(t, 2) // baresip takes the next port for TLS
	account := fmt.Sprintf(`<sip:u0001@a.test>;auth_pass=pw-u0001;outbound="sip:%s;transport=udp";regint=300;answermode=auto;audio_codecs=PCMU`, srv.addr())
	cfg := baresipConfig(t, sipPort, 10000+sipPort%1000*20, account)
	waitForBaresipBinding(t, bin, cfg, r, srv, func(b string) bool { return strings.Contains(b, "baresip") })
}

// TestBaresipRegistersOverTLS: baresip 1.0 registers over TLS to a tls:
// listener whose certificate comes from a private CA that baresip is
// given (sip_cafile), and its binding is stored with transport tls.
func TestBaresipRegistersOverTLS(t *testing.T) {
	bin := testenv.Need(t, "baresip")
	r := testenv.StartRedis(t)
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	addUsers(t, 1, []string{"--store", r.URL()}, inf)
	ca := testenv.NewCA(t)
	cert, key := ca.Issue(t, "a.test", "127.0.0.1")
	tlsPort := testenv.FreePort(t)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	srv := startServe(t, "--store", r.URL(), "--users", "redis", "--listen", "tls:"+tlsAddr, "--tls-cert", cert, "--tls-key", key)

	sipPort := testenv.FreePorts(t, 2) // baresip takes the next port for TLS
	account := fmt.Sprintf(`<sip:u0001@a.test;transport=tls>;auth_pass=pw-u0001;outbound="sip:%s;transport=tls";regint=300;answermode=auto;audio_codecs=PCMU`, tlsAddr)
	cfg := baresipConfig(t, sipPort, 10000+sipPort%1000*20, account, "sip_cafile "+ca.File)
	waitForBaresipBinding(t, bin, cfg, r, srv, func(b string) bool {
		return strings.Contains(b, "baresip") && strings.Contains(strings.ToLower(b), "tls")
	})
}

// waitForBaresipBinding runs baresip with cfg for up to 20 s and waits
// until u0001@a.test has one binding in Redis that ok accepts.
func waitForBaresipBinding(t *testing.T, bin, cfg string, r *testenv.Redis, srv *server, ok func(binding string) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", cfg, "-t", "20")
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "HOME="+cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer rdb.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		vals, err := rdb.HVals(context.Background(), "sipfed:loc:{u0001@a.test}").Result()
		if err == nil && len(vals) == 1 && ok(vals[0]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such baresip binding in Redis (%v, %v)\n--- baresip:\n%s\n--- sipfed:\n%s", vals, err, tail(out.String(), 3000), tail(srv.out.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
