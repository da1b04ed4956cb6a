package server

import "testing"

// TestFromHost: the From host read off a raw message, as the stateless
// INVITE path uses it to leave other domains' INVITEs to sipgo unparsed.
func TestFromHost(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{"INVITE sip:b@b.test SIP/2.0\r\nFrom: <sip:alice@A.Test>;tag=1\r\n\r\n", "a.test"},
		{"INVITE sip:b@b.test SIP/2.0\r\nf: sip:alice@a.test:5060;tag=1\r\n\r\n", "a.test"},
		{"INVITE sip:b@b.test SIP/2.0\r\nfrom:\"A\" <sips:a.test>\r\n\r\n", "a.test"},
		{"INVITE sip:b@b.test SIP/2.0\r\nFrom : <sip:alice@[::1]:5060>\r\n\r\n", "[::1]"},
		{"INVITE sip:b@b.test SIP/2.0\r\nTo: <sip:b@b.test>\r\n\r\nFrom: <sip:x@body.test>\r\n", ""},
		{"INVITE sip:b@b.test SIP/2.0\r\nFrom: garbage\r\n\r\n", ""},
		{"", ""},
	} {
		if got := fromHost([]byte(c.msg)); got != c.want {
			t.Errorf("fromHost(%q) = %q, want %q", c.msg, got, c.want)
		}
	}
}

func FuzzFromHost(f *testing.F) {
	f.Add([]byte("INVITE sip:b@b.test SIP/2.0\r\nFrom: <sip:alice@a.test>;tag=1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) { fromHost(b) })
}
