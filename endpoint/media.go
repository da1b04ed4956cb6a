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
	Codec           string  `json:"codec"` // PCMU, PCMA, opus, VP8
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

// isOgg reports whether path names an Ogg/Opus file (by its name).
func isOgg(path string) bool {
	ext := strings.ToLower(path)
	return strings.HasSuffix(ext, ".ogg") || strings.HasSuffix(ext, ".opus")
}

// source is what a call's audio sends: 8 kHz samples to encode as G.711
// (a tone or a WAV file), or Opus packets from an Ogg file (sent as they
// are: there is no encoder here).
type source struct {
	pcm  interface{ ReadFrame([]int16) (int, error) }
	opus *file.OpusReader
	c    io.Closer
}

func (s source) close() {
	if s.c != nil {
		s.c.Close()
	}
}

// openSource opens the audio to send: an Ogg/Opus or WAV file, or a
// 440 Hz tone.
func openSource(path string) (source, error) {
	if path == "" {
		return source{pcm: file.NewTone(440, 0.3)}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return source{}, fmt.Errorf("endpoint: play: %w", err)
	}
	if isOgg(path) {
		r, err := file.NewOpusReader(f)
		if err != nil {
			f.Close()
			return source{}, fmt.Errorf("endpoint: play %s: %w", path, err)
		}
		return source{opus: r, c: f}, nil
	}
	if !strings.HasSuffix(strings.ToLower(path), ".wav") {
		f.Close()
		return source{}, fmt.Errorf("endpoint: play %s: want a .wav or .ogg (Opus) file", path)
	}
	r, err := file.NewWAVReader(f)
	if err != nil {
		f.Close()
		return source{}, fmt.Errorf("endpoint: play %s: %w", path, err)
	}
	return source{pcm: r, c: f}, nil
}

// negotiated is one stream both sides agreed on.
type negotiated struct {
	codec  sdp.Codec
	tePT   int // telephone-event payload type (audio, 8 kHz), -1 when none
	remote netip.AddrPort
	rtcp   netip.AddrPort
}

// negotiate picks the codec of a negotiated audio line: the first G.711
// or Opus one (in the answer's order), and telephone-event at 8 kHz.
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
		_, g := g711.ByName(c.Name)
		if (g || strings.EqualFold(c.Name, "opus")) && !found {
			n.codec, found = c, true
		}
	}
	if !found {
		return n, errNoAudio
	}
	n.remote, n.rtcp = m.RTPAddr(), m.RTCPAddr()
	return n, nil
}

// negotiateVideo picks VP8 from a negotiated video line; ok is false when
// there is none (no video, or the stream was rejected).
func negotiateVideo(m *sdp.Media) (negotiated, bool) {
	if m == nil || m.Port == 0 {
		return negotiated{}, false
	}
	for _, c := range m.Codecs {
		if strings.EqualFold(c.Name, "VP8") {
			return negotiated{codec: c, tePT: -1, remote: m.RTPAddr(), rtcp: m.RTCPAddr()}, true
		}
	}
	return negotiated{}, false
}

var errNoAudio = errors.New("endpoint: no audio codec in common")

