package redis

import "context"

// Pipelined returns how many of s's updates went in pipelines of two or
// more.
func Pipelined(s *Store) uint64 { return s.batch.Pipelined() }

// ScriptFlush empties the script cache of s's Redis, as a restart does.
func ScriptFlush(s *Store) error { return s.c.ScriptFlush(context.Background()).Err() }

// SetMaxQueued sets how many of s's updates may wait for a pipeline.
func SetMaxQueued(s *Store, n int) { s.batch.SetMaxQueued(n) }
