package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sipfed/sipfed/internal/testenv"
)

// runPhoneLoad measures one `sipfed phone answer --echo` holding calls
// calls at once: SIPp places them (from another domain, through b.test's
// proxy) at rate a second, each with 10 s of PCMA RTP that the phone
// sends back. It reports the phone's CPU time per call-second, its peak
// memory, and the packets lost and echoed, from the phone's own hangup
// statistics.
func runPhoneLoad(bin string, calls, rate int) error {
	work, err := os.MkdirTemp("", "sipfed-bench-phone")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var procs []*exec.Cmd
	defer func() { stopAll(procs) }()
	users := filepath.Join(work, "b-users.txt")
	add := exec.Command(bin, "user", "add", "--users", users, "--password-stdin", "bob@b.test")
	add.Stdin = strings.NewReader("pw-bob\n")
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("user add: %v: %s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	serve := exec.Command(bin, "serve", "--domain", "b.test", "--listen", "udp:"+addr, "--listen", "tcp:"+addr,
		"--users", users, "--log-level", "error", "--pike-rate", "0", "--dns", "127.0.0.1:1")
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		return err
	}
	procs = append(procs, serve)
	if err := waitTCP(addr); err != nil {
		return err
	}

	phone := exec.Command(bin, "phone", "--aor", "bob@b.test", "--password-stdin", "--proxy", addr, "--json",
		"--echo", "--media-timeout", "0", "--max-calls", strconv.Itoa(calls), "answer")
	phone.Stdin = strings.NewReader("pw-bob\n")
	phone.Stderr = os.Stderr
	stdout, err := phone.StdoutPipe()
	if err != nil {
		return err
	}
	if err := phone.Start(); err != nil {
		return err
	}
	procs = append(procs, phone)
	events := make(chan map[string]any, calls+16)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			var m map[string]any
			if json.Unmarshal(s.Bytes(), &m) == nil {
				events <- m
			}
		}
		close(events)
	}()
	select {
	case m := <-events:
		if m["event"] != "registered" {
			return fmt.Errorf("the phone did not register: %v", m)
		}
	case <-time.After(10 * time.Second):
		return errors.New("the phone did not register within 10 s")
	}

	inf := filepath.Join(work, "bob.csv")
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\nbob;b.test\n"), 0o600); err != nil {
		return err
	}
	// SIPp plays a pcap: 10 s of PCMA (500 packets) written here, so that
	// what the phone did not get is a real loss figure.
	pcap := filepath.Join(work, "pcma-10s.pcap")
	if err := writePCMAPcap(pcap, 500); err != nil {
		return err
	}
	tmpl, err := os.ReadFile("test/interop/testdata/uac_rtp_load.xml")
	if err != nil {
		return err
	}
	scenario := filepath.Join(work, "uac_rtp_load.xml")
	if err := os.WriteFile(scenario, []byte(strings.ReplaceAll(string(tmpl), "/usr/share/sip-tester/g711a.pcap", pcap)), 0o600); err != nil {
		return err
	}
	cpu0 := procCPU(phone.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sipp := exec.CommandContext(ctx, "sipp", addr, "-sf", scenario, "-inf", inf, "-i", "127.0.0.1", "-p", strconv.Itoa(freePort()),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort()), "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate), "-l", strconv.Itoa(calls),
		"-buff_size", "4194304", "-timeout", "100s", "-recv_timeout", "10000", "-nostdin", "-trace_stat", "-fd", "1")
	sipp.Dir = work
	start := time.Now()
	out, err := sipp.CombinedOutput()
	elapsed := time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return fmt.Errorf("sipp: %v: %s", err, out)
	}
	ok, failed := testenv.SIPpCounts(string(out))
	cpu := procCPU(phone.Process.Pid) - cpu0
	peak := procPeakRSS(phone.Process.Pid)

	var ended int
	var received, sent, lost float64
	deadline := time.After(15 * time.Second)
	for ended < ok {
		select {
		case m, open := <-events:
			if !open {
				deadline = time.After(0)
				continue
			}
			if m["event"] != "hangup" {
				continue
			}
			ended++
			streams, _ := m["streams"].([]any)
			for _, s := range streams {
				st, _ := s.(map[string]any)
				r, _ := st["packets_received"].(float64)
				sn, _ := st["packets_sent"].(float64)
				l, _ := st["lost"].(float64)
				received, sent, lost = received+r, sent+sn, lost+l
			}
		case <-deadline:
			ended = ok
		}
	}
	lost = float64(ok)*500 - received // what SIPp sent and the phone did not count
	callSeconds := float64(ok) * 10
	fmt.Printf("\nOne `sipfed phone answer --echo` taking %d calls from SIPp at %d/s (up to %d at once), each with 10 s of PCMA RTP (500 packets) sent back; %.0f s in all\n",
		calls, rate, calls, elapsed.Seconds())
	fmt.Printf("%-10s %8s %8s %12s %12s %10s %14s %12s\n", "calls", "ok", "failed", "packets in", "echoed", "lost", "cpu ms/call·s", "peak RSS MB")
	fmt.Printf("%-10d %8d %8d %12.0f %12.0f %10.0f %14.2f %12.1f\n", calls, ok, failed, received, sent, lost,
		1000*cpu/max(callSeconds, 1), float64(peak)/1024)
	fmt.Printf("RESULT phone-echo calls=%d ok=%d failed=%d packets_in=%.0f echoed=%.0f lost=%.0f cpu_ms_per_call_second=%.2f peak_rss_kb=%d\n",
		calls, ok, failed, received, sent, lost, 1000*cpu/max(callSeconds, 1), peak)
	return nil
}

// procCPU is the user and system CPU time of process pid, in seconds.
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	k, _ := strconv.ParseInt(fields[12], 10, 64)
	return float64(u+k) / 100
}

// procPeakRSS is the peak resident memory of process pid, in kB (VmHWM).
func procPeakRSS(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// writePCMAPcap writes a pcap (Ethernet, IPv4, UDP) of n RTP packets of
// PCMA silence, 20 ms apart: what SIPp's play_pcap_audio sends.
func writePCMAPcap(path string, n int) error {
	var b []byte
	le32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	le16 := func(v uint16) { b = binary.LittleEndian.AppendUint16(b, v) }
	le32(0xa1b2c3d4)
	le16(2)
	le16(4)
	le32(0)
	le32(0)
	le32(65535)
	le32(1) // Ethernet
	for i := 0; i < n; i++ {
		rtp := make([]byte, 12+160)
		rtp[0], rtp[1] = 0x80, 8
		binary.BigEndian.PutUint16(rtp[2:], uint16(i))
		binary.BigEndian.PutUint32(rtp[4:], uint32(i*160))
		binary.BigEndian.PutUint32(rtp[8:], 0x5eed)
		for j := 12; j < len(rtp); j++ {
			rtp[j] = 0xd5
		}
		udp := make([]byte, 8)
		binary.BigEndian.PutUint16(udp[0:], 6000)
		binary.BigEndian.PutUint16(udp[2:], 6002)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(rtp)))
		ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(rtp)))
		eth := []byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00}
		frame := append(append(append(eth, ip...), udp...), rtp...)
		us := i * 20000
		le32(uint32(us / 1000000))
		le32(uint32(us % 1000000))
		le32(uint32(len(frame)))
		le32(uint32(len(frame)))
		b = append(b, frame...)
	}
	return os.WriteFile(path, b, 0o600)
}
