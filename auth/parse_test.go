package auth

import (
	"errors"
	"strings"
	"testing"
)

// TestRFC3261DigestCredentialsSyntax checks the credentials grammar of
// RFC 3261 §25.1: case-insensitive names, tokens or quoted strings,
// quoted-pairs, linear white space, unknown parameters ignored.
func TestRFC3261DigestCredentialsSyntax(t *testing.T) {
	resp := strings.Repeat("0", 32)
	for _, tc := range []struct {
		in   string
		want credentials
	}{
		{
			`Digest username="alice", realm="a.example", nonce="n1", uri="sip:a.example", response="` + resp + `", algorithm=SHA-256, cnonce="c", qop=auth, nc=00000001, opaque="o"`,
			credentials{username: "alice", realm: "a.example", nonce: "n1", uri: "sip:a.example", response: resp, algorithm: "SHA-256", cnonce: "c", qop: "auth", nc: "00000001", opaque: "o"},
		},
		{
			"digest  USERNAME = \"al\\\"ice\" ,\tRealm=a.example,nonce=\"n\",uri=\"sip:a.example;transport=tcp\",response=" + resp + `, foo="bar, baz", qop="auth", nc=0000000a, cnonce=c`,
			credentials{username: `al"ice`, realm: "a.example", nonce: "n", uri: "sip:a.example;transport=tcp", response: resp, qop: "auth", nc: "0000000a", cnonce: "c"},
		},
	} {
		got, err := parseAuthorization(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseAuthorization(%q)\n = %+v, %v\nwant %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestOtherSchemesAreNotDigest checks that Basic or Bearer credentials are
// skipped rather than called malformed.
func TestOtherSchemesAreNotDigest(t *testing.T) {
	for _, in := range []string{"Basic YWxpY2U6c2VjcmV0", "Bearer", "  NTLM abc", ""} {
		if _, err := parseAuthorization(in); !errors.Is(err, errNotDigest) {
			t.Errorf("%q: %v, want errNotDigest", in, err)
		}
	}
}

// format writes c back as a header value, quoting every value and
// leaving out empty optional ones.
func (c credentials) format() string {
	var b strings.Builder
	b.WriteString("Digest ")
	for i, kv := range [][2]string{
		{"username", c.username}, {"realm", c.realm}, {"nonce", c.nonce}, {"uri", c.uri}, {"response", c.response},
		{"algorithm", c.algorithm}, {"cnonce", c.cnonce}, {"opaque", c.opaque}, {"qop", c.qop}, {"nc", c.nc},
	} {
		if i >= 5 && kv[1] == "" {
			continue
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(kv[0] + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(kv[1]) + `"`)
	}
	return b.String()
}

// FuzzParseAuthorization checks that the parser never panics, that what it
// accepts survives a format and parse round trip, and that it never lets
// CR or LF through.
func FuzzParseAuthorization(f *testing.F) {
	resp := strings.Repeat("ab", 16)
	for _, s := range []string{
		`Digest username="alice", realm="a.example", nonce="n", uri="sip:a.example", response="` + resp + `", qop=auth, nc=00000001, cnonce="c", algorithm=MD5`,
		`Digest username="al\"ice", realm=a.example, nonce=n, uri="sip:a.example", response=` + resp,
		`Digest username="alice, realm="a.example"`,
		`Digest ,,,`,
		`Digest a=`,
		`Digest a="\`,
		`Basic abc`,
		"Digest username=\"a\r\nb\"",
		`Digest`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := parseAuthorization(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, errNotDigest) {
				t.Fatalf("%q: error %v wraps neither ErrMalformed nor errNotDigest", in, err)
			}
			return
		}
		if strings.ContainsAny(c.username+c.realm+c.nonce+c.uri+c.cnonce+c.opaque, "\r\n") {
			t.Fatalf("%q: CR or LF in %+v", in, c)
		}
		again, err := parseAuthorization(c.format())
		if err != nil || again != c {
			t.Fatalf("%q: round trip %q gave %+v, %v; want %+v", in, c.format(), again, err, c)
		}
	})
}
