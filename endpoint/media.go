package endpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	pionrtp "github.com/pion/rtp"

	"github.com/sipfed/sipfed/media/codec/dtmf"
	"github.com/sipfed/sipfed/media/codec/g711"
	"github.com/sipfed/sipfed/media/file"
	"github.com/sipfed/sipfed/media/jitter"
	"github.com/sipfed/sipfed/media/rtp"
	"github.com/sipfed/sipfed/media/sdp"
)

// StreamStats are a stream's figures when a call ends; the JSON names are
// a promise to scripts.
type StreamStats struct {
	Kind            string  `json:"kind"`  // audio or video
	Codec           string  `json:"codec"` // PCMU, PCMA…
	Local           string  `json:"local"` // our RTP ip:port
	Remote          string  `json:"remote"`
	PacketsSent     uint64  `json:"packets_sent"`
	PacketsReceived uint64  `json:"packets_received"`
	BytesSent       uint64  `json:"bytes_sent"`
	BytesReceived   uint64  `json:"bytes_received"`
	Lost            int64   `json:"lost"`
	JitterMs        float64 `json:"jitter_ms"`
	RTTMs           float64 `json:"rtt_ms"`
	MOS             float64 `json:"mos,omitempty"` // audio: E-model estimate (ITU-T G.107)
}

// frameSource gives 8 kHz mono samples, 20 ms at a time.
type frameSource interface {
	ReadFrame(dst []int16) (int, error)
}

// openSource opens the audio to send: a WAV file, or a 440 Hz tone.
func openSource(path string) (frameSource, io.Closer, error) {
	if path == "" {
		return file.NewTone(440, 0.3), nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("endpoint: play: %w", err)
	}
	if !strings.HasSuffix(strings.ToLower(path), ".wav") {
		f.Close()
		return nil, nil, fmt.Errorf("endpoint: play %s: only WAV files are supported so far", path)
	}
	r, err := file.NewWAVReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("endpoint: play %s: %w", path, err)
	}
	return r, f, nil
}

