package g711

import (
	"math"
	"testing"
)

// Reference points of ITU-T G.711 tables 1a and 2a.
func TestG711KnownCodes(t *testing.T) {
	for _, tc := range []struct {
		law  Law
		in   int16
		code byte
	}{
		{Ulaw, 0, 0xFF},
		{Ulaw, -1, 0x7F},
		{Ulaw, 32767, 0x80},
		{Ulaw, -32768, 0x00},
		{Alaw, 0, 0xD5},
		{Alaw, -8, 0x55},
		{Alaw, 32767, 0xAA},
		{Alaw, -32768, 0x2A},
	} {
		got := tc.law.Encode(nil, []int16{tc.in})[0]
		if got != tc.code {
			t.Errorf("%s encode %d = %#x, want %#x", tc.law.Name(), tc.in, got, tc.code)
		}
	}
}

// TestG711RoundTrip checks that every code decodes to a value that encodes
// back to the same code (codes 0x7F/0xFF both mean zero in µ-law).
func TestG711RoundTrip(t *testing.T) {
	for _, law := range []Law{Ulaw, Alaw} {
		for c := range 256 {
			s := law.Decode(nil, []byte{byte(c)})[0]
			back := law.Encode(nil, []int16{s})[0]
			if back != byte(c) && !(law == Ulaw && s == 0) {
				t.Errorf("%s code %#x -> %d -> %#x", law.Name(), c, s, back)
			}
		}
	}
}

// TestG711SNR checks the quantisation noise of a full-scale-ish sine: G.711
// gives about 38 dB; we require more than 30 dB.
func TestG711SNR(t *testing.T) {
	pcm := make([]int16, 8000)
	for i := range pcm {
		pcm[i] = int16(16000 * math.Sin(2*math.Pi*1000*float64(i)/SampleRate+0.3))
	}
	for _, law := range []Law{Ulaw, Alaw} {
		out := law.Decode(nil, law.Encode(nil, pcm))
		var sig, noise float64
		for i := range pcm {
			d := float64(pcm[i]) - float64(out[i])
			sig += float64(pcm[i]) * float64(pcm[i])
			noise += d * d
		}
		snr := 10 * math.Log10(sig/noise)
		if snr < 30 {
			t.Errorf("%s SNR %.1f dB, want > 30", law.Name(), snr)
		}
	}
}

func TestByName(t *testing.T) {
	if l, ok := ByName("pcma"); !ok || l != Alaw || l.PayloadType() != 8 {
		t.Fatalf("ByName(pcma) = %v, %v", l, ok)
	}
	if _, ok := ByName("opus"); ok {
		t.Fatal("ByName(opus) ok")
	}
	if FrameSamples != 160 {
		t.Fatalf("FrameSamples = %d", FrameSamples)
	}
}

func BenchmarkUlawEncodeFrame(b *testing.B) { benchEncode(b, Ulaw) }
func BenchmarkAlawEncodeFrame(b *testing.B) { benchEncode(b, Alaw) }
func BenchmarkUlawDecodeFrame(b *testing.B) { benchDecode(b, Ulaw) }
func BenchmarkAlawDecodeFrame(b *testing.B) { benchDecode(b, Alaw) }

func benchEncode(b *testing.B, law Law) {
	pcm := make([]int16, FrameSamples)
	for i := range pcm {
		pcm[i] = int16(i * 200)
	}
	dst := make([]byte, 0, FrameSamples)
	b.ReportAllocs()
	for b.Loop() {
		dst = law.Encode(dst[:0], pcm)
	}
}

func benchDecode(b *testing.B, law Law) {
	enc := law.Encode(nil, make([]int16, FrameSamples))
	dst := make([]int16, 0, FrameSamples)
	b.ReportAllocs()
	for b.Loop() {
		dst = law.Decode(dst[:0], enc)
	}
}
