package registrar_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/location/memory"
	"github.com/sipfed/sipfed/registrar"
	"github.com/sipfed/sipfed/sipcore"
)

// BenchmarkRegister measures the REGISTER hot path of one node: parse the
// datagram, check it, verify its digest (MD5, users file), update the
// memory store and render the 200. The Authorization of each request is
// computed outside the timer, in batches, with a fresh nonce count.
func BenchmarkRegister(b *testing.B) {
	ctx := context.Background()
	users, err := auth.OpenFile(filepath.Join(b.TempDir(), "users.txt"))
	if err != nil {
		b.Fatal(err)
	}
	const nUsers = 100
	for i := 0; i < nUsers; i++ {
		if err := users.Add(ctx, fmt.Sprintf("u%d@a.example", i), "pw"); err != nil {
			b.Fatal(err)
		}
	}
	store := memory.New()
	defer store.Close()
	srv := auth.NewServer(users, []byte("secret"))
	reg := registrar.New([]string{"a.example"}, store, srv)
	parser := sipcore.NewParser()

	// One challenge gives the nonce every request answers.
	first, err := parser.ParseSIP([]byte(strings.ReplaceAll(registerRaw(1, "u0@a.example", "Contact: <sip:u0@192.0.2.10>"), "\n", "\r\n") + "\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	_, cerr := reg.Register(ctx, first.(*sip.Request))
	nonce := ""
	for _, h := range sipcore.AsStatus(cerr).Headers {
		v := h.Value()
		i := strings.Index(v, `nonce="`)
		nonce = v[i+7 : i+7+strings.Index(v[i+7:], `"`)]
		break
	}
	ha1 := make([]string, nUsers)
	for i := range ha1 {
		ha1[i] = md5hex(fmt.Sprintf("u%d:a.example:pw", i))
	}
	ha2 := md5hex("REGISTER:sip:a.example")

	const batch = 1000
	msgs := make([][]byte, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if n%batch == 0 {
			b.StopTimer()
			for j := range msgs {
				k := n + j
				u := k % nUsers
				nc := fmt.Sprintf("%08x", k+1)
				resp := md5hex(ha1[u] + ":" + nonce + ":" + nc + ":cn:auth:" + ha2)
				raw := registerRaw(uint32(k+2), fmt.Sprintf("u%d@a.example", u),
					fmt.Sprintf("Contact: <sip:u%d@192.0.2.10:5062>;expires=300", u),
					fmt.Sprintf(`Authorization: Digest username="u%d", realm="a.example", nonce="%s", uri="sip:a.example", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="cn"`, u, nonce, resp, nc))
				raw = strings.Replace(raw, "Call-ID: call-1@192.0.2.10", fmt.Sprintf("Call-ID: bench-%d", k), 1)
				msgs[j] = []byte(strings.ReplaceAll(raw, "\n", "\r\n") + "\r\n")
			}
			b.StartTimer()
		}
		msg, err := parser.ParseSIP(msgs[n%batch])
		if err != nil {
			b.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource("192.0.2.10:5062")
		req.SetTransport("UDP")
		res, err := reg.Register(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		_ = res.String()
	}
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
