package registrar_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/internal/testenv"
	"github.com/sipfed/sipfed/location/memory"
	"github.com/sipfed/sipfed/registrar"
	"github.com/sipfed/sipfed/sipcore"
)

// FuzzRequestPath drives the request path with arbitrary bytes: sipfed's
// parser, the request checks, the registrar (digest, location store) and
// the error response. Nothing may panic, and no answer may carry a control
// character that would start a header of its own (CR, LF or NUL inside a
// line). Seeded with the RFC 4475 torture messages and our own REGISTERs.
func FuzzRequestPath(f *testing.F) {
	for _, kind := range []string{"valid", "invalid"} {
		for _, m := range testenv.Torture(f, kind) {
			f.Add(m)
		}
	}
	f.Add([]byte("REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:alice@a.example>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.0.2.10:5062>;expires=600\r\nAuthorization: Digest username=\"alice\", realm=\"a.example\", nonce=\"x\", uri=\"sip:a.example\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1\r\nFrom: <sip:alice@a.example>;tag=1\nX: y\r\nTo: <sip:alice@a.example>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))

	ctx := context.Background()
	users, err := auth.OpenFile(filepath.Join(f.TempDir(), "users.txt"))
	if err != nil {
		f.Fatal(err)
	}
	if err := users.Add(ctx, "alice@a.example", "alice-pw"); err != nil {
		f.Fatal(err)
	}
	store := memory.New()
	defer store.Close()
	reg := registrar.New([]string{"a.example"}, store, auth.NewServer(users, []byte("fuzz")))
	parser := sipcore.NewParser()

	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		var res *sip.Response
		if req.IsInvite() || req.Method == sip.REGISTER {
			req.Method = sip.REGISTER
			res, err = reg.Register(ctx, req)
		} else {
			err = sipcore.CheckRequest(req)
		}
		if err != nil {
			res = sipcore.Response(req, err)
		}
		if res == nil {
			return
		}
		out := res.String()
		head, _, _ := strings.Cut(out, "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n") {
			if strings.ContainsAny(line, "\r\n\x00") {
				t.Fatalf("control character in a response line %q\nrequest:\n%q", line, data)
			}
		}
	})
}
