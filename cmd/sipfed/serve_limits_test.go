package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/internal/memlimit"
	"github.com/sipfed/sipfed/server"
)

// TestServeFloodAndGuessLimitFlags checks that the per-source rate limit,
// the password-guessing limits and the memory limit reach the server's
// Config and the process settings: defaults as documented, 0 as no limit
// (negative in Config), from flags and SIPFED_* variables, and bad values
// as usage errors.
func TestServeFloodAndGuessLimitFlags(t *testing.T) {
	type want struct {
		rate          float64
		burst         int
		block         time.Duration
		ipMax, usrMax int
		window, ban   time.Duration
		memSource     string
		memBytes      int64
	}
	for _, c := range []struct {
		args      []string
		env       map[string]string
		want      want
		usageWant string
	}{
		{args: nil, want: want{200, 0, 10 * time.Second, 10, 30, time.Minute, 10 * time.Minute, "", 0}},
		{args: []string{"--pike-rate", "0", "--auth-max-failures-ip", "0", "--auth-max-failures-user", "5", "--memory-limit", "256MiB"},
			want: want{-1, 0, 10 * time.Second, -1, 5, time.Minute, 10 * time.Minute, memlimit.FromFlag, 256 << 20}},
		{args: []string{"--pike-rate", "50", "--pike-burst", "80", "--pike-block-time", "1m"},
			env:  map[string]string{"SIPFED_AUTH_BAN_TIME": "1h", "SIPFED_AUTH_WINDOW": "5m", "SIPFED_MEMORY_LIMIT": "off"},
			want: want{50, 80, time.Minute, 10, 30, 5 * time.Minute, time.Hour, memlimit.FromNone, 0}},
		{args: []string{"--pike-rate", "-1"}, usageWant: "cannot be negative"},
		{args: []string{"--auth-max-failures-ip", "-3"}, usageWant: "cannot be negative"},
		{args: []string{"--auth-ban-time", "0s"}, usageWant: "--auth-ban-time"},
		{args: []string{"--memory-limit", "lots"}, usageWant: "--memory-limit"},
	} {
		cfg, proc, ok := parseServe(t, c.args, c.env, c.usageWant)
		if !ok {
			continue
		}
		got := want{cfg.PikeRate, cfg.PikeBurst, cfg.PikeBlock, cfg.AuthMaxFailuresIP, cfg.AuthMaxFailuresUser, cfg.AuthWindow, cfg.AuthBanTime, proc.memory.Source, proc.memory.Bytes}
		if c.want.memSource == "" { // whatever this machine's cgroup says
			got.memSource, got.memBytes = "", 0
		}
		if got != c.want {
			t.Errorf("%q %v:\n got %+v\nwant %+v", c.args, c.env, got, c.want)
		}
		if proc.drain != 5*time.Second {
			t.Errorf("%q: drain %v", c.args, proc.drain)
		}
	}
}

// parseServe runs serveConfig on args, with vars as SIPFED_* variables and
// the domain a.test. With usageWant set it checks for a usage error
// saying so and returns ok=false; otherwise a failure is fatal.
func parseServe(t *testing.T, args []string, vars map[string]string, usageWant string) (server.Config, serveProc, bool) {
	t.Helper()
	all := map[string]string{"SIPFED_DOMAIN": "a.test"}
	for k, v := range vars {
		all[k] = v
	}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return all[k] }}
	cfg, proc, err := serveConfig(e, args)
	if usageWant != "" {
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), usageWant) {
			t.Errorf("%q: error %v, want a usage error with %q", args, err, usageWant)
		}
		return cfg, proc, false
	}
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return cfg, proc, true
}
