package main

import (
	"testing"
	"time"
)

// TestServeTCPLimitFlags checks that the TCP limits reach server.Config:
// defaults as documented, 0 as no limit (negative in Config), from flags
// and SIPFED_* variables, and that a negative value is a usage error.
func TestServeTCPLimitFlags(t *testing.T) {
	for _, c := range []struct {
		args      []string
		env       map[string]string
		max, per  int
		idle      time.Duration
		usageWant string
	}{
		{args: nil, max: 2048, per: 64, idle: 120 * time.Second},
		{args: []string{"--tcp-max-connections", "100", "--tcp-max-per-source", "0", "--tcp-idle-timeout", "1s"}, max: 100, per: -1, idle: time.Second},
		{args: []string{"--tcp-max-connections", "0"}, env: map[string]string{"SIPFED_TCP_IDLE_TIMEOUT": "0", "SIPFED_TCP_MAX_PER_SOURCE": "5"}, max: -1, per: 5, idle: -1},
		{args: []string{"--tcp-max-per-source", "-1"}, usageWant: "cannot be negative"},
	} {
		cfg, _, ok := parseServe(t, c.args, c.env, c.usageWant)
		if !ok {
			continue
		}
		if cfg.TCPMaxConns != c.max || cfg.TCPMaxPerSource != c.per || cfg.TCPIdleTimeout != c.idle {
			t.Errorf("%q %v: config %d, %d, %v; want %d, %d, %v", c.args, c.env, cfg.TCPMaxConns, cfg.TCPMaxPerSource, cfg.TCPIdleTimeout, c.max, c.per, c.idle)
		}
	}
}
