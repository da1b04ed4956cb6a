package testenv

import "math"

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
