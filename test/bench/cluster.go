package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// runCluster measures REGISTER with digest auth against three nodes of
// a.test sharing a Redis Cluster (three masters, each with a replica),
// users and bindings in it, a third of the users and of the load through
// each node. Everything runs on this machine: the figure says what the
// machine does with six Redis processes, three nodes and three SIPps on
// it, not what three machines would.
func runCluster(bin, rates string, seconds int) error {
	work, err := os.MkdirTemp("", "sipfed-bench-cluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	url, stop, err := startCluster(work)
	defer stop()
	if err != nil {
		return err
	}
	inf, aors, pw, err := registerUsers(work)
	if err != nil {
		return err
	}
	add := exec.Command(bin, append([]string{"user", "add", "--password-stdin", "--store", url}, aors...)...)
	add.Stdin = strings.NewReader(pw)
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("user add: %v: %s", err, out)
	}
	data, err := os.ReadFile(inf)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")[1:]
	var addrs, infs []string
	var nodes []*exec.Cmd
	defer func() {
		for _, n := range nodes {
			n.Process.Signal(syscall.SIGTERM)
			n.Wait()
		}
	}()
	for i := range 3 {
		f := filepath.Join(work, fmt.Sprintf("node%d.csv", i+1))
		part := lines[i*len(lines)/3 : (i+1)*len(lines)/3]
		if err := os.WriteFile(f, []byte("SEQUENTIAL\n"+strings.Join(part, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", freePort())
		srv := exec.Command(bin, append([]string{"serve", "--domain", "a.test", "--listen", "udp:" + addr, "--log-level", "error",
			"--min-expires", "1", "--pike-rate", "0", "--store", url, "--users", "redis", "--node-id", fmt.Sprintf("n%d", i+1)}, profileFlags()...)...)
		srv.Stderr = os.Stderr
		if err := srv.Start(); err != nil {
			return err
		}
		nodes = append(nodes, srv)
		addrs, infs = append(addrs, addr), append(infs, f)
	}
	time.Sleep(time.Second)
	fmt.Printf("REGISTER with digest auth (401 + 200 per call) over three sipfed nodes on a Redis Cluster (3 masters, 3 replicas), all on this machine; SIPp 3.6 over UDP on loopback, one per node, %d s per rate, %d users\n", seconds, len(aors))
	printHeader("store")
	return measureSpread(work, registerScenario, "cluster", addrs, infs, rates, seconds)
}

// startCluster starts six redis-server cluster nodes in work, joins them
// with redis-cli (three masters, a replica each), waits until every node
// says the cluster is ok, and returns the redis+cluster:// URL and a
// function that stops them.
func startCluster(work string) (string, func(), error) {
	var procs []*exec.Cmd
	stop := func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}
	var addrs []string
	for i := range 6 {
		port, bus := freePort(), freePort()
		dir := filepath.Join(work, fmt.Sprintf("redis%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", stop, err
		}
		cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "2000")
		if err := cmd.Start(); err != nil {
			return "", stop, fmt.Errorf("redis-server: %w", err)
		}
		procs = append(procs, cmd)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitTCP(addr); err != nil {
			return "", stop, err
		}
		addrs = append(addrs, addr)
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return "", stop, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		for {
			c := goredis.NewClient(&goredis.Options{Addr: a, Protocol: 2})
			info, err := c.ClusterInfo(context.Background()).Result()
			c.Close()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return "", stop, fmt.Errorf("redis cluster not ok on %s: %v %s", a, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return "redis+cluster://" + strings.Join(addrs, ","), stop, nil
}
