package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// startRedisWith starts redis-server on a free loopback port with extra
// arguments (and no persistence), stopped when the test ends.
func startRedisWith(t testing.TB, extra ...string) *Redis {
	t.Helper()
	bin := Need(t, "redis-server")
	port := FreePort(t)
	dir := t.TempDir()
	r := &Redis{
		Addr: "127.0.0.1:" + strconv.Itoa(port),
		dir:  dir,
		args: append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"}, extra...),
	}
	r.start(t, bin)
	t.Cleanup(r.kill)
	return r
}

// Sentinel is a Redis master with one replica, watched by three Sentinels
// (quorum 2) that fail over within about two seconds of losing it.
type Sentinel struct {
	Name      string   // the master's name in the Sentinels
	Nodes     []*Redis // the data nodes: the first master, then its replica
	Sentinels []*Redis
}

// SentinelDownAfter is how long the Sentinels wait before they consider a
// silent master down.
const SentinelDownAfter = time.Second

// StartSentinel starts the master, the replica and the Sentinels on
// loopback and waits until the replica is in sync and every Sentinel
// knows the replica and the other Sentinels.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{Name: "sipfed"}
	master := startRedisWith(t)
	replica := startRedisWith(t, "--replicaof", "127.0.0.1", master.port())
	s.Nodes = []*Redis{master, replica}
	bin := Need(t, "redis-server")
	for range 3 {
		port := FreePort(t)
		dir := t.TempDir()
		// A Sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(dir, "sentinel.conf")
		cfg := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nsentinel monitor %s 127.0.0.1 %s 2\n", port, dir, s.Name, master.port()) +
			fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", s.Name, SentinelDownAfter.Milliseconds()) +
			fmt.Sprintf("sentinel failover-timeout %s 5000\nsentinel parallel-syncs %[1]s 1\n", s.Name)
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		sn := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, args: []string{conf, "--sentinel"}}
		sn.start(t, bin)
		t.Cleanup(sn.kill)
		s.Sentinels = append(s.Sentinels, sn)
	}
	waitFor(t, 20*time.Second, "the replica in sync and the Sentinels aware of it and of each other", func(ctx context.Context) error {
		if err := replicaAcks(ctx, master.Addr); err != nil {
			return err
		}
		for _, sn := range s.Sentinels {
			reps, err := redisDo(ctx, sn.Addr, "sentinel", "replicas", s.Name)
			if err != nil {
				return err
			}
			others, err := redisDo(ctx, sn.Addr, "sentinel", "sentinels", s.Name)
			if err != nil {
				return err
			}
			if n, m := len(reps.([]any)), len(others.([]any)); n != 1 || m != 2 {
				return fmt.Errorf("Sentinel %s knows %d replicas and %d other Sentinels", sn.Addr, n, m)
			}
		}
		return nil
	})
	return s
}

// URL returns the redis+sentinel:// URL of the deployment, with query
// (e.g. "dial_timeout=200ms") when not empty.
func (s *Sentinel) URL(query string) string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	u := "redis+sentinel://" + strings.Join(addrs, ",") + "/" + s.Name
	if query != "" {
		u += "?" + query
	}
	return u
}

// Master returns the data node the Sentinels name as master now.
func (s *Sentinel) Master(t testing.TB) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, sn := range s.Sentinels {
		v, err := redisDo(ctx, sn.Addr, "sentinel", "get-master-addr-by-name", s.Name)
		if err != nil {
			continue
		}
		hp := v.([]any)
		addr := fmt.Sprint(hp[0]) + ":" + fmt.Sprint(hp[1])
		for _, n := range s.Nodes {
			if n.Addr == addr {
				return n
			}
		}
	}
	t.Fatal("testenv: no Sentinel names a master of ours")
	return nil
}

// Cluster is a Redis Cluster of three masters, each with one replica; a
// replica takes over within about two seconds of its master going silent.
type Cluster struct {
	Nodes []*Redis
}

// ClusterNodeTimeout is the cluster's node timeout: how long a silent
// master has before its replica is promoted.
const ClusterNodeTimeout = time.Second

// StartCluster starts six cluster nodes on loopback, makes them a cluster
// with redis-cli (three masters, a replica each), and waits until every
// node reports the cluster ok with every replica attached.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := Need(t, "redis-cli")
	c := &Cluster{}
	for range 6 {
		// The cluster bus port is chosen too (by default port+10000,
		// which may be taken or out of range).
		bus := FreePort(t)
		dir := t.TempDir()
		c.Nodes = append(c.Nodes, startRedisWith(t, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10)))
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "the cluster ok on every node with three replicas", func(ctx context.Context) error {
		for _, n := range c.Nodes {
			info, err := redisDo(ctx, n.Addr, "cluster", "info")
			if err != nil {
				return err
			}
			if !strings.Contains(info.(string), "cluster_state:ok") {
				return fmt.Errorf("%s: cluster not ok", n.Addr)
			}
			nodes, err := redisDo(ctx, n.Addr, "cluster", "nodes")
			if err != nil {
				return err
			}
			if got := strings.Count(nodes.(string), "slave"); got != 3 {
				return fmt.Errorf("%s sees %d replicas", n.Addr, got)
			}
		}
		// And each master's replica is in sync, not still loading the
		// first copy (WAIT would count it out).
		for _, m := range c.Masters(t) {
			if err := replicaAcks(ctx, m.Addr); err != nil {
				return err
			}
		}
		return nil
	})
	return c
}

// URL returns the redis+cluster:// URL of the cluster, with query when
// not empty.
func (c *Cluster) URL(query string) string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	u := "redis+cluster://" + strings.Join(addrs, ",")
	if query != "" {
		u += "?" + query
	}
	return u
}

// Masters returns the nodes that are masters now.
func (c *Cluster) Masters(t testing.TB) []*Redis {
	t.Helper()
	var out []*Redis
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		role, err := redisDo(ctx, n.Addr, "role")
		cancel()
		if err == nil && fmt.Sprint(role.([]any)[0]) == "master" {
			out = append(out, n)
		}
	}
	return out
}

// replicaAcks reports an error unless the master at addr has a replica
// in sync that acknowledges a write at once (WAIT 1): "online" in INFO
// comes before the replica answers WAIT promptly on a loaded machine.
func replicaAcks(ctx context.Context, addr string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "state=online") {
		return fmt.Errorf("master %s: replica not in sync", addr)
	}
	// WAIT counts the writes made on its own connection: one write first
	// (in a cluster, to a key of one of this master's slots; the others
	// answer MOVED), on a single connection.
	conn := c.Conn()
	defer conn.Close()
	for i := 0; ; i++ {
		err := conn.Set(ctx, fmt.Sprintf("testenv:probe:{%d}", i), 1, time.Minute).Err()
		if err == nil {
			break
		}
		if !goredis.HasErrorPrefix(err, "MOVED") || i > 1000 {
			return err
		}
	}
	n, err := conn.Do(ctx, "wait", 1, 500).Int64()
	if err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("master %s: no replica acknowledged within 500 ms", addr)
	}
	return nil
}

func (r *Redis) port() string { return r.Addr[strings.LastIndexByte(r.Addr, ':')+1:] }

// redisDo runs one command on the server at addr with a short-lived
// client.
func redisDo(ctx context.Context, addr string, args ...any) (any, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return c.Do(ctx, args...).Result()
}

// waitFor calls check until it returns nil, failing the test with what
// and check's last error after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
