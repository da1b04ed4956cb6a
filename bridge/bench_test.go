package bridge_test

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	prtp "github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sipfed/sipfed/bridge"
	"github.com/sipfed/sipfed/media/sdp"
)

// bridgedCall sets up a PCMU call from a pion "browser" to a plain phone
// through b and waits until the browser leg is connected.
func bridgedCall(tb testing.TB, b *bridge.Bridge) (*browser, *phone) {
	tb.Helper()
	br := newBrowser(tb, false)
	ph := newPhone(tb)
	s, err := b.Open("bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	ctx := context.Background()
	plainOffer, err := s.Offer(ctx, br.offer(tb), false)
	if err != nil {
		tb.Fatal(err)
	}
	po, _ := sdp.Parse(plainOffer)
	ans, _ := sdp.Answer(po, ph.config(sdp.PCMU, sdp.TelephoneEvent))
	ab, _ := ans.Marshal()
	webAnswer, err := s.Answer(ctx, ab)
	if err != nil {
		tb.Fatal(err)
	}
	if err := br.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(webAnswer)}); err != nil {
		tb.Fatal(err)
	}
	ph.s.SetRemote(po.Audio().RTPAddr(), po.Audio().RTCPAddr())
	waitFor(tb, "the browser leg", func() bool { return br.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
	// Prime both directions (symmetric RTP latches, the track binds).
	for range 5 {
		ph.s.WriteSample(0, make([]byte, 160), 160, false)
		br.audio.WriteRTP(&prtp.Packet{Header: prtp.Header{Version: 2}, Payload: make([]byte, 160)})
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(tb, "media both ways", func() bool { return br.got["audio"].Load() > 0 && ph.got.Load() > 0 })
	return br, ph
}

// latencies collects the one-way delays that payloads carry (their first
// 8 bytes are the send time in Unix nanoseconds).
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) probe() *func([]byte) {
	f := func(p []byte) {
		if len(p) < 8 {
			return
		}
		d := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(p)))
		l.mu.Lock()
		l.d = append(l.d, d)
		l.mu.Unlock()
	}
	return &f
}

func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-µs")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run sends b.N packets with send, in bursts of 20 every millisecond
// (no faster than the receiver takes them), and reports the delay from
// sending to the receiver's read, and the CPU time of the whole process
// (phone, bridge and pion browser: an upper bound for the bridge) per
// packet and, from that, the bridged calls (50 packets/s each way) one
// core carries.
func run(b *testing.B, got func() int64, send func(payload []byte)) {
	payload := make([]byte, 160)
	start := got()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		send(payload)
		if i%20 == 19 {
			deadline := time.Now().Add(time.Second)
			for got()-start < int64(i)-40 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for got()-start < int64(b.N)*99/100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	perPacket := float64(cpu.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perPacket/1000, "cpu-µs/pkt")
	b.ReportMetric(1e9/(perPacket*100), "calls/core")
	if lost := int64(b.N) - (got() - start); lost > int64(b.N)/100 {
		b.Logf("%d of %d packets not received", lost, b.N)
	}
}

// BenchmarkBridgePlainToBrowser: PCMU from a plain phone through the
// bridge (payload type map, continuity, SRTP) to a pion browser.
func BenchmarkBridgePlainToBrowser(b *testing.B) {
	br, ph := bridgedCall(b, newBridge(b))
	var lat latencies
	br.probe.Store(lat.probe())
	run(b, func() int64 { return br.got["audio"].Load() }, func(p []byte) { ph.s.WriteSample(0, p, 160, false) })
	lat.report(b)
}

// BenchmarkBridgeBrowserToPlain: the other way, SRTP in, plain RTP out.
func BenchmarkBridgeBrowserToPlain(b *testing.B) {
	br, ph := bridgedCall(b, newBridge(b))
	var lat latencies
	ph.probe.Store(lat.probe())
	var seq uint16
	pkt := &prtp.Packet{Header: prtp.Header{Version: 2}}
	run(b, ph.got.Load, func(p []byte) {
		seq++
		pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = seq, uint32(seq)*160, p
		br.audio.WriteRTP(pkt)
	})
	lat.report(b)
}

// BenchmarkDirectPlain is the baseline: the same packets from one plain
// phone to another, no bridge. The bridge adds the difference.
func BenchmarkDirectPlain(b *testing.B) {
	a, c := newPhone(b), newPhone(b)
	a.s.SetRemote(c.s.LocalAddr(), c.s.LocalRTCPAddr())
	var lat latencies
	c.probe.Store(lat.probe())
	run(b, c.got.Load, func(p []byte) { a.s.WriteSample(0, p, 160, false) })
	lat.report(b)
}