// stream is one RTP stream of a call: audio (G.711 or Opus) or video
// (VP8). It sends from its source at the source's pace, records what
// arrives, echoes it instead when echo is set, and ends the call when
// nothing arrived for the media timeout (audio only, not on hold).
type stream struct {
	kind  string
	sess  *rtp.Session
	codec sdp.Codec
	pt    uint8
	tePT  int
	echo  bool

	law  g711.Law // G.711
	src  source   // audio
	ivf  *file.IVFReader
	ivfC io.Closer

	recFile *os.File
	wav     *file.WAVWriter
	rec     *file.Recorder
	ogg     interface{ WriteRTP(*pionrtp.Packet) error }
	ivfRec  interface{ WriteRTP(*pionrtp.Packet) error }
	closers []io.Closer // recorders, closed at the end

	onDTMF    func(rune)
	onTimeout func()
	onError   func(error)

	mu      sync.Mutex // sending: frames and DTMF do not interleave
	muted   bool       // on hold (either side): send nothing
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// mediaFiles are what a call plays and records.
type mediaFiles struct {
	play, record       string // audio
	video, recordVideo string
	timeout            time.Duration
	echo               bool
	onDTMF             func(rune)
	onTimeout          func()
	onError            func(error)
}

// startAudio makes the audio stream on the sockets.
func startAudio(conn, rtcpConn *net.UDPConn, n negotiated, mf mediaFiles) (*stream, error) {
	s := &stream{kind: "audio", codec: n.codec, pt: n.codec.PayloadType, tePT: n.tePT, echo: mf.echo,
		onDTMF: mf.onDTMF, onTimeout: mf.onTimeout, onError: mf.onError, stop: make(chan struct{})}
	opus := strings.EqualFold(n.codec.Name, "opus")
	if !opus {
		s.law, _ = g711.ByName(n.codec.Name)
	}
	if !mf.echo {
		src, err := openSource(mf.play)
		if err != nil {
			return nil, err
		}
		if (src.opus != nil) != opus {
			src.close()
			return nil, fmt.Errorf("endpoint: the call's codec is %s, which %s cannot be sent as (no transcoding)", n.codec.Name, describe(mf.play))
		}
		s.src = src
	}
	if mf.record != "" {
		if err := s.openAudioRecording(mf.record, opus); err != nil {
			s.src.close()
			return nil, err
		}
	}
	clock := uint32(8000)
	if opus {
		clock = file.OpusClockRate
	}
	opts := []rtp.Option{rtp.WithRemote(n.remote, n.rtcp), rtp.WithClockRate(clock), rtp.WithSymmetric(true)}
	if mf.timeout > 0 {
		opts = append(opts, rtp.WithReceiveTimeout(mf.timeout))
	}
	s.sess = rtp.NewSession(conn, rtcpConn, opts...)
	return s, nil
}

func describe(play string) string {
	if play == "" {
		return "the tone"
	}
	return play
}

func (s *stream) openAudioRecording(path string, opus bool) error {
	if isOgg(path) != opus {
		return fmt.Errorf("endpoint: record %s: the call's audio is %s; record %s into a %s file", path, s.codec.Name, s.codec.Name, map[bool]string{true: ".ogg", false: ".wav"}[opus])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("endpoint: record: %w", err)
	}
	if opus {
		w, err := file.NewOpusWriter(f, uint16(max(s.codec.Channels, 1)))
		if err != nil {
			f.Close()
			return fmt.Errorf("endpoint: record: %w", err)
		}
		s.ogg, s.recFile = w, f
		s.closers = append(s.closers, w)
		return nil
	}
	w, err := file.NewWAVWriter(f, g711.SampleRate)
	if err != nil {
		f.Close()
		return fmt.Errorf("endpoint: record: %w", err)
	}
	s.recFile, s.wav, s.rec = f, w, file.NewRecorder(w, s.law)
	return nil
}

// startVideo makes the video stream: VP8 from an IVF file, recorded into
// another.
func startVideo(conn, rtcpConn *net.UDPConn, n negotiated, mf mediaFiles) (*stream, error) {
	s := &stream{kind: "video", codec: n.codec, pt: n.codec.PayloadType, tePT: -1, echo: mf.echo, onError: mf.onError, stop: make(chan struct{})}
	if mf.video != "" && !mf.echo {
		f, err := os.Open(mf.video)
		if err != nil {
			return nil, fmt.Errorf("endpoint: video: %w", err)
		}
		r, err := file.NewIVFReader(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("endpoint: video %s: %w", mf.video, err)
		}
		s.ivf, s.ivfC = r, f
	}
	if mf.recordVideo != "" {
		f, err := os.Create(mf.recordVideo)
		if err != nil {
			s.closeSource()
			return nil, fmt.Errorf("endpoint: record video: %w", err)
		}
		var w, h uint16 = 640, 480
		if s.ivf != nil {
			w, h = s.ivf.Header().Width, s.ivf.Header().Height
		}
		iw, err := file.NewIVFWriter(f, w, h)
		if err != nil {
			f.Close()
			s.closeSource()
			return nil, fmt.Errorf("endpoint: record video: %w", err)
		}
		s.ivfRec, s.recFile = iw, f
		s.closers = append(s.closers, iw)
	}
	s.sess = rtp.NewSession(conn, rtcpConn, rtp.WithRemote(n.remote, n.rtcp), rtp.WithClockRate(file.VideoClockRate), rtp.WithSymmetric(true))
	return s, nil
}

// checkPlayable opens the files a phone would send, to report a bad one
// at once.
func checkPlayable(play, video string) error {
	src, err := openSource(play)
	if err != nil {
		return err
	}
	src.close()
	if video != "" {
		f, err := os.Open(video)
		if err != nil {
			return fmt.Errorf("endpoint: video: %w", err)
		}
		defer f.Close()
		if _, err := file.NewIVFReader(f); err != nil {
			return fmt.Errorf("endpoint: video %s: %w", video, err)
		}
	}
	return nil
}

// run starts sending and receiving.
func (s *stream) run() {
	s.wg.Add(1)
	go s.receive()
	if s.echo {
		return
	}
	switch {
	case s.src.pcm != nil:
		s.wg.Add(1)
		go s.sendPCM()
	case s.src.opus != nil:
		s.wg.Add(1)
		go s.sendOpus()
	case s.ivf != nil:
		s.wg.Add(1)
		go s.sendVideo()
	}
}

// sendPCM encodes 20 ms frames of the source as G.711.
func (s *stream) sendPCM() {
	defer s.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	pcm := make([]int16, g711.FrameSamples)
	payload := make([]byte, 0, g711.FrameSamples)
	first := true
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		var err error
		payload, err = s.sendFrame(pcm, payload, first)
		first = false
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// sendFrame sends the next 20 ms of the source (nothing while on hold),
// reusing pcm and payload: no allocation per packet.
func (s *stream) sendFrame(pcm []int16, payload []byte, first bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.muted {
		s.sess.Advance(g711.FrameSamples)
		return payload, nil
	}
	n, err := s.src.pcm.ReadFrame(pcm)
	if err != nil {
		n = 0 // the file ended: silence
	}
	for i := n; i < len(pcm); i++ {
		pcm[i] = 0
	}
	payload = s.law.Encode(payload[:0], pcm)
	return payload, s.sess.WriteSample(s.pt, payload, g711.FrameSamples, first)
}

// sendOpus sends the file's Opus packets at their own pace, once.
func (s *stream) sendOpus() {
	defer s.wg.Done()
	next := time.Now()
	first := true
	for {
		pkt, samples, err := s.src.opus.ReadPacket()
		if err != nil {
			return // the file ended: nothing more to send
		}
		select {
		case <-s.stop:
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(time.Duration(samples) * time.Second / file.OpusClockRate)
		s.mu.Lock()
		if s.muted {
			s.sess.Advance(samples)
		} else {
			err = s.sess.WriteSample(s.pt, pkt, samples, first)
			first = false
		}
		s.mu.Unlock()
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// sendVideo sends the IVF file's frames as VP8 RTP at their timestamps,
// once.
func (s *stream) sendVideo() {
	defer s.wg.Done()
	pack := file.NewVP8Packetizer(s.pt, s.sess.SSRC(), 1200)
	start := time.Now()
	var last uint32
	for i := 0; ; i++ {
		frame, ts, err := s.ivf.ReadFrame()
		if err != nil {
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(time.Until(start.Add(time.Duration(ts) * time.Second / file.VideoClockRate))):
		}
		samples := ts - last
		if i == 0 {
			samples = 0
		}
		last = ts
		s.mu.Lock()
		muted := s.muted
		s.mu.Unlock()
		for _, p := range pack.Packetize(frame, samples) {
			if muted {
				continue
			}
			if err := s.sess.WriteRTP(p); errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}
}

func (s *stream) receive() {
	defer s.wg.Done()
	var pkt pionrtp.Packet
	jb := jitter.New()
	var dr dtmf.Receiver
	for {
		err := s.sess.ReadRTP(&pkt)
		if errors.Is(err, rtp.ErrTimeout) {
			if s.onTimeout != nil {
				s.onTimeout()
			}
			return
		}
		if err != nil {
			select {
			case <-s.stop:
				s.flush(jb)
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) || errors.Is(err, rtp.ErrClosed) {
				return
			}
			continue
		}
		switch {
		case s.tePT >= 0 && int(pkt.PayloadType) == s.tePT:
			if d, err := dr.Receive(pkt.Timestamp, pkt.Payload); err == nil && d != 0 && s.onDTMF != nil {
				s.onDTMF(d)
			}
		case pkt.PayloadType != s.pt:
		case s.echo:
			s.mu.Lock()
			if s.kind == "video" {
				s.sess.WriteRTP(&pkt)
			} else {
				s.sess.WriteSample(pkt.PayloadType, pkt.Payload, s.samples(pkt.Payload), pkt.Marker)
			}
			s.mu.Unlock()
		case s.ivfRec != nil:
			s.record(s.ivfRec, &pkt)
		case s.ogg != nil:
			s.record(s.ogg, &pkt)
		case s.rec != nil:
			jb.Push(&pkt)
			for {
				f, ok := jb.Pop()
				if !ok {
					break
				}
				s.rec.Write(f)
			}
		}
	}
}

// samples is the duration of an audio payload on its RTP clock.
func (s *stream) samples(payload []byte) uint32 {
	if strings.EqualFold(s.codec.Name, "opus") {
		return file.OpusSamples(payload)
	}
	return uint32(len(payload))
}

// record writes a packet to a recorder; the first failure is reported
// and recording stops.
func (s *stream) record(w interface{ WriteRTP(*pionrtp.Packet) error }, p *pionrtp.Packet) {
	if err := w.WriteRTP(p); err != nil {
		if s.onError != nil {
			s.onError(fmt.Errorf("endpoint: recording %s: %w", s.kind, err))
		}
		s.ivfRec, s.ogg = nil, nil
	}
}

func (s *stream) flush(jb *jitter.Buffer) {
	if s.rec == nil {
		return
	}
	for {
		f, ok := jb.Flush()
		if !ok {
			return
		}
		s.rec.Write(f)
	}
}

// hold stops sending (the call is on hold, by us or the peer) and the
// media timeout with it, or resumes both.
func (s *stream) hold(on bool, timeout time.Duration) {
	s.mu.Lock()
	s.muted = on
	s.mu.Unlock()
	if s.kind != "audio" {
		return
	}
	if on {
		s.sess.SetReceiveTimeout(0)
	} else {
		s.sess.SetReceiveTimeout(timeout)
	}
}

// sendDTMF sends digits as RFC 4733 events, 100 ms each, 50 ms apart.
func (s *stream) sendDTMF(ctx context.Context, digits string) error {
	if s.tePT < 0 {
		return errors.New("endpoint: the peer did not accept telephone-event")
	}
	for _, d := range digits {
		s.mu.Lock()
		err := s.sess.WriteDTMF(ctx, uint8(s.tePT), d, 100*time.Millisecond, 20*time.Millisecond)
		s.mu.Unlock()
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
func (s *stream) close() StreamStats {
	s.stopped.Do(func() { close(s.stop) })
	st := s.sess.Stats()
	local := s.sess.LocalAddr()
	s.sess.Close()
	s.wg.Wait()
	if s.wav != nil {
		s.wav.Close()
	}
	for _, c := range s.closers {
		c.Close()
	}
	if s.recFile != nil {
		s.recFile.Close()
	}
	s.closeSource()
	return s.statsOf(st, local)
}

// stats returns the stream's statistics so far.
func (s *stream) stats() StreamStats { return s.statsOf(s.sess.Stats(), s.sess.LocalAddr()) }

func (s *stream) statsOf(st rtp.Stats, local netip.AddrPort) StreamStats {
	out := StreamStats{
		Kind: s.kind, Codec: s.codec.Name, Local: local.String(), Remote: st.RemoteAddr.String(),
		PacketsSent: st.PacketsSent, PacketsReceived: st.PacketsReceived,
		BytesSent: st.OctetsSent, BytesReceived: st.OctetsReceived, Lost: st.PacketsLost,
		JitterMs: ms(st.Jitter), RTTMs: ms(st.RTT),
	}
	if s.kind == "audio" {
		out.MOS = mos(out)
	}
	return out
}

func (s *stream) closeSource() {
	s.src.close()
	if s.ivfC != nil {
		s.ivfC.Close()
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// mos estimates the listening quality of an audio stream with the
// E-model (ITU-T G.107): R from the one-way delay (half the RTT, plus
// 40 ms of jitter buffer and packetisation) and the loss (codec with
// concealment: Ie 0, Bpl 25.1, random loss), then mapped to MOS 1-4.5.
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
