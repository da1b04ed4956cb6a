package file

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/pion/rtp"

	"github.com/sipfed/sipfed/media/codec/g711"
	"github.com/sipfed/sipfed/media/jitter"
)

// TestOpusReaderMultiPacketPages reads testdata/tone-opus.ogg (opusenc puts
// many packets in a page): 1 s of audio must come out as 50 packets of 20 ms.
func TestOpusReaderMultiPacketPages(t *testing.T) {
	f, err := os.Open("testdata/tone-opus.ogg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewOpusReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Head(); h.Channels != 2 || h.SampleRate != 48000 {
		t.Fatalf("OpusHead %+v", h)
	}
	var n int
	var total uint32
	for {
		p, d, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d != 960 || len(p) == 0 {
			t.Fatalf("packet %d: %d bytes, %d samples", n, len(p), d)
		}
		n++
		total += d
	}
	// opusenc pads the end to a whole packet, beyond the 1 s of input.
	if n < 50 || n > 52 {
		t.Fatalf("%d packets (%d samples), want about 50", n, total)
	}
}

// TestOpusRoundTrip writes packets as RTP into an Ogg file and reads them back.
func TestOpusRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewOpusWriter(&buf, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{{0xFC, 1, 2, 3}, {0xFC, 4, 5}, {0xFC, 6}}
	for i, p := range want {
		if err := w.WriteRTP(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i)}, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	r, err := NewOpusReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		p, d, err := r.ReadPacket()
		if err != nil || !bytes.Equal(p, want[i]) || d != 960 {
			t.Fatalf("packet %d = %x, %d, %v", i, p, d, err)
		}
	}
}

func TestOpusSamples(t *testing.T) {
	for _, tc := range []struct {
		toc  []byte
		want uint32
	}{
		{[]byte{0xFC}, 960},           // config 31, CELT 20 ms, one frame
		{[]byte{0x08}, 960},           // config 1, SILK 20 ms
		{[]byte{0x19}, 2 * 2880},      // config 3, SILK 60 ms, code 1: two frames
		{[]byte{0xFB, 0x03}, 3 * 960}, // code 3, three frames
		{[]byte{0xE3, 0x05}, 5 * 120}, // config 28, CELT 2.5 ms, five frames
		{[]byte{0xFB}, 0},             // code 3 without its count
		{nil, 0},
	} {
		if got := OpusSamples(tc.toc); got != tc.want {
			t.Errorf("TOC %x: %d samples, want %d", tc.toc, got, tc.want)
		}
	}
}

func TestIVFReader(t *testing.T) {
	f, err := os.Open("testdata/clip-vp8.ivf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewIVFReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Header(); h.FourCC != "VP80" || h.Width != 64 || h.Height != 48 {
		t.Fatalf("header %+v", h)
	}
	var n int
	var last uint32
	for {
		_, ts, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 && ts-last != 6000 { // 15 frames/s on the 90 kHz clock
			t.Fatalf("frame %d at %d after %d", n, ts, last)
		}
		last = ts
		n++
	}
	if n != 30 {
		t.Fatalf("%d frames, want 30", n)
	}
}

// TestRecorderConceals checks that a recording has the length of what was
// sent: lost packets are concealed, timestamp gaps (a DTMF event) filled.
func TestRecorderConceals(t *testing.T) {
	path := t.TempDir() + "/rec.wav"
	f, _ := os.Create(path)
	defer f.Close()
	w, _ := NewWAVWriter(f, PlayoutRate)
	rec := NewRecorder(w, g711.Ulaw)
	jb := jitter.New()
	tone := NewTone(500, 0.5)
	pcm := make([]int16, 160)
	for i := range 100 {
		tone.ReadFrame(pcm)
		p := &rtp.Packet{Header: rtp.Header{SSRC: 1, SequenceNumber: uint16(i), Timestamp: uint32(160 * i)},
			Payload: g711.Ulaw.Encode(nil, pcm)}
		switch {
		case i%10 == 3: // lost
			continue
		case i >= 50 && i < 55: // a telephone event in place of audio
			p.PayloadType = 101
			p.Timestamp = 160 * 50
			p.Payload = []byte{1, 0, 0, 160}
		}
		jb.Push(p)
		for fr, ok := jb.Pop(); ok; fr, ok = jb.Pop() {
			if err := rec.Write(fr); err != nil {
				t.Fatal(err)
			}
		}
	}
	for fr, ok := jb.Flush(); ok; fr, ok = jb.Flush() {
		if err := rec.Write(fr); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.Samples(); got != 100*160 {
		t.Fatalf("recorded %d samples, want %d", got, 100*160)
	}
	if s := jb.Stats(); s.Lost != 10 {
		t.Fatalf("jitter buffer lost %d, want 10", s.Lost)
	}
}
