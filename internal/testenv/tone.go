package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"testing"

	"github.com/sipfed/sipfed/media/file"
)

// ToneSNR returns the power of pcm (sampled at rate) at freq against the
// power of everything else, in dB (the Goertzel algorithm): how clearly a
// recording holds a tone that was sent.
func ToneSNR(pcm []int16, freq, rate float64) float64 {
	k := 2 * math.Cos(2*math.Pi*freq/rate)
	var s1, s2, total float64
	for _, v := range pcm {
		x := float64(v)
		s1, s2 = x+k*s1-s2, s1
		total += x * x
	}
	n := float64(len(pcm))
	tone := (s1*s1 + s2*s2 - k*s1*s2) * 2 / n // energy of the sinusoid
	return 10 * math.Log10(tone/math.Max(total-tone, 1e-9))
}

// ReadWAV returns every sample of a WAV file, at 8 kHz mono (see
// file.WAVReader).
func ReadWAV(t testing.TB, path string) []int16 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := file.NewWAVReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var pcm []int16
	buf := make([]int16, 160)
	for {
		n, err := r.ReadFrame(buf)
		pcm = append(pcm, buf[:n]...)
		if err != nil || n == 0 {
			return pcm
		}
	}
}

// IVFFrameHashes returns the SHA-256 of each frame of an IVF file, to
// compare the video recorded with the video sent.
func IVFFrameHashes(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := file.NewIVFReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for {
		frame, _, err := r.ReadFrame()
		if err != nil {
			return out
		}
		sum := sha256.Sum256(frame)
		out = append(out, hex.EncodeToString(sum[:]))
	}
}
