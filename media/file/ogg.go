package file

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// OpusClockRate is the RTP clock rate of Opus (RFC 7587), whatever the
// sampling rate inside.
const OpusClockRate = 48000

// OpusReader reads the Opus packets of an Ogg/Opus file (RFC 7845), for
// sending as RTP unchanged. It splits pages into packets with the page's
// lacing values, so it reads files with several packets per page.
type OpusReader struct {
	r       *oggreader.OggReader
	tee     *teeReader
	head    *oggreader.OggHeader
	pending [][]byte
	partial []byte
}

// teeReader keeps the bytes read through it since the last reset, so that
// the lacing values of the page oggreader just parsed can be seen.
type teeReader struct {
	r   io.Reader
	buf bytes.Buffer
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf.Write(p[:n])
	return n, err
}

// NewOpusReader parses the identification header of an Ogg/Opus stream.
func NewOpusReader(r io.Reader) (*OpusReader, error) {
	tee := &teeReader{r: r}
	or, head, err := oggreader.NewWith(tee)
	if err != nil {
		return nil, fmt.Errorf("file: ogg: %w", err)
	}
	return &OpusReader{r: or, tee: tee, head: head}, nil
}

// Head returns the OpusHead of the stream.
func (o *OpusReader) Head() oggreader.OggHeader { return *o.head }

// ReadPacket returns the next Opus packet and its duration in 48 kHz
// samples, skipping the OpusTags header. It returns io.EOF at the end.
func (o *OpusReader) ReadPacket() ([]byte, uint32, error) {
	for len(o.pending) == 0 {
		if err := o.readPage(); err != nil {
			return nil, 0, err
		}
	}
	p := o.pending[0]
	o.pending = o.pending[1:]
	return p, OpusSamples(p), nil
}

func (o *OpusReader) readPage() error {
	o.tee.buf.Reset()
	payload, _, err := o.r.ParseNextPage()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return err
	}
	raw := o.tee.buf.Bytes()
	if len(raw) < 27 || len(raw) < 27+int(raw[26]) {
		return fmt.Errorf("file: ogg: short page")
	}
	lacing := raw[27 : 27+int(raw[26])]
	off := 0
	for _, l := range lacing {
		o.partial = append(o.partial, payload[off:off+int(l)]...)
		off += int(l)
		if l < 255 {
			p := o.partial
			o.partial = nil
			if !bytes.HasPrefix(p, []byte("OpusTags")) && len(p) > 0 {
				o.pending = append(o.pending, p)
			}
		}
	}
	return nil
}

// OpusSamples returns the duration of an Opus packet in 48 kHz samples from
// its TOC byte (https://www.rfc-editor.org/rfc/rfc6716#section-3.1), or 0
// for a malformed packet.
func OpusSamples(p []byte) uint32 {
	if len(p) == 0 {
		return 0
	}
	config := p[0] >> 3
	var frame uint32 // in 48 kHz samples
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]uint32{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]uint32{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]uint32{120, 240, 480, 960}[config&3]
	}
	switch p[0] & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	default:
		if len(p) < 2 {
			return 0
		}
		return uint32(p[1]&0x3F) * frame
	}
}

// NewOpusWriter returns a writer of received Opus RTP packets into an
// Ogg/Opus stream on w (pion's writer: one packet per page).
func NewOpusWriter(w io.Writer, channels uint16) (*oggwriter.OggWriter, error) {
	ow, err := oggwriter.NewWith(w, OpusClockRate, channels)
	if err != nil {
		return nil, fmt.Errorf("file: ogg: %w", err)
	}
	return ow, nil
}
