package rtp_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/sipfed/sipfed/media/file"
	"github.com/sipfed/sipfed/media/jitter"
	mrtp "github.com/sipfed/sipfed/media/rtp"
)

func readIVF(t *testing.T, r io.Reader) (frames [][]byte, ts []uint32) {
	t.Helper()
	ir, err := file.NewIVFReader(r)
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, stamp, err := ir.ReadFrame()
		if errors.Is(err, io.EOF) {
			return frames, ts
		}
		if err != nil {
			t.Fatal(err)
		}
		frames, ts = append(frames, f), append(ts, stamp)
	}
}

// TestLoopbackIVF sends a VP8 IVF file (made by vpxenc, see
// media/file/testdata) as RTP in packets of at most 100 bytes, so that
// frames span several packets, and writes what arrives, through the jitter
// buffer, into a new IVF file: it must hold the same frames, byte for byte,
// at the same times.
func TestLoopbackIVF(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile("../file/testdata/clip-vp8.ivf")
	if err != nil {
		t.Fatal(err)
	}
	want, wantTS := readIVF(t, bytes.NewReader(in))
	a, b := pair(t, true, mrtp.WithClockRate(file.VideoClockRate))
	b.SetReceiveTimeout(500 * time.Millisecond)

	var out bytes.Buffer
	done := make(chan error)
	go func() {
		w, err := file.NewIVFWriter(&out, 64, 48)
		if err != nil {
			done <- err
			return
		}
		jb := jitter.New()
		write := func(f jitter.Frame) error {
			return w.WriteRTP(&rtp.Packet{Header: rtp.Header{Marker: f.Marker, Timestamp: f.Timestamp, SequenceNumber: f.Seq}, Payload: f.Payload})
		}
		var p rtp.Packet
		for b.ReadRTP(&p) == nil {
			jb.Push(&p)
			for f, ok := jb.Pop(); ok; f, ok = jb.Pop() {
				if err := write(f); err != nil {
					done <- err
					return
				}
			}
		}
		for f, ok := jb.Flush(); ok; f, ok = jb.Flush() {
			if err := write(f); err != nil {
				done <- err
				return
			}
		}
		done <- w.Close()
	}()

	// The packetizer stamps a frame, then moves its clock on by the
	// duration given: the time to the next frame.
	pk := file.NewVP8Packetizer(96, a.SSRC(), 100)
	packets := 0
	for i, frame := range want {
		d := uint32(6000)
		if i+1 < len(want) {
			d = wantTS[i+1] - wantTS[i]
		}
		for _, p := range pk.Packetize(frame, d) {
			if err := a.WriteRTP(p); err != nil {
				t.Fatal(err)
			}
			packets++
		}
		time.Sleep(time.Millisecond) // no need for real time; just don't flood the socket buffer
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, gotTS := readIVF(t, &out)
	if len(got) != len(want) {
		t.Fatalf("%d frames out of %d in (%d packets)", len(got), len(want), packets)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) || gotTS[i]-gotTS[0] != wantTS[i]-wantTS[0] {
			t.Fatalf("frame %d differs: %d bytes at %d, want %d bytes at %d", i, len(got[i]), gotTS[i], len(want[i]), wantTS[i])
		}
	}
	if packets <= len(want) {
		t.Fatalf("%d packets for %d frames: nothing was fragmented", packets, len(want))
	}
}
