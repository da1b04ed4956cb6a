// Package redisbatch runs one Lua script for many concurrent callers over
// a go-redis client, auto-pipelined: the calls that arrive while others
// are on their way go together as one pipeline.
package redisbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Batcher sends the updates that arrive while others are on their way to
// Redis together, as one pipeline: one write and one read for the lot, on
// both sides, instead of a round trip each (auto-pipelining, as rueidis
// does). Nothing waits to fill a batch: with one update at a time a batch
// holds one, and under load the batches grow by themselves with what
// queued during the last round trip.
//
// maxInflight pipelines are on their way at once. The caller that finds
// a free slot sends the queue, its own update included; when its batch is
// answered and more have queued, a goroutine of its own carries on, so no
// caller waits longer than its own batch.
type Batcher struct {
	c      goredis.UniversalClient
	script *goredis.Script
	src    string // the script's source, for EVAL after NOSCRIPT

	mu        sync.Mutex
	queue     []*pendingEval
	inflight  int
	maxQueued int // MaxQueued unless a test says otherwise

	minReplicas int           // SetMinReplicas: WAIT for this many replicas after each pipeline
	waitTimeout time.Duration // and at most this long

	pipelined atomic.Uint64 // updates sent in a pipeline of two or more
}

// maxInflight is how many pipelines may be on their way at once: two keep
// the connection and Redis busy while a batch's answers are read.
const maxInflight = 2

// maxBatch bounds a pipeline (a write of roughly a kilobyte per update).
const maxBatch = 128

// MaxQueued bounds the updates waiting for a pipeline slot: beyond it (a
// Redis that stopped answering, with both slots stuck until their
// deadline) an update fails at once rather than adding to the pile.
const MaxQueued = 10_000

// ErrQueueFull: MaxQueued updates are already waiting.
var ErrQueueFull = errors.New("too many updates waiting for Redis")

// New returns a Batcher running the script src on c.
func New(c goredis.UniversalClient, src string) *Batcher {
	return &Batcher{c: c, script: goredis.NewScript(src), src: src, maxQueued: MaxQueued}
}

// SetMinReplicas makes every pipeline end with a WAIT for n replicas,
// for at most timeout, on the connection that wrote it; a call whose
// write fewer replicas acknowledged fails with an error wrapping
// ErrNotReplicated. Set it before the first Eval.
func (b *Batcher) SetMinReplicas(n int, timeout time.Duration) {
	b.minReplicas, b.waitTimeout = n, timeout
}

// SetMaxQueued sets how many calls may wait for a pipeline (tests).
func (b *Batcher) SetMaxQueued(n int) { b.maxQueued = n }

// Pipelined returns how many calls went in pipelines of two or more.
func (b *Batcher) Pipelined() uint64 { return b.pipelined.Load() }

type pendingEval struct {
	deadline time.Time // the caller's; zero: none
	keys     []string
	args     []any
	val      any
	err      error
	done     chan struct{}
}

// Eval runs the script with keys and args in the next pipeline and
// returns its reply.
func (b *Batcher) Eval(ctx context.Context, keys []string, args []any) (any, error) {
	p := &pendingEval{keys: keys, args: args, done: make(chan struct{})}
	p.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	if len(b.queue) >= b.maxQueued {
		b.mu.Unlock()
		return nil, ErrQueueFull
	}
	b.queue = append(b.queue, p)
	if b.inflight < maxInflight {
		b.inflight++
		batch := b.take()
		b.mu.Unlock()
		b.run(batch)
		b.next()
	} else {
		b.mu.Unlock()
	}
	select {
	case <-p.done:
		return p.val, p.err
	case <-ctx.Done():
		return nil, ctx.Err() // the update may still be applied, as after a timeout
	}
}

// take removes up to maxBatch pending updates from the queue; b.mu held.
func (b *Batcher) take() []*pendingEval {
	n := min(len(b.queue), maxBatch)
	batch := b.queue[:n:n]
	if n == len(b.queue) {
		b.queue = nil
	} else {
		b.queue = b.queue[n:]
	}
	return batch
}

// next sends what queued meanwhile on a goroutine of its own, or frees
// the slot.
func (b *Batcher) next() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.inflight--
		b.mu.Unlock()
		return
	}
	batch := b.take()
	b.mu.Unlock()
	go func() {
		b.run(batch)
		b.next()
	}()
}

