package sdp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// Direction is a stream's direction attribute (RFC 3264 section 5.1), from
// the point of view of the side that wrote the description.
type Direction int

// The zero Direction is SendRecv, the default of RFC 3264.
const (
	SendRecv Direction = iota
	SendOnly
	RecvOnly
	Inactive
)

// String returns the attribute name.
func (d Direction) String() string {
	switch d {
	case SendOnly:
		return "sendonly"
	case RecvOnly:
		return "recvonly"
	case Inactive:
		return "inactive"
	}
	return "sendrecv"
}

// Sends reports whether the side with direction d sends media.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether the side with direction d receives media.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

// Reverse returns the direction seen from the other side: sendonly becomes
// recvonly and the other way round.
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	}
	return d
}

func direction(send, recv bool) Direction {
	switch {
	case send && recv:
		return SendRecv
	case send:
		return SendOnly
	case recv:
		return RecvOnly
	}
	return Inactive
}

// Media is one m= line.
type Media struct {
	Kind      string // audio, video, application, ...
	Proto     string // RTP/AVP, RTP/AVPF, UDP/TLS/RTP/SAVPF, ...
	Port      int    // 0 for a rejected or disabled stream
	Addr      netip.Addr
	RTCPPort  int // from a=rtcp (RFC 3605); 0 means Port+1
	RTCPMux   bool
	Direction Direction
	Ptime     int // ms; 0 when not given
	Codecs    []Codec
	// Formats are the m= line's formats as written, kept so that a
	// rejected stream can be echoed.
	Formats []string
}

// RTPAddr returns where the stream's RTP goes.
func (m *Media) RTPAddr() netip.AddrPort { return netip.AddrPortFrom(m.Addr, uint16(m.Port)) }

// RTCPAddr returns where the stream's RTCP goes: the RTP address with
// rtcp-mux, the a=rtcp port, or the RTP port + 1.
func (m *Media) RTCPAddr() netip.AddrPort {
	switch {
	case m.RTCPMux:
		return m.RTPAddr()
	case m.RTCPPort != 0:
		return netip.AddrPortFrom(m.Addr, uint16(m.RTCPPort))
	}
	return netip.AddrPortFrom(m.Addr, uint16(m.Port+1))
}

// OnHold reports whether the writer of the description has put the stream
// on hold: sendonly or inactive, or the RFC 2543 connection address 0.0.0.0.
func (m *Media) OnHold() bool {
	return m.Direction == SendOnly || m.Direction == Inactive || (m.Addr.IsValid() && m.Addr.IsUnspecified())
}

// Codec returns the first codec of m that matches c (see Codec.Matches).
func (m *Media) Codec(c Codec) (Codec, bool) {
	for _, mc := range m.Codecs {
		if mc.Matches(c) {
			return mc, true
		}
	}
	return Codec{}, false
}

// TelephoneEvent returns the telephone-event format at clockRate, if any.
func (m *Media) TelephoneEvent(clockRate uint32) (Codec, bool) {
	for _, c := range m.Codecs {
		if c.IsTelephoneEvent() && c.ClockRate == clockRate {
			return c, true
		}
	}
	return Codec{}, false
}

// Session is a session description.
type Session struct {
	Username  string
	SessionID uint64
	Version   uint64
	Addr      netip.Addr // of the origin line
	Media     []Media
}

// Audio returns the first audio stream with a port, or nil.
func (s *Session) Audio() *Media { return s.first("audio") }

// Video returns the first video stream with a port, or nil.
func (s *Session) Video() *Media { return s.first("video") }

// First returns the first stream of kind ("audio", "video") with a port,
// or nil.
func (s *Session) First(kind string) *Media { return s.first(kind) }

func (s *Session) first(kind string) *Media {
	for i := range s.Media {
		if s.Media[i].Kind == kind && s.Media[i].Port != 0 {
			return &s.Media[i]
		}
	}
	return nil
}

