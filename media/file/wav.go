package file

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// PlayoutRate is the sample rate of what WAVReader and Tone produce: G.711's.
const PlayoutRate = 8000

// SupportedRates are the WAV sample rates WAVReader accepts.
var SupportedRates = []int{8000, 16000, 44100, 48000}

// WAVFormat is what a WAV file's fmt chunk says.
type WAVFormat struct {
	SampleRate int
	Channels   int
}

// WAVReader reads 16-bit PCM WAV as 8 kHz mono, mixing stereo down and
// resampling other rates with a windowed-sinc low-pass interpolator.
type WAVReader struct {
	r      *bufio.Reader
	format WAVFormat
	left   int64 // data bytes not yet read

	// Resampler state: in holds input samples from index base on.
	in   []float64
	base int64
	n    int64 // next output sample
	eof  bool
	taps int // half-width of the filter in input samples
	cut  float64
}

// NewWAVReader parses the header of a WAV file and returns a reader positioned
// at its samples.
func NewWAVReader(r io.Reader) (*WAVReader, error) {
	br := bufio.NewReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotWAV, err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, ErrNotWAV
	}
	w := &WAVReader{r: br}
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			return nil, fmt.Errorf("%w: no data chunk: %w", ErrNotWAV, err)
		}
		size := int64(binary.LittleEndian.Uint32(ch[4:]))
		switch string(ch[:4]) {
		case "fmt ":
			if size < 16 || size > 1<<10 {
				return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrWAVFormat, size)
			}
			b := make([]byte, size+size%2)
			if _, err := io.ReadFull(br, b); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrNotWAV, err)
			}
			if err := w.parseFmt(b[:size]); err != nil {
				return nil, err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, fmt.Errorf("%w: data before fmt", ErrNotWAV)
			}
			w.left = size
			w.setup()
			return w, nil
		default:
			if _, err := br.Discard(int(size + size%2)); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrNotWAV, err)
			}
		}
	}
}

func (w *WAVReader) parseFmt(b []byte) error {
	tag := binary.LittleEndian.Uint16(b[0:])
	ch := int(binary.LittleEndian.Uint16(b[2:]))
	rate := int(binary.LittleEndian.Uint32(b[4:]))
	bits := binary.LittleEndian.Uint16(b[14:])
	if tag == 0xFFFE && len(b) >= 26 { // WAVE_FORMAT_EXTENSIBLE: sub-format GUID
		tag = binary.LittleEndian.Uint16(b[24:])
	}
	if tag != 1 || bits != 16 || ch < 1 || ch > 2 {
		return fmt.Errorf("%w: format %d, %d bits, %d channels", ErrWAVFormat, tag, bits, ch)
	}
	ok := false
	for _, r := range SupportedRates {
		ok = ok || r == rate
	}
	if !ok {
		return fmt.Errorf("%w: %d Hz", ErrWAVFormat, rate)
	}
	w.format = WAVFormat{SampleRate: rate, Channels: ch}
	return nil
}

func (w *WAVReader) setup() {
	if w.format.SampleRate == PlayoutRate {
		return
	}
	ratio := float64(w.format.SampleRate) / PlayoutRate
	w.cut = 0.45 / ratio // cycles per input sample: 3.6 kHz
	w.taps = int(math.Ceil(8 * ratio))
}

// Format returns the file's own format.
func (w *WAVReader) Format() WAVFormat { return w.format }

// readInput reads one input sample, mixed to mono.
func (w *WAVReader) readInput() (float64, error) {
	var b [4]byte
	n := 2 * w.format.Channels
	if w.left < int64(n) {
		return 0, io.EOF
	}
	if _, err := io.ReadFull(w.r, b[:n]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return 0, err
	}
	w.left -= int64(n)
	v := float64(int16(binary.LittleEndian.Uint16(b[0:])))
	if w.format.Channels == 2 {
		v = (v + float64(int16(binary.LittleEndian.Uint16(b[2:])))) / 2
	}
	return v, nil
}

