package sipcore

import (
	"context"
	"log/slog"
)

// LibraryLogger returns the logger for sipgo's transport and transaction
// layers. sipgo logs every message it cannot parse at ERROR with the whole
// datagram, so an attacker would set the log volume; here such lines
// become one debug line with the data cut to 120 bytes and sanitised, and
// malformed (when not nil) is called for each, for a counter.
func LibraryLogger(log *slog.Logger, malformed func()) *slog.Logger {
	return slog.New(&libHandler{inner: log.Handler(), malformed: malformed})
}

// junk are sipgo's messages about input it could not use, each true when
// it is a malformed message to count.
var junk = map[string]bool{
	"failed to parse":                     true,
	"Server tx failed to handle request":  true,
	"unsupported message, skip it":        true,
	"Client tx failed to handle response": true,
	"Read filter error":                   false, // a refused TCP source (the server's read filter): counted there
}

type libHandler struct {
	inner     slog.Handler
	malformed func()
}

func (h *libHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.inner.Enabled(ctx, l)
}

func (h *libHandler) Handle(ctx context.Context, r slog.Record) error {
	malformed, isJunk := junk[r.Message]
	if !isJunk {
		if !h.inner.Enabled(ctx, r.Level) {
			return nil
		}
		return h.inner.Handle(ctx, r)
	}
	if malformed && h.malformed != nil {
		h.malformed()
	}
	if !h.inner.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			v := a.Value.String()
			if len(v) > 120 {
				v = v[:120] + "…"
			}
			a = slog.String(a.Key, Sanitize(v))
		}
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *libHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &libHandler{inner: h.inner.WithAttrs(as), malformed: h.malformed}
}

func (h *libHandler) WithGroup(name string) slog.Handler {
	return &libHandler{inner: h.inner.WithGroup(name), malformed: h.malformed}
}