// Parse reads a session description. pion/sdp refuses some valid ones, such
// as T.38 fax (m=image ... udptl t38): they fail with ErrParse.
func Parse(b []byte) (*Session, error) {
	var sd psdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	s := &Session{Username: sd.Origin.Username, SessionID: sd.Origin.SessionID, Version: sd.Origin.SessionVersion}
	s.Addr, _ = netip.ParseAddr(sd.Origin.UnicastAddress)
	var sessAddr netip.Addr
	if sd.ConnectionInformation != nil && sd.ConnectionInformation.Address != nil {
		sessAddr, _ = netip.ParseAddr(sd.ConnectionInformation.Address.Address)
	}
	sessDir, sessPtime := SendRecv, 0
	for _, a := range sd.Attributes {
		sessDir = dirAttr(a.Key, sessDir)
		if a.Key == "ptime" {
			sessPtime, _ = strconv.Atoi(strings.TrimSpace(a.Value))
		}
	}
	for _, md := range sd.MediaDescriptions {
		m, err := parseMedia(md, sessAddr, sessDir, sessPtime)
		if err != nil {
			return nil, err
		}
		s.Media = append(s.Media, m)
	}
	return s, nil
}

func dirAttr(key string, d Direction) Direction {
	switch key {
	case "sendrecv":
		return SendRecv
	case "sendonly":
		return SendOnly
	case "recvonly":
		return RecvOnly
	case "inactive":
		return Inactive
	}
	return d
}

func parseMedia(md *psdp.MediaDescription, addr netip.Addr, dir Direction, ptime int) (Media, error) {
	m := Media{
		Kind:      md.MediaName.Media,
		Proto:     strings.Join(md.MediaName.Protos, "/"),
		Port:      md.MediaName.Port.Value,
		Addr:      addr,
		Direction: dir,
		Ptime:     ptime,
		Formats:   md.MediaName.Formats,
	}
	if m.Port < 0 || m.Port > 65535 {
		return Media{}, fmt.Errorf("%w: port %d", ErrParse, m.Port)
	}
	if ci := md.ConnectionInformation; ci != nil && ci.Address != nil {
		if a, err := netip.ParseAddr(ci.Address.Address); err == nil {
			m.Addr = a
		}
	}
	rtpmap := map[uint8]string{}
	fmtp := map[uint8]string{}
	fb := map[uint8][]string{}
	var fbAll []string
	for _, a := range md.Attributes {
		m.Direction = dirAttr(a.Key, m.Direction)
		switch a.Key {
		case "rtcp-mux":
			m.RTCPMux = true
		case "ptime":
			m.Ptime, _ = strconv.Atoi(strings.TrimSpace(a.Value))
		case "rtcp":
			port, _, _ := strings.Cut(a.Value, " ")
			if p, err := strconv.Atoi(port); err == nil && p > 0 && p <= 65535 {
				m.RTCPPort = p
			}
		case "rtpmap", "fmtp", "rtcp-fb":
			pt, val, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			if a.Key == "rtcp-fb" && pt == "*" {
				fbAll = append(fbAll, val)
				continue
			}
			n, err := strconv.ParseUint(pt, 10, 7)
			if err != nil {
				continue
			}
			switch a.Key {
			case "rtpmap":
				rtpmap[uint8(n)] = strings.TrimSpace(val)
			case "fmtp":
				fmtp[uint8(n)] = strings.TrimSpace(val)
			default:
				fb[uint8(n)] = append(fb[uint8(n)], strings.TrimSpace(val))
			}
		}
	}
	if !strings.HasPrefix(m.Proto, "RTP/") && !strings.Contains(m.Proto, "/RTP/") {
		return m, nil // not RTP: formats are not payload types
	}
	for _, f := range m.Formats {
		n, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue
		}
		pt := uint8(n)
		c, ok := staticTypes[pt]
		if rm, has := rtpmap[pt]; has {
			c, ok = parseRtpmap(rm)
		}
		if !ok {
			continue // dynamic type without rtpmap: unusable
		}
		c.PayloadType = pt
		c.Fmtp = fmtp[pt]
		c.Feedback = append(append([]string(nil), fbAll...), fb[pt]...)
		if len(c.Feedback) == 0 {
			c.Feedback = nil
		}
		m.Codecs = append(m.Codecs, c)
	}
	return m, nil
}