// ReadFrame fills dst with the next 8 kHz mono samples and returns how many
// it wrote; at the end of the file it returns io.EOF with the rest.
func (w *WAVReader) ReadFrame(dst []int16) (int, error) {
	for i := range dst {
		v, err := w.next()
		if err != nil {
			return i, err
		}
		dst[i] = clip16(v)
	}
	return len(dst), nil
}

func (w *WAVReader) next() (float64, error) {
	if w.taps == 0 {
		return w.readInput()
	}
	// Output sample n sits at input position x; it needs input samples
	// floor(x)-taps+1 .. floor(x)+taps.
	x := float64(w.n) * float64(w.format.SampleRate) / PlayoutRate
	c := int64(x)
	lo, hi := c-int64(w.taps)+1, c+int64(w.taps)
	for w.base+int64(len(w.in)) <= hi && !w.eof {
		v, err := w.readInput()
		if err == io.EOF {
			w.eof = true
			break
		}
		if err != nil {
			return 0, err
		}
		w.in = append(w.in, v)
	}
	if w.eof && c >= w.base+int64(len(w.in)) {
		return 0, io.EOF
	}
	var sum float64
	for k := max(lo, w.base); k <= hi && k < w.base+int64(len(w.in)); k++ {
		t := x - float64(k)
		sum += w.in[k-w.base] * w.kernel(t)
	}
	if drop := lo - w.base; drop > 0 && drop < int64(len(w.in)) {
		w.in = append(w.in[:0], w.in[drop:]...)
		w.base = lo
	}
	w.n++
	return sum, nil
}

// kernel is a Hann-windowed sinc low-pass at w.cut, unity gain at DC.
func (w *WAVReader) kernel(t float64) float64 {
	if math.Abs(t) >= float64(w.taps) {
		return 0
	}
	win := 0.5 + 0.5*math.Cos(math.Pi*t/float64(w.taps))
	a := 2 * math.Pi * w.cut * t
	if a == 0 {
		return 2 * w.cut * win
	}
	return 2 * w.cut * math.Sin(a) / a * win
}

func clip16(v float64) int16 {
	switch {
	case v > math.MaxInt16:
		return math.MaxInt16
	case v < math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(v))
}

// WAVWriter writes 16-bit PCM mono WAV. The sizes in the header are filled
// in by Close.
type WAVWriter struct {
	w       io.WriteSeeker
	rate    int
	samples int64
	buf     []byte
}

// NewWAVWriter writes a WAV header for 16-bit mono at rate to w.
func NewWAVWriter(w io.WriteSeeker, rate int) (*WAVWriter, error) {
	ww := &WAVWriter{w: w, rate: rate}
	if _, err := w.Write(ww.header()); err != nil {
		return nil, fmt.Errorf("file: write WAV header: %w", err)
	}
	return ww, nil
}

func (w *WAVWriter) header() []byte {
	data := uint32(w.samples * 2)
	b := make([]byte, 0, 44)
	b = append(b, "RIFF"...)
	b = binary.LittleEndian.AppendUint32(b, 36+data)
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1) // PCM
	b = binary.LittleEndian.AppendUint16(b, 1) // mono
	b = binary.LittleEndian.AppendUint32(b, uint32(w.rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(w.rate*2))
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 16)
	b = append(b, "data"...)
	return binary.LittleEndian.AppendUint32(b, data)
}

// Write appends samples.
func (w *WAVWriter) Write(pcm []int16) error {
	w.buf = w.buf[:0]
	for _, s := range pcm {
		w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(s))
	}
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("file: write WAV: %w", err)
	}
	w.samples += int64(len(pcm))
	return nil
}

// Samples returns the number of samples written.
func (w *WAVWriter) Samples() int64 { return w.samples }

// Close writes the final sizes into the header. It does not close the
// underlying writer.
func (w *WAVWriter) Close() error {
	if _, err := w.w.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("file: finish WAV: %w", err)
	}
	if _, err := w.w.Write(w.header()); err != nil {
		return fmt.Errorf("file: finish WAV: %w", err)
	}
	_, err := w.w.Seek(0, io.SeekEnd)
	return err
}
