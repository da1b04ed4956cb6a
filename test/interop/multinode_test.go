package interop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/redisurl"
	"github.com/sipfed/sipfed/internal/testenv"
)

// TestThreeNodesOnRedisCluster runs one domain as three `sipfed serve`
// nodes on a real Redis Cluster (three masters, three replicas), users
// and bindings in it, every REGISTER waiting for a replica
// (--store-min-replicas 1):
//
//   - 999 users register with SIPp, a third through each node: all 999
//     bindings are in the cluster;
//   - the master holding u0001's binding is killed: a REGISTER for u0001
//     gets 503 (never a hang) until a replica has taken over and has a
//     replica of its own again (the old master, restarted), then 200,
//     through any node, without restarting sipfed;
//   - not one acknowledged binding is lost.
func TestThreeNodesOnRedisCluster(t *testing.T) {
	cl := testenv.StartCluster(t)
	url := cl.URL("dial_timeout=300ms&read_timeout=2s&write_timeout=1s&max_retries=1")
	dir := t.TempDir()
	all := filepath.Join(dir, "all.csv")
	const users = 999
	addUsers(t, users, []string{"--store", url}, all)

	var nodes []*server
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, startServe(t, "--store", url, "--users", "redis", "--store-min-replicas", "1", "--node-id", fmt.Sprintf("node%d", i)))
	}
	// A third of the users through each node, at once.
	lines := strings.Split(strings.TrimSpace(readFile(t, all)), "\n")[1:]
	errs := make(chan error, 3)
	for i, n := range nodes {
		inf := filepath.Join(dir, fmt.Sprintf("node%d.csv", i+1))
		writeFile(t, inf, "SEQUENTIAL\n"+strings.Join(lines[i*users/3:(i+1)*users/3], "\n")+"\n")
		go func() {
			out, err := sipp(t, n.addr(), "register.xml", inf, "-m", fmt.Sprint(users/3), "-r", "100", "-l", "100")
			if ok, failed := testenv.SIPpCounts(out); err != nil || failed != 0 || ok != users/3 {
				err = fmt.Errorf("node %d: sipp: %v, %d successful, %d failed\n%s\n--- sipfed:\n%s", i+1, err, ok, failed, tail(out, 3000), tail(n.out.String(), 2000))
			}
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}

	c, err := redisurl.Open(cl.URL(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	countBindings := func() int {
		n := 0
		for i := 1; i <= users; i++ {
			if c.Exists(ctx, fmt.Sprintf("sipfed:loc:{u%04d@a.test}", i)).Val() == 1 {
				n++
			}
		}
		return n
	}
	if n := countBindings(); n != users {
		t.Fatalf("%d bindings of %d in the cluster", n, users)
	}

	// Kill the master of u0001's slot.
	master, err := c.(*goredis.ClusterClient).MasterForKey(ctx, "sipfed:loc:{u0001@a.test}")
	if err != nil {
		t.Fatal(err)
	}
	var killed *testenv.Redis
	for _, m := range cl.Masters(t) {
		if m.Addr == master.Options().Addr {
			killed = m
		}
	}
	if killed == nil {
		t.Fatalf("master %s is not a node of the cluster", master.Options().Addr)
	}
	one := filepath.Join(dir, "u0001.csv")
	writeFile(t, one, "SEQUENTIAL\n"+lines[0]+"\n")
	killed.Stop()
	start := time.Now()

	out, err := sipp(t, nodes[1].addr(), "register.xml", one, "-m", "1", "-recv_timeout", "8000")
	if err == nil || !strings.Contains(out, "503") {
		t.Fatalf("REGISTER with u0001's master dead: want a 503, got %v\n%s\n--- sipfed:\n%s", err, tail(out, 3000), tail(nodes[1].out.String(), 2000))
	}
	t.Logf("REGISTER %v after the kill: 503", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	killed.Restart(t) // empty; it rejoins as the new master's replica

	var last string
	for i := 0; ; i++ {
		n := nodes[i%3]
		out, err := sipp(t, n.addr(), "register.xml", one, "-m", "1", "-recv_timeout", "4000")
		if err == nil {
			t.Logf("REGISTER through node %d: 200 again %v after the kill", i%3+1, time.Since(start).Round(time.Millisecond))
			break
		}
		last = out
		if time.Since(start) > 40*time.Second {
			t.Fatalf("REGISTER still failing 40 s after the master was killed:\n%s\n--- sipfed:\n%s", tail(last, 3000), tail(n.out.String(), 3000))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := countBindings(); n != users {
		t.Fatalf("%d bindings of %d in the cluster after the failover: acknowledged bindings lost", n, users)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
