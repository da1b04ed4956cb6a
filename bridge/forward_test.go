package bridge

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

type nopWriter struct{ n int }

func (w *nopWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.n++
	return len(payload), nil
}
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestContinuityAcrossSSRCChange: a source that restarts with a new SSRC
// and new numbering continues the outgoing sequence and timestamps.
func TestContinuityAcrossSSRCChange(t *testing.T) {
	var c continuity
	h := rtp.Header{SSRC: 1, SequenceNumber: 100, Timestamp: 1000}
	now := time.Now()
	c.apply(&h, 8000, now)
	h = rtp.Header{SSRC: 1, SequenceNumber: 101, Timestamp: 1160}
	c.apply(&h, 8000, now.Add(20*time.Millisecond))
	h = rtp.Header{SSRC: 2, SequenceNumber: 5000, Timestamp: 90000}
	c.apply(&h, 8000, now.Add(40*time.Millisecond))
	if h.SequenceNumber != 102 || int32(h.Timestamp-1160) <= 0 {
		t.Fatalf("after the SSRC change: seq %d ts %d, want 102 and after 1160", h.SequenceNumber, h.Timestamp)
	}
	h2 := rtp.Header{SSRC: 2, SequenceNumber: 5001, Timestamp: 90160}
	c.apply(&h2, 8000, now.Add(60*time.Millisecond))
	if h2.SequenceNumber != 103 || h2.Timestamp-h.Timestamp != 160 {
		t.Fatalf("next packet: seq %d ts step %d, want 103 and 160", h2.SequenceNumber, h2.Timestamp-h.Timestamp)
	}
}

// BenchmarkTrackWrite is the bridge's own work per packet towards the
// browser (payload type map, continuity, header): no allocation. pion's
// SRTP and ICE below it are measured by BenchmarkBridgePlainToBrowser.
func BenchmarkTrackWrite(b *testing.B) {
	w := &nopWriter{}
	tr := &track{w: w, ssrc: 7, types: map[string]uint8{codecKey("PCMU", 8000): 0}}
	tr.setPlain(map[uint8]string{0: codecKey("PCMU", 8000)})
	var c continuity
	p := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1}, Payload: make([]byte, 160)}
	now := time.Now()
	b.ReportAllocs()
	for i := range b.N {
		p.SequenceNumber, p.Timestamp = uint16(i), uint32(i)*160
		if !tr.write(p, &c, 8000, now) {
			b.Fatal("not written")
		}
	}
}
