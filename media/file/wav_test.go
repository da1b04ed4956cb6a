package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// wavBytes builds a PCM16 WAV of a sine at freq for dur seconds.
func wavBytes(rate, channels int, freq, dur float64) []byte {
	n := int(float64(rate) * dur)
	var data []byte
	for i := range n {
		v := int16(12000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
		for range channels {
			data = binary.LittleEndian.AppendUint16(data, uint16(v))
		}
	}
	var b []byte
	b = append(b, "RIFF"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(36+len(data)+12))
	b = append(b, "WAVE"...)
	b = append(b, "LIST"...) // a chunk to skip
	b = binary.LittleEndian.AppendUint32(b, 4)
	b = append(b, "INFO"...)
	b = append(b, "fmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, uint16(channels))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate*2*channels))
	b = binary.LittleEndian.AppendUint16(b, uint16(2*channels))
	b = binary.LittleEndian.AppendUint16(b, 16)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// power returns the Goertzel power of pcm at freq relative to its total, dB.
func power(pcm []int16, freq float64) float64 {
	k := 2 * math.Cos(2*math.Pi*freq/PlayoutRate)
	var s1, s2, total float64
	for _, v := range pcm {
		x := float64(v)
		s1, s2 = x+k*s1-s2, s1
		total += x * x
	}
	tone := (s1*s1 + s2*s2 - k*s1*s2) * 2 / float64(len(pcm))
	return 10 * math.Log10(tone/math.Max(total-tone, 1e-9))
}

func readAll(t *testing.T, r *WAVReader) []int16 {
	t.Helper()
	var out []int16
	buf := make([]int16, 160)
	for {
		n, err := r.ReadFrame(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestWAVResample reads 1 s of a 1 kHz tone at each supported rate, mono and
// stereo: the output is 8000 samples (+-1) with the tone 30 dB over the rest,
// and a 6 kHz tone (above 4 kHz, it would alias to 2 kHz) is filtered out
// by more than 30 dB.
func TestWAVResample(t *testing.T) {
	for _, rate := range SupportedRates {
		for _, ch := range []int{1, 2} {
			r, err := NewWAVReader(bytes.NewReader(wavBytes(rate, ch, 1000, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if f := r.Format(); f.SampleRate != rate || f.Channels != ch {
				t.Fatalf("format %+v", f)
			}
			pcm := readAll(t, r)
			if d := len(pcm) - 8000; d < -1 || d > 1 {
				t.Errorf("%d Hz x%d: %d samples, want 8000", rate, ch, len(pcm))
			}
			if p := power(pcm[100:len(pcm)-100], 1000); p < 30 {
				t.Errorf("%d Hz x%d: 1 kHz at %.1f dB", rate, ch, p)
			}
			if rate == 8000 {
				continue
			}
			r, _ = NewWAVReader(bytes.NewReader(wavBytes(rate, ch, 6000, 1)))
			hi := readAll(t, r)
			var e float64
			for _, v := range hi[100 : len(hi)-100] {
				e += float64(v) * float64(v)
			}
			rms := math.Sqrt(e / float64(len(hi)-200))
			if db := 20 * math.Log10(rms/(12000/math.Sqrt2)); db > -30 {
				t.Errorf("%d Hz: 6 kHz passes at %.1f dB", rate, db)
			}
		}
	}
}

func TestWAVErrors(t *testing.T) {
	good := wavBytes(8000, 1, 440, 0.1)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"not riff":  append([]byte("RIFX"), good[4:]...),
		"22050 Hz":  wavBytes(22050, 1, 440, 0.1),
		"truncated": good[:30],
	} {
		if _, err := NewWAVReader(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrNotWAV) && !errors.Is(err, ErrWAVFormat) {
			t.Errorf("%s: %v is neither ErrNotWAV nor ErrWAVFormat", name, err)
		}
	}
}

func TestWAVWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.wav")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWAVWriter(f, PlayoutRate)
	if err != nil {
		t.Fatal(err)
	}
	tone := NewTone(1000, 0.5)
	pcm := make([]int16, 160)
	for range 50 {
		tone.ReadFrame(pcm)
		if err := w.Write(pcm); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	r, err := NewWAVReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r)
	if len(got) != 8000 || power(got, 1000) < 40 {
		t.Fatalf("read back %d samples, tone %.1f dB", len(got), power(got, 1000))
	}
}

// FuzzParseWAV feeds the header parser and reader anything.
func FuzzParseWAV(f *testing.F) {
	f.Add(wavBytes(8000, 1, 440, 0.01))
	f.Add(wavBytes(48000, 2, 440, 0.01))
	f.Add(wavBytes(44100, 1, 440, 0.01)[:50])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewWAVReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		buf := make([]int16, 160)
		for range 1000 {
			if _, err := r.ReadFrame(buf); err != nil {
				return
			}
		}
	})
}
