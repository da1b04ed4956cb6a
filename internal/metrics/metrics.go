// Package metrics gives a sipfed server its Prometheus metrics
// (prometheus/client_golang): requests by method, final responses by
// method and status class, REGISTER response time and call setup time,
// plus the Go runtime and process collectors. Every label value is
// bounded: methods outside the known set count as "other", so made-up
// methods cannot grow a scrape.
package metrics

import (
	"net/http"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Methods are the request methods counted under their own name (RFC 3261
// and its extensions); any other counts as "other".
var Methods = []string{"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "MESSAGE", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH"}

// Other is the method label of every request method not in Methods.
const Other = "other"

var classes = []string{"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}

// SIP holds one server's SIP metrics. It implements sipcore.Observer.
type SIP struct {
	requests  map[string]prometheus.Counter
	responses map[string]*[6]prometheus.Counter // method → class-1
	register  prometheus.Histogram
	setup     [6]prometheus.Observer // by class-1
	malformed prometheus.Counter
}

// New registers the SIP metrics of one server with reg:
//
//	sipfed_sip_requests_total{method}               counter
//	sipfed_sip_responses_total{method,class}        counter, final responses sent ("2xx"…"6xx")
//	sipfed_register_duration_seconds                histogram, REGISTER to its final response
//	sipfed_call_setup_seconds{class}                histogram, initial INVITE to its first final response
//	sipfed_sip_malformed_total                      counter, messages dropped as unparsable
func New(reg prometheus.Registerer) *SIP {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipfed_sip_requests_total", Help: "SIP requests received, by method (unknown methods as other).",
	}, []string{"method"})
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipfed_sip_responses_total", Help: "Final SIP responses sent by the server transactions, by request method and status class.",
	}, []string{"method", "class"})
	register := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sipfed_register_duration_seconds", Help: "Time from a REGISTER's arrival to its final response.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	setup := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sipfed_call_setup_seconds", Help: "Time from an initial INVITE's arrival to its first final response, by status class (2xx: answered; ringing included).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180},
	}, []string{"class"})
	malformed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipfed_sip_malformed_total", Help: "Messages dropped because they could not be parsed or matched to a transaction.",
	})
	reg.MustRegister(requests, responses, register, setup, malformed)

	m := &SIP{
		requests:  make(map[string]prometheus.Counter, len(Methods)+1),
		responses: make(map[string]*[6]prometheus.Counter, len(Methods)+1),
		register:  register,
		malformed: malformed,
	}
	// Every series exists from the start (a scrape shows zeros rather
	// than nothing), and the hot path is a map look-up, not a hash of
	// label values.
	for _, method := range append(append([]string(nil), Methods...), Other) {
		m.requests[method] = requests.WithLabelValues(method)
		var byClass [6]prometheus.Counter
		for i, c := range classes {
			if i > 0 {
				byClass[i] = responses.WithLabelValues(method, c)
			}
		}
		m.responses[method] = &byClass
	}
	for i, c := range classes {
		if i > 0 {
			m.setup[i] = setup.WithLabelValues(c)
		}
	}
	return m
}

// Observe counts req and its first final response (status 0: none, as
// for ACK), and times REGISTERs and initial INVITEs.
func (m *SIP) Observe(req *sip.Request, status int, elapsed time.Duration) {
	method := string(req.Method)
	c, ok := m.requests[method]
	if !ok {
		method = Other
		c = m.requests[Other]
	}
	c.Inc()
	class := status/100 - 1
	if class < 1 || class > 5 {
		return
	}
	m.responses[method][class].Inc()
	switch req.Method {
	case sip.REGISTER:
		m.register.Observe(elapsed.Seconds())
	case sip.INVITE:
		if to := req.To(); to == nil || !to.Params.Has("tag") {
			m.setup[class].Observe(elapsed.Seconds())
		}
	}
}

// Malformed counts one message dropped as unparsable.
func (m *SIP) Malformed() { m.malformed.Inc() }

// NewRegistry returns a registry with the Go runtime and process
// collectors and sipfed_uptime_seconds, for one server's /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	start := time.Now()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipfed_uptime_seconds", Help: "Seconds since the server started."},
			func() float64 { return time.Since(start).Seconds() }),
	)
	return reg
}

// Handler serves reg in the Prometheus exposition formats.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
