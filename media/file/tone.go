package file

import "math"

// Tone is an endless sine wave at PlayoutRate, the sound played when no file
// is given.
type Tone struct {
	freq  float64
	amp   float64
	phase float64
}

// NewTone returns a tone of freq Hz at amplitude amp (0 to 1 of full scale).
func NewTone(freq, amp float64) *Tone { return &Tone{freq: freq, amp: amp * math.MaxInt16} }

// ReadFrame fills dst with the next samples; it never ends.
func (t *Tone) ReadFrame(dst []int16) (int, error) {
	step := 2 * math.Pi * t.freq / PlayoutRate
	for i := range dst {
		dst[i] = int16(t.amp * math.Sin(t.phase))
		t.phase += step
		if t.phase > 2*math.Pi {
			t.phase -= 2 * math.Pi
		}
	}
	return len(dst), nil
}
