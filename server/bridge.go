package server

import (
	"fmt"
	"net/netip"

	"github.com/sipfed/sipfed/bridge"
	"github.com/sipfed/sipfed/proxy"
)

// anchor is the bridge as the proxy's MediaAnchor.
type anchor struct{ b *bridge.Bridge }

func (anchor) IsWebRTC(sdp []byte) bool { return bridge.IsWebRTC(sdp) }

func (a anchor) Open(callID string) (proxy.MediaSession, error) {
	s, err := a.b.Open(callID)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newBridge makes the media bridge of cfg: on MediaAddr, else the
// advertised address, else the first listener's host.
func newBridge(cfg Config, specs []listenSpec) (*bridge.Bridge, error) {
	bc := bridge.Config{PortMin: cfg.MediaPortMin, PortMax: cfg.MediaPortMax, MediaTimeout: cfg.MediaTimeout, MaxSessions: cfg.MediaMaxCalls, Logger: cfg.Logger}
	addr := cfg.MediaAddr
	if addr == "" {
		addr = cfg.Advertise
		if _, err := netip.ParseAddr(addr); err != nil && len(specs) > 0 {
			addr = specs[0].host
		}
	}
	if addr != "" {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, configErr("media address %q is not an IP address", addr)
		}
		bc.Addr = ip
	}
	if cfg.MediaPublic != "" {
		ip, err := netip.ParseAddr(cfg.MediaPublic)
		if err != nil {
			return nil, configErr("media public address %q is not an IP address", cfg.MediaPublic)
		}
		bc.Public = ip
	}
	if bc.Addr.IsValid() && bc.Addr.IsUnspecified() && !bc.Public.IsValid() {
		return nil, configErr("the media bridge listens on every address: give the address phones and browsers reach it at (--media-public-address)")
	}
	b, err := bridge.New(bc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return b, nil
}