// parseRtpmap reads "name/clock[/channels]".
func parseRtpmap(v string) (Codec, bool) {
	parts := strings.Split(v, "/")
	if len(parts) < 2 || parts[0] == "" {
		return Codec{}, false
	}
	rate, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || rate == 0 {
		return Codec{}, false
	}
	c := Codec{Name: parts[0], ClockRate: uint32(rate)}
	if len(parts) > 2 {
		ch, err := strconv.Atoi(parts[2])
		if err != nil || ch < 1 || ch > 255 {
			return Codec{}, false
		}
		c.Channels = ch
	}
	return c, true
}

// Marshal writes the description.
func (s *Session) Marshal() ([]byte, error) {
	network := func(a netip.Addr) (string, string) {
		if a.Is6() && !a.Is4In6() {
			return "IP6", a.String()
		}
		return "IP4", a.Unmap().String()
	}
	at, addr := network(s.Addr)
	sd := &psdp.SessionDescription{
		Origin: psdp.Origin{Username: s.Username, SessionID: s.SessionID, SessionVersion: s.Version,
			NetworkType: "IN", AddressType: at, UnicastAddress: addr},
		SessionName: "sipfed",
		ConnectionInformation: &psdp.ConnectionInformation{NetworkType: "IN", AddressType: at,
			Address: &psdp.Address{Address: addr}},
		TimeDescriptions: []psdp.TimeDescription{{}},
	}
	for _, m := range s.Media {
		md := &psdp.MediaDescription{MediaName: psdp.MediaName{
			Media: m.Kind, Port: psdp.RangedPort{Value: m.Port}, Protos: strings.Split(m.Proto, "/"),
		}}
		if m.Addr.IsValid() && m.Addr != s.Addr {
			t, a := network(m.Addr)
			md.ConnectionInformation = &psdp.ConnectionInformation{NetworkType: "IN", AddressType: t, Address: &psdp.Address{Address: a}}
		}
		if m.Port == 0 {
			md.MediaName.Formats = m.Formats
			if len(md.MediaName.Formats) == 0 {
				md.MediaName.Formats = []string{"0"}
			}
			sd.MediaDescriptions = append(sd.MediaDescriptions, md)
			continue
		}
		for _, c := range m.Codecs {
			pt := strconv.Itoa(int(c.PayloadType))
			md.MediaName.Formats = append(md.MediaName.Formats, pt)
			rm := pt + " " + c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
			if c.Channels > 1 {
				rm += "/" + strconv.Itoa(c.Channels)
			}
			md.Attributes = append(md.Attributes, psdp.NewAttribute("rtpmap", rm))
			if c.Fmtp != "" {
				md.Attributes = append(md.Attributes, psdp.NewAttribute("fmtp", pt+" "+c.Fmtp))
			}
			for _, f := range c.Feedback {
				md.Attributes = append(md.Attributes, psdp.NewAttribute("rtcp-fb", pt+" "+f))
			}
		}
		if m.Ptime > 0 {
			md.Attributes = append(md.Attributes, psdp.NewAttribute("ptime", strconv.Itoa(m.Ptime)))
		}
		if m.RTCPPort != 0 && !m.RTCPMux {
			md.Attributes = append(md.Attributes, psdp.NewAttribute("rtcp", strconv.Itoa(m.RTCPPort)))
		}
		if m.RTCPMux {
			md.Attributes = append(md.Attributes, psdp.NewPropertyAttribute("rtcp-mux"))
		}
		md.Attributes = append(md.Attributes, psdp.NewPropertyAttribute(m.Direction.String()))
		sd.MediaDescriptions = append(sd.MediaDescriptions, md)
	}
	b, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sdp: marshal: %w", err)
	}
	return b, nil
}
