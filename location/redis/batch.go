package redis

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

// batcher sends the updates that arrive while others are on their way to
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
type batcher struct {
	c goredis.UniversalClient

	mu        sync.Mutex
	queue     []*pendingEval
	inflight  int
	maxQueued int // maxQueued unless a test says otherwise

	minReplicas int           // WithMinReplicas: WAIT for this many replicas after each pipeline
	waitTimeout time.Duration // and at most this long

	pipelined atomic.Uint64 // updates sent in a pipeline of two or more
}

// maxInflight is how many pipelines may be on their way at once: two keep
// the connection and Redis busy while a batch's answers are read.
const maxInflight = 2

// maxBatch bounds a pipeline (a write of roughly a kilobyte per update).
const maxBatch = 128

// maxQueued bounds the updates waiting for a pipeline slot: beyond it (a
// Redis that stopped answering, with both slots stuck until their
// deadline) an update fails at once rather than adding to the pile.
const maxQueued = 10_000

var errQueueFull = errors.New("too many updates waiting for Redis")

type pendingEval struct {
	deadline time.Time // the caller's; zero: none
	keys     []string
	args     []any
	vals     []string
	err      error
	done     chan struct{}
}

// eval runs updateScript with keys and args in the next pipeline and
// returns its reply as strings.
func (b *batcher) eval(ctx context.Context, keys []string, args []any) ([]string, error) {
	p := &pendingEval{keys: keys, args: args, done: make(chan struct{})}
	p.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	if len(b.queue) >= b.maxQueued {
		b.mu.Unlock()
		return nil, errQueueFull
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
		return p.vals, p.err
	case <-ctx.Done():
		return nil, ctx.Err() // the update may still be applied, as after a timeout
	}
}

// take removes up to maxBatch pending updates from the queue; b.mu held.
func (b *batcher) take() []*pendingEval {
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
func (b *batcher) next() {
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
func (b *batcher) run(batch []*pendingEval) {
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
		p.vals, p.err = updateScript.Run(ctx, b.c, p.keys, p.args...).StringSlice()
		close(p.done)
		return
	}
	b.pipelined.Add(uint64(len(batch)))
	pipe := b.c.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	for i, p := range batch {
		cmds[i] = pipe.EvalSha(ctx, updateScript.Hash(), p.keys, p.args...)
	}
	pipe.Exec(ctx) // each command carries its own error
	for i, p := range batch {
		p.vals, p.err = cmds[i].StringSlice()
		if p.err != nil && goredis.HasErrorPrefix(p.err, "NOSCRIPT") {
			p.vals, p.err = updateScript.Run(ctx, b.c, p.keys, p.args...).StringSlice()
		}
		close(p.done)
	}
}

// errNotReplicated: WAIT returned before enough replicas had the write.
var errNotReplicated = errors.New("update not acknowledged by enough replicas")

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
func (b *batcher) runReplicated(ctx context.Context, batch []*pendingEval) {
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
func (b *batcher) reloadOnFailure(batch []*pendingEval) {
	cc, ok := b.c.(*goredis.ClusterClient)
	if !ok {
		return
	}
	for _, p := range batch {
		if p.err != nil && !errors.Is(p.err, errNotReplicated) && !goredis.HasErrorPrefix(p.err, "STALE_CSEQ") && !goredis.HasErrorPrefix(p.err, "TOO_MANY_CONTACTS") {
			cc.ReloadState(context.Background())
			return
		}
	}
}

// pipeWait runs ps and then WAIT as one pipeline on c. The updates that
// Redis did not run for NOSCRIPT (a restart or failover emptied its
// script cache) go again, with the script, in a second one; the others
// are not sent twice, which their CSeq check would refuse.
func (b *batcher) pipeWait(ctx context.Context, c scripter, ps []*pendingEval) {
	for try := 0; len(ps) > 0; try++ {
		pipe := c.Pipeline()
		cmds := make([]*goredis.Cmd, len(ps))
		for i, p := range ps {
			if try == 0 {
				cmds[i] = pipe.EvalSha(ctx, updateScript.Hash(), p.keys, p.args...)
			} else {
				cmds[i] = pipe.Eval(ctx, updateLua, p.keys, p.args...)
			}
		}
		wait := pipe.Do(ctx, "wait", b.minReplicas, b.waitTimeout.Milliseconds())
		pipe.Exec(ctx) // each command carries its own error
		acked, werr := wait.Int64()
		var again []*pendingEval
		for i, p := range ps {
			p.vals, p.err = cmds[i].StringSlice()
			switch {
			case p.err != nil && try == 0 && goredis.HasErrorPrefix(p.err, "NOSCRIPT"):
				again = append(again, p)
				continue
			case p.err != nil:
			case werr != nil:
				p.err = werr
			case int(acked) < b.minReplicas:
				p.err = fmt.Errorf("%w: %d of %d within %v", errNotReplicated, acked, b.minReplicas, b.waitTimeout)
			}
			close(p.done)
		}
		ps = again
	}
}
