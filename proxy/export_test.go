package proxy

import "net/netip"

// EncodeFlowForTest is encodeFlow for the tests of package proxy_test.
func EncodeFlowForTest(transport, addr string) string {
	return encodeFlow(transport, netip.MustParseAddrPort(addr))
}
