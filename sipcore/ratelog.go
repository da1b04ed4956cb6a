package sipcore

import (
	"sync"
	"time"
)

// LogLimiter bounds how many lines of one kind are logged: at most n per
// interval. Security events (a blocked source, a banned address) are
// logged one line each, but an attacker who controls how often they
// happen must not control how much is written. It is safe for concurrent
// use.
type LogLimiter struct {
	n        int
	interval time.Duration

	mu         sync.Mutex
	start      time.Time
	used       int
	suppressed int
}

// NewLogLimiter returns a LogLimiter that lets n lines through per
// interval.
func NewLogLimiter(n int, interval time.Duration) *LogLimiter {
	return &LogLimiter{n: n, interval: interval}
}

// Allow reports whether a line may be logged at now and, when it may, how
// many were suppressed since the last one allowed (to be logged with it).
func (l *LogLimiter) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.interval {
		l.start, l.used = now, 0
	}
	if l.used >= l.n {
		l.suppressed++
		return false, 0
	}
	l.used++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
