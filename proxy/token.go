package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// The proxy signs what it puts in messages that come back to it, so that
// a request or response can only use them if the proxy made them: a
// forged "in-dialog" request with our Route cannot turn the proxy into an
// open relay, and a made-up response cannot be relayed to a victim named
// in its second Via.
//
//   - Record-Route carries sf=TOKEN, an HMAC over the Call-ID and the tag
//     of the dialog's creator (the From tag of the request that made it).
//     An in-dialog request is trusted as such only when a Route of ours
//     carries the token of its Call-ID and its From or To tag (requests
//     flow both ways, so the creator's tag is in either). Like Kamailio's
//     rr module with a secret.
//   - Our Via branch is "z9hG4bK-sf" + loop hash + "." + random + "." +
//     an HMAC over those and the previous hop's Via (branch and where
//     responses go), so a response that matches no transaction of ours (a
//     2xx retransmission after ours ended) is relayed only to the hop
//     that really sent us the request.
//
// Every node of a domain must share the secret (the server uses the
// digest nonce secret, kept in Redis for that).
type signer struct {
	pool sync.Pool // hash.Hash (HMAC-SHA256 with the secret)
}

func newSigner(secret []byte) *signer {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	key := append([]byte("sipfed-proxy\x00"), secret...)
	return &signer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// sum writes the HMAC of parts (each followed by a NUL) into out.
func (s *signer) sum(out []byte, parts ...string) []byte {
	m := s.pool.Get().(hash.Hash)
	m.Reset()
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	out = m.Sum(out)
	s.pool.Put(m)
	return out
}

// dialogToken is the sf= value of our Record-Route for a dialog.
func (s *signer) dialogToken(callID, creatorTag string) string {
	var buf [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(s.sum(buf[:0], "rr", callID, creatorTag)[:12])
}

// dialogOK reports whether token was made for req's dialog.
func (s *signer) dialogOK(req *sip.Request, token string) bool {
	if token == "" {
		return false
	}
	cid := req.CallID()
	if cid == nil {
		return false
	}
	for _, tag := range []string{fromTag(req), toTag(req)} {
		if tag != "" && hmac.Equal([]byte(s.dialogToken(cid.Value(), tag)), []byte(token)) {
			return true
		}
	}
	return false
}

func fromTag(req *sip.Request) string {
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		return t
	}
	return ""
}

func toTag(req *sip.Request) string {
	if to := req.To(); to != nil {
		t, _ := to.Params.Get("tag")
		return t
	}
	return ""
}

// branch makes our Via branch for a request whose previous hop is up.
func (s *signer) branch(loop string, up *sip.ViaHeader) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	r := hex.EncodeToString(rnd[:])
	return loopPrefix + loop + "." + r + "." + s.branchMAC(loop, r, up)
}

func (s *signer) branchMAC(loop, rnd string, up *sip.ViaHeader) string {
	upBranch, dest := "", ""
	if up != nil {
		upBranch, _ = up.Params.Get("branch")
		dest = viaDest(up)
	}
	var buf [sha256.Size]byte
	return hex.EncodeToString(s.sum(buf[:0], "via", loop, rnd, upBranch, dest)[:8])
}

// branchOK reports whether our Via ours (the top one of a response) was
// made by branch for the previous hop up (the next Via).
func (s *signer) branchOK(ours, up *sip.ViaHeader) bool {
	br, _ := ours.Params.Get("branch")
	rest, ok := strings.CutPrefix(br, loopPrefix)
	if !ok {
		return false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return false
	}
	return hmac.Equal([]byte(s.branchMAC(parts[0], parts[1], up)), []byte(parts[2]))
}
