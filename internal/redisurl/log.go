package redisurl

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis' own log lines (reconnects, pool errors,
// Sentinel switches), which it writes to stderr in a format of its own,
// through log at warn level, at most one line per interval: a Redis that
// is down makes the client log for every retry. The number of lines
// dropped in between is given with the next one. go-redis has one logger
// per process, so the last call wins.
func SetLogger(log *slog.Logger, interval time.Duration) {
	goredis.SetLogger(&slogAdapter{log: log, interval: interval})
}

type slogAdapter struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (a *slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	a.mu.Lock()
	now := time.Now()
	if now.Sub(a.last) < a.interval {
		a.dropped++
		a.mu.Unlock()
		return
	}
	dropped := a.dropped
	a.last, a.dropped = now, 0
	a.mu.Unlock()
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	if dropped > 0 {
		a.log.Warn("redis client", "message", msg, "similar_lines_dropped", dropped)
		return
	}
	a.log.Warn("redis client", "message", msg)
}