// run sends batch as one pipeline of EVALSHAs. An update that Redis
// answers NOSCRIPT (a restart or failover emptied its script cache) is
// run again alone with EVAL.
func (b *Batcher) run(batch []*pendingEval) {
	// Each caller's context bounds its own wait; the pipeline ends by the
	// latest of their deadlines (and the client's read and write
	// timeouts), so one caller giving up early fails nobody else, and a
	// hung Redis holds a slot no longer than a request lives.
	ctx := context.Background()
	var last time.Time
	for _, p := range batch {
		if p.deadline.IsZero() {
			last = time.Time{}
			break
		}
		if p.deadline.After(last) {
			last = p.deadline
		}
	}
	if !last.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, last)
		defer cancel()
	}
	defer b.reloadOnFailure(batch)
	if b.minReplicas > 0 {
		b.runReplicated(ctx, batch)
		return
	}
	if len(batch) == 1 {
		p := batch[0]
		p.val, p.err = b.script.Run(ctx, b.c, p.keys, p.args...).Result()
		close(p.done)
		return
	}
	b.pipelined.Add(uint64(len(batch)))
	pipe := b.c.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	for i, p := range batch {
		cmds[i] = pipe.EvalSha(ctx, b.script.Hash(), p.keys, p.args...)
	}
	pipe.Exec(ctx) // each command carries its own error
	for i, p := range batch {
		p.val, p.err = cmds[i].Result()
		if p.err != nil && goredis.HasErrorPrefix(p.err, "NOSCRIPT") {
			p.val, p.err = b.script.Run(ctx, b.c, p.keys, p.args...).Result()
		}
		close(p.done)
	}
}

// ErrNotReplicated: WAIT returned before enough replicas had the write.
var ErrNotReplicated = errors.New("update not acknowledged by enough replicas")

// scripter is a client that can run the update script in a pipeline: a
// single server's or Sentinel's client, or one cluster node's.
type scripter interface {
	goredis.Scripter
	Pipeline() goredis.Pipeliner
}

// runReplicated sends batch with a WAIT after it (WithMinReplicas). WAIT
// counts the replicas that have every write made on its own connection,
// so each master's share of the batch goes as one pipeline to that
// master, WAIT last: on a cluster, the master of each update's slot as
// the client last saw it (a slot that moved meanwhile gives MOVED, an
// error, and the update fails like any other; the client learns the new
// layout from it).
func (b *Batcher) runReplicated(ctx context.Context, batch []*pendingEval) {
	cc, ok := b.c.(*goredis.ClusterClient)
	if !ok {
		b.pipeWait(ctx, b.c, batch)
		return
	}
	var nodes []*goredis.Client
	var groups [][]*pendingEval
	for _, p := range batch {
		node, err := cc.MasterForKey(ctx, p.keys[0])
		if err != nil {
			p.err = err
			close(p.done)
			continue
		}
		i := slices.Index(nodes, node)
		if i < 0 {
			i = len(nodes)
			nodes, groups = append(nodes, node), append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	for i, node := range nodes {
		b.pipeWait(ctx, node, groups[i])
	}
}

// reloadOnFailure tells a cluster client to read the cluster's layout
// again when an update of batch failed for another reason than the
// script's own refusals: a master gone, MOVED after a failover. go-redis
// reloads by itself on MOVED, but not after a connection to a dead
// master is refused, and it kept dialing one for over 30 s after its
// replica had taken over (TestFailover/cluster/async).
func (b *Batcher) reloadOnFailure(batch []*pendingEval) {
	cc, ok := b.c.(*goredis.ClusterClient)
	if !ok {
		return
	}
	for _, p := range batch {
		var reply goredis.Error
		if p.err != nil && !errors.Is(p.err, ErrNotReplicated) && !(errors.As(p.err, &reply) && !isClusterError(reply)) {
			cc.ReloadState(context.Background())
			return
		}
	}
}

// pipeWait runs ps and then WAIT as one pipeline on c. The updates that
// Redis did not run for NOSCRIPT (a restart or failover emptied its
// script cache) go again, with the script, in a second one; the others
// are not sent twice, which their CSeq check would refuse.
func (b *Batcher) pipeWait(ctx context.Context, c scripter, ps []*pendingEval) {
	for try := 0; len(ps) > 0; try++ {
		pipe := c.Pipeline()
		cmds := make([]*goredis.Cmd, len(ps))
		for i, p := range ps {
			if try == 0 {
				cmds[i] = pipe.EvalSha(ctx, b.script.Hash(), p.keys, p.args...)
			} else {
				cmds[i] = pipe.Eval(ctx, b.src, p.keys, p.args...)
			}
		}
		wait := pipe.Do(ctx, "wait", b.minReplicas, b.waitTimeout.Milliseconds())
		pipe.Exec(ctx) // each command carries its own error
		acked, werr := wait.Int64()
		var again []*pendingEval
		for i, p := range ps {
			p.val, p.err = cmds[i].Result()
			switch {
			case p.err != nil && try == 0 && goredis.HasErrorPrefix(p.err, "NOSCRIPT"):
				again = append(again, p)
				continue
			case p.err != nil:
			case werr != nil:
				p.err = werr
			case int(acked) < b.minReplicas:
				p.err = fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, acked, b.minReplicas, b.waitTimeout)
			}
			close(p.done)
		}
		ps = again
	}
}

// isClusterError reports whether a reply from Redis says the cluster's
// layout changed or is broken (rather than the script refusing).
func isClusterError(e goredis.Error) bool {
	for _, p := range []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "LOADING", "MASTERDOWN"} {
		if goredis.HasErrorPrefix(e, p) {
			return true
		}
	}
	return false
}
