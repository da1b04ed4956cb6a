package file

import (
	"fmt"
	"io"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
)

// VideoClockRate is the RTP clock rate of video.
const VideoClockRate = 90000

// IVFReader reads the frames of an IVF file (VP8) for sending as RTP.
type IVFReader struct {
	r   *ivfreader.IVFReader
	hdr ivfreader.IVFFileHeader
}

// NewIVFReader parses the IVF file header.
func NewIVFReader(r io.Reader) (*IVFReader, error) {
	ir, hdr, err := ivfreader.NewWith(r)
	if err != nil {
		return nil, fmt.Errorf("file: ivf: %w", err)
	}
	if hdr.TimebaseDenominator == 0 {
		return nil, fmt.Errorf("file: ivf: zero timebase")
	}
	return &IVFReader{r: ir, hdr: *hdr}, nil
}

// Header returns the file header.
func (r *IVFReader) Header() ivfreader.IVFFileHeader { return r.hdr }

// ReadFrame returns the next frame and its timestamp on the 90 kHz RTP
// clock, relative to the start of the file. It returns io.EOF at the end.
func (r *IVFReader) ReadFrame() ([]byte, uint32, error) {
	frame, fh, err := r.r.ParseNextFrame()
	if err != nil {
		return nil, 0, err
	}
	// ivfreader reports pts * denominator / numerator; undo that to get the
	// pts, whose unit is numerator/denominator seconds.
	num, den := uint64(max(r.hdr.TimebaseNumerator, 1)), uint64(r.hdr.TimebaseDenominator)
	pts := fh.Timestamp * num / den
	return frame, uint32(pts * num * VideoClockRate / den), nil
}

// NewVP8Packetizer returns a packetizer of VP8 frames into RTP packets of at
// most mtu bytes (RFC 7741), numbered from a random sequence number.
func NewVP8Packetizer(pt uint8, ssrc uint32, mtu uint16) rtp.Packetizer {
	return rtp.NewPacketizer(mtu, pt, ssrc, &codecs.VP8Payloader{EnablePictureID: true},
		rtp.NewRandomSequencer(), VideoClockRate)
}

// NewIVFWriter returns a writer of received VP8 RTP packets, in sequence
// order, into an IVF file on w (pion's writer: frames are rebuilt from
// packets; the first keyframe starts the file).
func NewIVFWriter(w io.Writer, width, height uint16) (*ivfwriter.IVFWriter, error) {
	iw, err := ivfwriter.NewWith(w, ivfwriter.WithCodec("video/VP8"), ivfwriter.WithWidthAndHeight(width, height),
		ivfwriter.WithDirectPTS(), ivfwriter.WithFrameRate(1, VideoClockRate))
	if err != nil {
		return nil, fmt.Errorf("file: ivf: %w", err)
	}
	return iw, nil
}
