package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPrometheusTextFormat(t *testing.T) {
	var r Registry
	c := r.NewCounterVec("sipfed_sip_requests_total", "Requests.", "method")
	c.Inc("INVITE")
	c.Inc("INVITE")
	c.Inc(`we"ird\` + "\n")
	r.NewGaugeFunc("sipfed_up", "Up.", func() float64 { return 1.5 })
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	want := `# HELP sipfed_sip_requests_total Requests.
# TYPE sipfed_sip_requests_total counter
sipfed_sip_requests_total{method="INVITE"} 2
sipfed_sip_requests_total{method="we\"ird\\\n"} 1
# HELP sipfed_up Up.
# TYPE sipfed_up gauge
sipfed_up 1.5
`
	if got := rec.Body.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
