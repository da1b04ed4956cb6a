package rtp_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/media/codec/dtmf"
	"github.com/sipfed/sipfed/media/codec/g711"
	"github.com/sipfed/sipfed/media/file"
	"github.com/sipfed/sipfed/media/jitter"
	mrtp "github.com/sipfed/sipfed/media/rtp"
)

// sendAudio sends frames of src as law, paced at 20 ms of real time.
func sendAudio(t testing.TB, s *mrtp.Session, law g711.Law, src interface {
	ReadFrame([]int16) (int, error)
}, frames int) {
	pcm := make([]int16, g711.FrameSamples)
	buf := make([]byte, 0, g711.FrameSamples)
	tick := time.NewTicker(g711.FrameDuration)
	defer tick.Stop()
	for i := range frames {
		if _, err := src.ReadFrame(pcm); err != nil {
			t.Error(err)
			return
		}
		buf = law.Encode(buf[:0], pcm)
		if err := s.WriteSample(law.PayloadType(), buf, g711.FrameSamples, i == 0); err != nil {
			t.Error(err)
			return
		}
		<-tick.C
	}
}

// record reads s until the receive timeout, through a jitter buffer, into a
// WAV file at path, and returns the number of samples written.
func record(t testing.TB, s *mrtp.Session, law g711.Law, path string) int64 {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := file.NewWAVWriter(f, file.PlayoutRate)
	if err != nil {
		t.Fatal(err)
	}
	rec := file.NewRecorder(w, law)
	jb := jitter.New()
	var p rtp.Packet
	for {
		err := s.ReadRTP(&p)
		if errors.Is(err, mrtp.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		jb.Push(&p)
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
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Samples()
}

// TestLoopbackTone sends 10 s of a 1 kHz tone over PCMU (rtcp-mux) and PCMA
// (RTP/RTCP port pair), records it on the far side, and finds the tone
// there: its Goertzel power must exceed everything else by 25 dB (G.711
// quantisation alone leaves about 38 dB) and the recording must be exactly
// as long as what was sent.
func TestLoopbackTone(t *testing.T) {
	t.Parallel()
	const frames = 500 // 10 s
	for _, tc := range []struct {
		law g711.Law
		mux bool
	}{{g711.Ulaw, true}, {g711.Alaw, false}} {
		t.Run(tc.law.Name(), func(t *testing.T) {
			t.Parallel()
			a, b := pair(t, tc.mux, mrtp.WithRTCPInterval(500*time.Millisecond))
			b.SetReceiveTimeout(time.Second)
			path := filepath.Join(t.TempDir(), "rec.wav")
			done := make(chan int64)
			go func() { done <- record(t, b, tc.law, path) }()
			sendAudio(t, a, tc.law, file.NewTone(1000, 0.5), frames)
			n := <-done
			if n != frames*g711.FrameSamples {
				t.Errorf("recorded %d samples, want %d", n, frames*g711.FrameSamples)
			}
			pcm := testenv.ReadWAV(t, path)
			snr := testenv.ToneSNR(pcm, 1000, 8000)
			t.Logf("%s: 1 kHz tone %.1f dB above the rest", tc.law.Name(), snr)
			if snr < 25 {
				t.Errorf("tone SNR %.1f dB, want >= 25", snr)
			}
			if off := testenv.ToneSNR(pcm, 1400, 8000); off > -20 {
				t.Errorf("1.4 kHz stands %.1f dB over the rest: the detector is not selective", off)
			}
			st := b.Stats()
			if st.PacketsReceived != frames || st.PacketsLost != 0 {
				t.Errorf("receiver stats %+v", st)
			}
		})
	}
}

// TestLoopbackDTMF sends digits as RFC 4733 events and reads them back.
func TestLoopbackDTMF(t *testing.T) {
	t.Parallel()
	const digits = "159#*D"
	a, b := pair(t, true)
	b.SetReceiveTimeout(time.Second)
	got := make(chan string)
	go func() {
		var r dtmf.Receiver
		var p rtp.Packet
		var s []rune
		for b.ReadRTP(&p) == nil {
			if p.PayloadType != 101 {
				continue
			}
			if d, err := r.Receive(p.Timestamp, p.Payload); err == nil && d != 0 {
				s = append(s, d)
			}
		}
		got <- string(s)
	}()
	for _, d := range digits {
		if err := a.WriteDTMF(context.Background(), 101, d, 100*time.Millisecond, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if s := <-got; s != digits {
		t.Fatalf("received %q, want %q", s, digits)
	}
}
