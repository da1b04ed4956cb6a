package rtp_test

import (
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/sipfed/sipfed/media/codec/g711"
	"github.com/sipfed/sipfed/media/file"
	mrtp "github.com/sipfed/sipfed/media/rtp"
)

// relay sits between two rtcp-mux sessions like a bad network. From A to B it
// drops the RTP packets it is told to and delays each by a random 0-maxJitter
// (so packets overtake each other); RTCP goes through both ways after a
// fixed delay. It keeps its own RFC 3550 A.8 jitter of what it forwards to
// B, which is what B should report.
type relay struct {
	sideA, sideB *net.UDPConn
	b            netip.AddrPort
	drop         func(seq uint16) bool
	maxJitter    time.Duration
	rtcpDelay    time.Duration
	rng          *rand.Rand

	mu        sync.Mutex
	a         netip.AddrPort
	dropped   int
	jitter    float64
	transit   int64
	forwarded int
	epoch     time.Time
}

func newRelay(t *testing.T, b netip.AddrPort) *relay {
	ca, _ := listen(t, true)
	cb, _ := listen(t, true)
	r := &relay{sideA: ca, sideB: cb, b: b, rng: rand.New(rand.NewPCG(1, 2)), epoch: time.Now()}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return r
}

func (r *relay) addr() netip.AddrPort { return r.sideA.LocalAddr().(*net.UDPAddr).AddrPort() }

func isRTCP(b []byte) bool { return len(b) > 1 && b[1] >= 192 && b[1] <= 223 }

func (r *relay) run() {
	go func() { // A -> B
		buf := make([]byte, 1500)
		for {
			n, from, err := r.sideA.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pkt := append([]byte(nil), buf[:n]...)
			r.mu.Lock()
			r.a = from
			if isRTCP(pkt) {
				r.mu.Unlock()
				time.AfterFunc(r.rtcpDelay, func() { r.sideB.WriteToUDPAddrPort(pkt, r.b) })
				continue
			}
			var p rtp.Packet
			if p.Unmarshal(pkt) != nil || r.drop(p.SequenceNumber) {
				r.dropped++
				r.mu.Unlock()
				continue
			}
			d := time.Duration(r.rng.Int64N(int64(r.maxJitter) + 1))
			r.mu.Unlock()
			time.AfterFunc(d, func() {
				r.mu.Lock()
				r.sideB.WriteToUDPAddrPort(pkt, r.b)
				r.account(p.Timestamp)
				r.mu.Unlock()
			})
		}
	}()
	go func() { // B -> A: RTCP only in this test
		buf := make([]byte, 1500)
		for {
			n, _, err := r.sideB.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pkt := append([]byte(nil), buf[:n]...)
			time.AfterFunc(r.rtcpDelay, func() {
				r.mu.Lock()
				a := r.a
				r.mu.Unlock()
				r.sideA.WriteToUDPAddrPort(pkt, a)
			})
		}
	}()
}

// account applies RFC 3550 A.8 to a forwarded packet; mu is held.
func (r *relay) account(ts uint32) {
	arrival := uint32(uint64(time.Since(r.epoch)/time.Microsecond) * 8000 / 1e6)
	transit := int64(int32(arrival - ts))
	if r.forwarded > 0 {
		d := math.Abs(float64(transit - r.transit))
		r.jitter += (d - r.jitter) / 16
	}
	r.transit = transit
	r.forwarded++
}

// TestLossJitterRTT runs 5 s of PCMU through the relay with 10% loss (a
// fixed pseudo-random pattern), 0-40 ms of delay per packet, and 30 ms each
// way for RTCP. Tolerances: cumulative loss exact at the receiver and, once
// its next report arrives, at the sender; interarrival jitter within 1.5 ms
// of the relay's own A.8 figure (about 13 ms expected); RTT at least the
// 60 ms injected and under 60 ms + 150 ms of scheduling slack.
func TestLossJitterRTT(t *testing.T) {
	t.Parallel()
	const frames = 250
	b := newSession(t, true, mrtp.WithRTCPInterval(200*time.Millisecond), mrtp.WithReceiveTimeout(time.Second))
	rel := newRelay(t, b.LocalAddr())
	rel.maxJitter = 40 * time.Millisecond
	rel.rtcpDelay = 30 * time.Millisecond
	lossRNG := rand.New(rand.NewPCG(3, 4))
	lost := map[uint16]bool{}
	var first uint16
	a := newSession(t, true, mrtp.WithRTCPInterval(200*time.Millisecond), mrtp.WithRemote(rel.addr(), netip.AddrPort{}))
	rel.drop = func(seq uint16) bool {
		if len(lost) == 0 && first == 0 {
			first = seq
		}
		i := int(seq - first)
		if i > 0 && i < frames-10 && lossRNG.IntN(10) == 0 {
			lost[seq] = true
			return true
		}
		return false
	}
	rel.run()
	go func() { // A reads too: with rtcp-mux that is where its RTCP comes in
		var p rtp.Packet
		for a.ReadRTP(&p) == nil {
		}
	}()

	got := make(chan struct{})
	go func() {
		defer close(got)
		var p rtp.Packet
		for b.ReadRTP(&p) == nil {
		}
	}()
	sendAudio(t, a, g711.Ulaw, file.NewTone(1000, 0.5), frames)
	<-got

	rel.mu.Lock()
	dropped, want := rel.dropped, time.Duration(rel.jitter*float64(time.Second)/8000)
	rel.mu.Unlock()
	st := b.Stats()
	t.Logf("dropped %d of %d; receiver: lost %d, jitter %v (relay %v), fraction in last interval %.2f",
		dropped, frames, st.PacketsLost, st.Jitter, want, st.FractionLost)
	if st.PacketsLost != int64(dropped) || st.PacketsReceived != uint64(frames-dropped) {
		t.Errorf("receiver counted %d lost, %d received; relay dropped %d of %d", st.PacketsLost, st.PacketsReceived, dropped, frames)
	}
	if d := st.Jitter - want; d > 1500*time.Microsecond || d < -1500*time.Microsecond {
		t.Errorf("jitter %v, relay measured %v", st.Jitter, want)
	}
	if st.FractionLost < 0 || st.FractionLost > 1 {
		t.Errorf("fraction lost %v", st.FractionLost)
	}

	// The sender learns the same figures, and the round trip, from the
	// receiver's reports (B goes on reporting after its reader stopped).
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().RemotePacketsLost != int64(dropped) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	sa := a.Stats()
	t.Logf("sender: peer reports %d lost, jitter %v; RTT %v", sa.RemotePacketsLost, sa.RemoteJitter, sa.RTT)
	if sa.RemotePacketsLost != int64(dropped) {
		t.Errorf("sender told %d lost, want %d", sa.RemotePacketsLost, dropped)
	}
	if sa.RTT < 60*time.Millisecond || sa.RTT > 210*time.Millisecond {
		t.Errorf("RTT %v, want 60 ms + at most 150 ms", sa.RTT)
	}
}
