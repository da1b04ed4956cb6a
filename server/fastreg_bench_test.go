package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/sipfed/sipfed/auth"
)

// BenchmarkRegisterUDP measures whole registrations over UDP loopback
// (REGISTER, 401, REGISTER with credentials, 200) against one server,
// one at a time: stateless is the default path (no sipgo server
// transaction), transactions the one it replaced. retained-B/reg is the
// heap still held after a GC when the run ends: finished transactions
// waiting out Timer J.
func BenchmarkRegisterUDP(b *testing.B) {
	for _, mode := range []string{"stateless", "transactions"} {
		b.Run(mode, func(b *testing.B) {
			users := filepath.Join(b.TempDir(), "users")
			f, _ := auth.OpenFile(users)
			f.Add(context.Background(), "alice@a.test", "pw")
			s, err := New(Config{Domains: []string{"a.test"}, Users: users, Listen: []string{"udp:127.0.0.1:0"}, PikeRate: -1})
			if err != nil {
				b.Fatal(err)
			}
			go s.Serve()
			defer s.Shutdown(context.Background())
			if mode == "transactions" {
				s.fastReg.setHandler(nil)
			}
			conn, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			defer conn.Close()
			to := s.Addr("udp").(*net.UDPAddr)
			port := conn.LocalAddr().(*net.UDPAddr).Port
			buf := make([]byte, 4096)
			rt := func(m string) string {
				conn.WriteToUDP([]byte(m), to)
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _, err := conn.ReadFromUDP(buf)
				if err != nil {
					b.Fatal(err)
				}
				return string(buf[:n])
			}
			msg := func(i, cseq int, authz string) string {
				return "REGISTER sip:a.test SIP/2.0\r\n" +
					fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%d-%d;rport\r\n", port, i, cseq) +
					"Max-Forwards: 70\r\nTo: <sip:alice@a.test>\r\nFrom: <sip:alice@a.test>;tag=r1\r\n" +
					fmt.Sprintf("Call-ID: bench-%d\r\nCSeq: %d REGISTER\r\n", i, cseq) +
					fmt.Sprintf("Contact: <sip:alice@127.0.0.1:%d>\r\n", port) + authz + "Content-Length: 0\r\n\r\n"
			}
			var ms0 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				res := rt(msg(i, 1, ""))
				m, err := sip.ParseMessage([]byte(res))
				if err != nil || !strings.HasPrefix(res, "SIP/2.0 401") {
					b.Fatalf("%v %s", err, res)
				}
				chal, _ := digest.ParseChallenge(m.(*sip.Response).GetHeader("WWW-Authenticate").Value())
				cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.test", Username: "alice", Password: "pw", Count: 1})
				if res := rt(msg(i, 2, "Authorization: "+cred.String()+"\r\n")); !strings.HasPrefix(res, "SIP/2.0 200") {
					b.Fatal(res)
				}
			}
			b.StopTimer()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(int64(ms.HeapAlloc)-int64(ms0.HeapAlloc))/float64(b.N), "retained-B/reg")
		})
	}
}
