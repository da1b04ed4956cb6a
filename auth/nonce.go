package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"
	"sync"
	"time"
)

// A nonce is base64url(ts || salt || mac) without padding, where ts is the
// issue time in Unix nanoseconds (8 bytes, big endian), salt 8 random bytes
// that keep nonces issued at the same instant apart (their nonce counts
// are tracked separately), and mac the first 16 bytes of
// HMAC-SHA256(secret, ts || salt || realm || source IP). Every node sharing the secret
// accepts the nonces of the others; nothing is stored per challenge.
const (
	nonceRaw  = 8 + 8 + 16
	nonceText = (nonceRaw*8 + 5) / 6 // 43
)

// nonceKey is a decoded nonce, the key of the nonce-count tracker.
type nonceKey [nonceRaw]byte

// maxSkew is how far in the future a nonce may be stamped: other nodes'
// clocks may be a little ahead of ours.
const maxSkew = 10 * time.Second

// macPool holds HMAC states keyed with one secret, with scratch space, so
// verifying a nonce does not allocate.
type macPool struct{ p sync.Pool }

type macState struct {
	h   hash.Hash
	in  []byte
	out [sha256.Size]byte
}

func newMACPool(secret []byte) *macPool {
	key := append([]byte(nil), secret...)
	m := &macPool{}
	m.p.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	return m
}

// sum writes the truncated MAC of ts||salt||realm||src into dst: a nonce
// is good only from the address it was sent to, so a guesser cannot
// spoof another address's failures (and have it banned) without seeing
// that address's challenges.
func (m *macPool) sum(dst []byte, tsSalt []byte, realm string, src netip.Addr) {
	st := m.p.Get().(*macState)
	st.h.Reset()
	ip := src.Unmap().As16()
	st.in = append(append(append(st.in[:0], tsSalt...), realm...), ip[:]...)
	st.h.Write(st.in)
	copy(dst, st.h.Sum(st.out[:0]))
	m.p.Put(st)
}

// newNonce returns a fresh nonce for realm and the source address src,
// stamped now.
func (m *macPool) newNonce(now time.Time, realm string, src netip.Addr) string {
	var k nonceKey
	binary.BigEndian.PutUint64(k[:8], uint64(now.UnixNano()))
	rand.Read(k[8:16])
	m.sum(k[16:], k[:16], realm, src)
	return base64.RawURLEncoding.EncodeToString(k[:])
}

// check decodes nonce and verifies that it was issued for realm and the
// source address src by a node
// holding the secret, and not in the future. It returns the decoded nonce
// and its issue time, or an error wrapping ErrBadNonce. Expiry is the
// caller's business (a stale nonce is answered differently).
func (m *macPool) check(nonce, realm string, src netip.Addr, now time.Time) (nonceKey, time.Time, error) {
	var k nonceKey
	if len(nonce) != nonceText {
		return k, time.Time{}, fmt.Errorf("%w: length %d", ErrBadNonce, len(nonce))
	}
	var text [nonceText]byte
	copy(text[:], nonce)
	if n, err := base64.RawURLEncoding.Decode(k[:], text[:]); err != nil || n != nonceRaw {
		return k, time.Time{}, fmt.Errorf("%w: not base64url", ErrBadNonce)
	}
	var mac [16]byte
	m.sum(mac[:], k[:16], realm, src)
	if !hmac.Equal(mac[:], k[16:]) {
		return k, time.Time{}, fmt.Errorf("%w: bad MAC", ErrBadNonce)
	}
	ts := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
	if ts.After(now.Add(maxSkew)) {
		return k, time.Time{}, fmt.Errorf("%w: issued in the future (%v)", ErrBadNonce, ts.Sub(now))
	}
	return k, ts, nil
}
