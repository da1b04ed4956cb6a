package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipfed/sipfed/sipcore"
)

// TCP registers the metrics of one server's TCP listeners with reg;
// stats is called at each scrape and sums the listeners:
//
//	sipfed_tcp_connections              gauge, connections open
//	sipfed_tcp_refused_total{reason}    counter, connections closed at once: max_connections, max_per_source, descriptors
//	sipfed_tcp_idle_closed_total        counter, connections closed after the idle timeout
func TCP(reg prometheus.Registerer, stats func() sipcore.ConnStats) {
	reg.MustRegister(&tcpCollector{
		stats:   stats,
		open:    prometheus.NewDesc("sipfed_tcp_connections", "TCP connections open on the SIP listeners.", nil, nil),
		refused: prometheus.NewDesc("sipfed_tcp_refused_total", "TCP connections closed as soon as accepted, by reason: max_connections, max_per_source, descriptors (the process was out of file descriptors).", []string{"reason"}, nil),
		idle:    prometheus.NewDesc("sipfed_tcp_idle_closed_total", "TCP connections closed because nothing was read from them for the idle timeout.", nil, nil),
	})
}

type tcpCollector struct {
	stats               func() sipcore.ConnStats
	open, refused, idle *prometheus.Desc
}

func (c *tcpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.refused
	ch <- c.idle
}

func (c *tcpCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Open))
	for _, r := range sipcore.RefuseReasons {
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.CounterValue, float64(st.IdleClosed))
}