// audioStream is a call's audio: G.711 out from a source at 20 ms, in to
// an optional WAV recording through a jitter buffer, RFC 4733 DTMF both
// ways, RTCP by the session.
type audioStream struct {
	sess  *rtp.Session
	law   g711.Law
	codec string
	tePT  int // telephone-event payload type, -1 when not negotiated
	src   frameSource
	srcC  io.Closer

	recFile *os.File
	wav     *file.WAVWriter
	rec     *file.Recorder

	echo bool // send back what arrives instead of the source

	onDTMF    func(rune)
	onTimeout func()

	mu      sync.Mutex // sending: frames and DTMF do not interleave
	muted   bool       // on hold (either side): send nothing
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// negotiated is the audio both sides agreed on.
type negotiated struct {
	codec  sdp.Codec
	tePT   int
	remote netip.AddrPort
	rtcp   netip.AddrPort
	hold   bool // the peer sends nothing (sendonly/inactive from its side)
}

// negotiate picks the audio codec of a negotiated media line: the first
// G.711 one (in the answer's order), and telephone-event at 8 kHz.
func negotiate(m *sdp.Media) (negotiated, error) {
	n := negotiated{tePT: -1}
	if m == nil || m.Port == 0 {
		return n, errNoAudio
	}
	found := false
	for _, c := range m.Codecs {
		if c.IsTelephoneEvent() {
			if c.ClockRate == 8000 && n.tePT < 0 {
				n.tePT = int(c.PayloadType)
			}
			continue
		}
		if _, ok := g711.ByName(c.Name); ok && !found {
			n.codec, found = c, true
		}
	}
	if !found {
		return n, errNoAudio
	}
	n.remote, n.rtcp = m.RTPAddr(), m.RTCPAddr()
	n.hold = !m.Direction.Sends() && m.Direction != sdp.SendRecv || m.OnHold()
	return n, nil
}

var errNoAudio = errors.New("endpoint: no G.711 audio in common")

// startAudio runs the stream on the sockets.
func startAudio(conn, rtcpConn *net.UDPConn, n negotiated, play, record string, timeout time.Duration) (*audioStream, error) {
	law, _ := g711.ByName(n.codec.Name)
	src, srcC, err := openSource(play)
	if err != nil {
		return nil, err
	}
	a := &audioStream{law: law, codec: n.codec.Name, tePT: n.tePT, src: src, srcC: srcC, stop: make(chan struct{})}
	if record != "" {
		f, err := os.Create(record)
		if err != nil {
			a.closeSource()
			return nil, fmt.Errorf("endpoint: record: %w", err)
		}
		w, err := file.NewWAVWriter(f, g711.SampleRate)
		if err != nil {
			f.Close()
			a.closeSource()
			return nil, fmt.Errorf("endpoint: record: %w", err)
		}
		a.recFile, a.wav, a.rec = f, w, file.NewRecorder(w, law)
	}
	opts := []rtp.Option{rtp.WithRemote(n.remote, n.rtcp), rtp.WithClockRate(8000), rtp.WithSymmetric(true)}
	if timeout > 0 {
		opts = append(opts, rtp.WithReceiveTimeout(timeout))
	}
	a.sess = rtp.NewSession(conn, rtcpConn, opts...)
	return a, nil
}

// run starts sending and receiving.
func (a *audioStream) run() {
	a.wg.Add(1)
	go a.receive()
	if !a.echo {
		a.wg.Add(1)
		go a.send()
	}
}

func (a *audioStream) send() {
	defer a.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	pcm := make([]int16, g711.FrameSamples)
	payload := make([]byte, 0, g711.FrameSamples)
	first := true
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.mu.Lock()
		if a.muted {
			a.sess.Advance(g711.FrameSamples)
			a.mu.Unlock()
			continue
		}
		n, err := a.src.ReadFrame(pcm)
		if err != nil || n == 0 {
			n = 0 // the file ended: silence
		}
		for i := n; i < len(pcm); i++ {
			pcm[i] = 0
		}
		payload = a.law.Encode(payload[:0], pcm)
		err = a.sess.WriteSample(a.law.PayloadType(), payload, g711.FrameSamples, first)
		a.mu.Unlock()
		first = false
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

func (a *audioStream) receive() {
	defer a.wg.Done()
	var pkt pionrtp.Packet
	jb := jitter.New()
	var dr dtmf.Receiver
	for {
		err := a.sess.ReadRTP(&pkt)
		if errors.Is(err, rtp.ErrTimeout) {
			if a.onTimeout != nil {
				a.onTimeout()
			}
			return
		}
		if err != nil {
			select {
			case <-a.stop:
				a.flush(jb)
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		switch {
		case a.tePT >= 0 && int(pkt.PayloadType) == a.tePT:
			if d, err := dr.Receive(pkt.Timestamp, pkt.Payload); err == nil && d != 0 && a.onDTMF != nil {
				a.onDTMF(d)
			}
		case a.echo && pkt.PayloadType == a.law.PayloadType():
			a.mu.Lock()
			a.sess.WriteSample(pkt.PayloadType, pkt.Payload, uint32(len(pkt.Payload)), pkt.Marker)
			a.mu.Unlock()
		case pkt.PayloadType == a.law.PayloadType() && a.rec != nil:
			jb.Push(&pkt)
			for {
				f, ok := jb.Pop()
				if !ok {
					break
				}
				a.rec.Write(f)
			}
		}
	}
}

func (a *audioStream) flush(jb *jitter.Buffer) {
	if a.rec == nil {
		return
	}
	for {
		f, ok := jb.Flush()
		if !ok {
			return
		}
		a.rec.Write(f)
	}
}

// hold stops sending (the call is on hold, by us or the peer) and the
// media timeout with it, or resumes both.
func (a *audioStream) hold(on bool, timeout time.Duration) {
	a.mu.Lock()
	a.muted = on
	a.mu.Unlock()
	if on {
		a.sess.SetReceiveTimeout(0)
	} else {
		a.sess.SetReceiveTimeout(timeout)
	}
}

// sendDTMF sends digits as RFC 4733 events, 100 ms each, 50 ms apart.
func (a *audioStream) sendDTMF(ctx context.Context, digits string) error {
	if a.tePT < 0 {
		return errors.New("endpoint: the peer did not accept telephone-event")
	}
	for _, d := range digits {
		a.mu.Lock()
		err := a.sess.WriteDTMF(ctx, uint8(a.tePT), d, 100*time.Millisecond, 20*time.Millisecond)
		a.mu.Unlock()
		if err != nil {
			return fmt.Errorf("endpoint: dtmf %q: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// close stops the stream, finishes the recording and returns the stats.
func (a *audioStream) close() StreamStats {
	a.stopped.Do(func() { close(a.stop) })
	st := a.sess.Stats()
	local := a.sess.LocalAddr()
	a.sess.Close()
	a.wg.Wait()
	if a.wav != nil {
		a.wav.Close()
		a.recFile.Close()
	}
	a.closeSource()
	s := StreamStats{
		Kind: "audio", Codec: a.codec, Local: local.String(), Remote: st.RemoteAddr.String(),
		PacketsSent: st.PacketsSent, PacketsReceived: st.PacketsReceived,
		BytesSent: st.OctetsSent, BytesReceived: st.OctetsReceived, Lost: st.PacketsLost,
		JitterMs: ms(st.Jitter), RTTMs: ms(st.RTT),
	}
	s.MOS = mos(s)
	return s
}

func (a *audioStream) closeSource() {
	if a.srcC != nil {
		a.srcC.Close()
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// mos estimates the listening quality of a G.711 stream with the E-model
// (ITU-T G.107): R from the one-way delay (half the RTT, plus 40 ms of
// jitter buffer and packetisation) and the loss (G.711 with concealment:
// Ie 0, Bpl 25.1, random loss), then mapped to MOS 1-4.5.
func mos(s StreamStats) float64 {
	expected := float64(s.PacketsReceived) + float64(max(s.Lost, 0))
	if s.PacketsReceived == 0 {
		return 1
	}
	loss := 100 * float64(max(s.Lost, 0)) / expected
	d := s.RTTMs/2 + 40 + 2*s.JitterMs
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ie := 95 * loss / (loss + 25.1)
	r := 93.2 - id - ie
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	m := 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
	return math.Round(m*100) / 100
}
