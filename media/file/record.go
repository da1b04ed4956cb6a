package file

import (
	"github.com/sipfed/sipfed/media/codec/g711"
	"github.com/sipfed/sipfed/media/jitter"
)

// Concealment of lost G.711 frames: the last good frame is repeated, halved
// in level each time, for at most plcFrames frames; after that, silence.
const plcFrames = 3

// maxGap bounds the silence inserted for one jump of the RTP timestamp
// (a peer on hold, or a restarted clock): 10 minutes at 8 kHz.
const maxGap = 10 * 60 * PlayoutRate

// Recorder writes the G.711 frames that come out of a jitter buffer to a WAV
// file so that the recording has the length of the call: lost frames are
// concealed and gaps in the RTP timestamps (silence suppression, DTMF
// events, which it does not play) are filled with silence.
type Recorder struct {
	w    *WAVWriter
	law  g711.Law
	pcm  []int16
	last []int16 // last good frame, decoded, for concealment
	lost int     // consecutive frames concealed

	started bool
	next    uint32 // RTP timestamp the next frame should have
}

// NewRecorder returns a recorder of law-encoded audio into w (at 8 kHz).
func NewRecorder(w *WAVWriter, law g711.Law) *Recorder {
	return &Recorder{w: w, law: law, pcm: make([]int16, 0, g711.FrameSamples), last: make([]int16, 0, g711.FrameSamples)}
}

// Write records one frame from the jitter buffer.
func (r *Recorder) Write(f jitter.Frame) error {
	if !r.started {
		r.started, r.next = true, f.Timestamp
	}
	if gap := int32(f.Timestamp - r.next); gap > 0 && gap <= maxGap {
		if err := r.conceal(int(gap)); err != nil {
			return err
		}
	}
	if f.Lost {
		d := int(f.Duration)
		if d == 0 {
			d = max(len(r.last), g711.FrameSamples)
		}
		r.next = f.Timestamp + uint32(d)
		return r.conceal(d)
	}
	if f.PayloadType != r.law.PayloadType() {
		return nil // not audio of this law: the timestamp gap covers it
	}
	r.pcm = r.law.Decode(r.pcm[:0], f.Payload)
	r.last = append(r.last[:0], r.pcm...)
	r.lost = 0
	r.next = f.Timestamp + uint32(len(f.Payload))
	return r.w.Write(r.pcm)
}

// conceal writes n samples in place of missing audio.
func (r *Recorder) conceal(n int) error {
	for n > 0 {
		r.pcm = r.pcm[:0]
		k := min(n, max(len(r.last), g711.FrameSamples))
		r.lost++
		shift := r.lost
		for i := range k {
			var v int16
			if r.lost <= plcFrames && len(r.last) > 0 {
				v = r.last[i%len(r.last)] >> shift
			}
			r.pcm = append(r.pcm, v)
		}
		if err := r.w.Write(r.pcm); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
