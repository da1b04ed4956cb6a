package redisurl

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLoggerRoutesThroughSlogAndLimits checks that go-redis lines become
// slog records, at most one per interval, counting the ones dropped.
func TestLoggerRoutesThroughSlogAndLimits(t *testing.T) {
	var buf bytes.Buffer
	a := &slogAdapter{log: slog.New(slog.NewTextHandler(&buf, nil)), interval: time.Hour}
	for i := 0; i < 100; i++ {
		a.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %s", i, "refused")
	}
	a.last = time.Time{}
	a.Printf(context.Background(), "redis: discarding bad PubSub connection")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], `msg="redis client"`) || !strings.Contains(lines[0], "after 0 attempts") {
		t.Errorf("first line: %s", lines[0])
	}
	if !strings.Contains(lines[1], "similar_lines_dropped=99") {
		t.Errorf("second line: %s", lines[1])
	}
}
