package rtp

import (
	"errors"
	"net/netip"
	"testing"
)

// TestRFC3550PortPairs checks section 11: RTP on an even port, RTCP on the
// next odd one, and that an exhausted range says so.
func TestRFC3550PortPairs(t *testing.T) {
	a, err := NewPortAllocator(netip.MustParseAddr("127.0.0.1"), 47101, 47106)
	if err != nil {
		t.Fatal(err)
	}
	var got int
	for {
		rtp, rtcp, err := a.Listen(false)
		if errors.Is(err, ErrNoPorts) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		defer rtp.Close()
		defer rtcp.Close()
		rp := addrPort(t, rtp.LocalAddr().String())
		cp := addrPort(t, rtcp.LocalAddr().String())
		if rp.Port()%2 != 0 || cp.Port() != rp.Port()+1 || rp.Port() < 47102 || cp.Port() > 47106 {
			t.Fatalf("pair %s / %s outside 47102-47106 or not even/odd", rp, cp)
		}
		got++
		if got > 2 {
			t.Fatal("more pairs than the range holds")
		}
	}
	if got == 0 {
		t.Skip("SKIPPING: ports 47102-47106 are all busy on this machine")
	}
	if _, err := NewPortAllocator(netip.MustParseAddr("127.0.0.1"), 5000, 5000); err == nil {
		t.Fatal("range without a pair accepted")
	}
}

func TestPortAllocatorMux(t *testing.T) {
	a, err := NewPortAllocator(netip.MustParseAddr("127.0.0.1"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	rtp, rtcp, err := a.Listen(true)
	if err != nil {
		t.Fatal(err)
	}
	defer rtp.Close()
	if rtcp != nil {
		t.Fatal("rtcp socket with rtcp-mux")
	}
}

func addrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
