package auth

import (
	"errors"
	"testing"
)

// TestParseAOR checks the user@domain rule of sipfed user and the stores.
func TestParseAOR(t *testing.T) {
	for _, tc := range []struct {
		in, user, domain string
		ok               bool
	}{
		{"alice@a.example", "alice", "a.example", true},
		{"sip:Alice@A.Example", "Alice", "a.example", true},
		{"bob.smith+1@[2001:db8::1]", "bob.smith+1", "[2001:db8::1]", true},
		{"carol@192.0.2.1", "carol", "192.0.2.1", true},
		{"alice", "", "", false},
		{"@a.example", "", "", false},
		{"alice@", "", "", false},
		{"al ice@a.example", "", "", false},
		{"alice@a.example\r\nVia: x", "", "", false},
		{"a@b@a.example", "", "", false},
		{"alice@a..example", "", "", false},
		{"alice@a_example", "", "", false},
		{`al"ice@a.example`, "", "", false},
	} {
		user, domain, err := ParseAOR(tc.in)
		if tc.ok != (err == nil) || user != tc.user || domain != tc.domain {
			t.Errorf("ParseAOR(%q) = %q, %q, %v", tc.in, user, domain, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidAOR) {
			t.Errorf("ParseAOR(%q): %v does not wrap ErrInvalidAOR", tc.in, err)
		}
	}
}
