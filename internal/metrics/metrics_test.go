package metrics

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func request(t *testing.T, method, toTag string) *sip.Request {
	t.Helper()
	raw := fmt.Sprintf("%s sip:bob@a.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:bob@a.test>%s\r\nCall-ID: c\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n", method, toTag, method)
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

// TestMadeUpMethodsCountAsOther checks that the method label is bounded:
// 10,000 different made-up methods add one series, "other".
func TestMadeUpMethodsCountAsOther(t *testing.T) {
	reg := NewRegistry()
	m := New(reg)
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	before := len(rec.Body.String())
	req := request(t, "OPTIONS", "")
	for i := 0; i < 10000; i++ {
		req.Method = sip.RequestMethod(fmt.Sprintf("X%d", i))
		m.Observe(req, 405, time.Millisecond)
	}
	rec = httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`sipfed_sip_requests_total{method="other"} 10000`, `sipfed_sip_responses_total{class="4xx",method="other"} 10000`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, `"X1"`) {
		t.Error("a made-up method became a label value")
	}
	// The Go collector's numbers change length a little between scrapes.
	if grown := len(body) - before; grown > 200 {
		t.Errorf("the scrape grew by %d bytes", grown)
	}
}

func TestRegisterAndCallSetupHistograms(t *testing.T) {
	reg := NewRegistry()
	m := New(reg)
	m.Observe(request(t, "REGISTER", ""), 200, 3*time.Millisecond)
	m.Observe(request(t, "INVITE", ""), 200, 40*time.Millisecond)
	m.Observe(request(t, "INVITE", ""), 486, 2*time.Second)
	m.Observe(request(t, "INVITE", ";tag=x"), 200, time.Millisecond) // re-INVITE: no setup
	m.Observe(request(t, "ACK", ";tag=x"), 0, 0)                     // no response
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`sipfed_register_duration_seconds_bucket{le="0.005"} 1`,
		`sipfed_register_duration_seconds_count 1`,
		`sipfed_call_setup_seconds_bucket{class="2xx",le="0.05"} 1`,
		`sipfed_call_setup_seconds_count{class="2xx"} 1`,
		`sipfed_call_setup_seconds_count{class="4xx"} 1`,
		`sipfed_sip_requests_total{method="INVITE"} 3`,
		`sipfed_sip_requests_total{method="ACK"} 1`,
		`sipfed_sip_responses_total{class="2xx",method="INVITE"} 2`,
		`sipfed_sip_responses_total{class="4xx",method="INVITE"} 1`,
		`# TYPE sipfed_uptime_seconds gauge`,
		`go_goroutines`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// BenchmarkObserve measures counting one REGISTER and its 200.
func BenchmarkObserve(b *testing.B) {
	m := New(NewRegistry())
	msg, err := sip.ParseMessage([]byte("REGISTER sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(req, 200, time.Millisecond)
	}
}
