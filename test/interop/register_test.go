package interop

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/testenv"
)

const registerUsers = 1000

// TestSIPpRegister1000Users registers 1,000 distinct users with digest
// authentication, over the memory and the Redis store: 0 failures.
func TestSIPpRegister1000Users(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			inf := filepath.Join(dir, "users.csv")
			args := []string{"--users", filepath.Join(dir, "users.txt")}
			target := []string{"--users", filepath.Join(dir, "users.txt")}
			var rdb *goredis.Client
			if store == "redis" {
				r := testenv.StartRedis(t)
				args = []string{"--store", r.URL(), "--users", "redis"}
				target = []string{"--store", r.URL()}
				rdb = goredis.NewClient(&goredis.Options{Addr: r.Addr})
				defer rdb.Close()
			}
			addUsers(t, registerUsers, target, inf)
			srv := startServe(t, args...)
			out, err := sipp(t, srv.addr(), "register.xml", inf, "-m", "1000", "-r", "200", "-l", "200")
			ok, failed := testenv.SIPpCounts(out)
			if err != nil || failed != 0 || ok != registerUsers {
				t.Fatalf("sipp: %v, %d successful, %d failed\n%s\n--- sipfed:\n%s", err, ok, failed, tail(out, 4000), tail(srv.out.String(), 3000))
			}
			if rdb != nil {
				n, err := rdb.Exists(context.Background(), "sipfed:loc:{u0001@a.test}", "sipfed:loc:{u1000@a.test}").Result()
				if err != nil || n != 2 {
					t.Fatalf("bindings in Redis: %d keys of 2, %v", n, err)
				}
			}
			srv.stop()
		})
	}
}

// TestSIPpWrongPasswordFails runs the register scenario with wrong
// passwords: every call must fail (the 200 never comes).
func TestSIPpWrongPasswordFails(t *testing.T) {
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	users := filepath.Join(dir, "users.txt")
	addUsers(t, 3, []string{"--users", users}, inf)
	bad := filepath.Join(dir, "bad.csv")
	writeFile(t, bad, "SEQUENTIAL\nu0001;wrong;a.test\nu0002;wrong;a.test\nu0003;wrong;a.test\n")
	srv := startServe(t, "--users", users)
	out, err := sipp(t, srv.addr(), "register.xml", bad, "-m", "3", "-recv_timeout", "2000")
	ok, failed := testenv.SIPpCounts(out)
	if err == nil || ok != 0 || failed != 3 {
		t.Fatalf("wrong passwords: sipp %v, %d successful, %d failed; want 0 and 3\n%s", err, ok, failed, tail(out, 3000))
	}
}

// TestSIPpUnregisterRemovesBinding registers then unregisters (expires=0):
// the final 200 lists no contact, and Redis holds nothing for the AOR.
func TestSIPpUnregisterRemovesBinding(t *testing.T) {
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	r := testenv.StartRedis(t)
	addUsers(t, 5, []string{"--store", r.URL()}, inf)
	srv := startServe(t, "--store", r.URL(), "--users", "redis")
	out, err := sipp(t, srv.addr(), "unregister.xml", inf, "-m", "5")
	if ok, failed := testenv.SIPpCounts(out); err != nil || ok != 5 || failed != 0 {
		t.Fatalf("sipp: %v (%d ok, %d failed)\n%s", err, ok, failed, tail(out, 4000))
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer rdb.Close()
	if n, err := rdb.Exists(context.Background(), "sipfed:loc:{u0001@a.test}").Result(); err != nil || n != 0 {
		t.Fatalf("binding still in Redis after unregister: %d, %v", n, err)
	}
}

// TestRegistrationSurvivesRestart registers through Redis, restarts
// `sipfed serve` (SIGTERM, exit 0, start again) and queries the bindings
// from the new process.
func TestRegistrationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	r := testenv.StartRedis(t)
	addUsers(t, 3, []string{"--store", r.URL()}, inf)
	srv := startServe(t, "--store", r.URL(), "--users", "redis")
	if out, err := sipp(t, srv.addr(), "register.xml", inf, "-m", "3"); err != nil {
		t.Fatalf("register: %v\n%s", err, tail(out, 3000))
	}
	srv.stop()
	srv.start()
	if out, err := sipp(t, srv.addr(), "query.xml", inf, "-m", "3"); err != nil {
		t.Fatalf("query after restart: %v\n%s\n--- sipfed:\n%s", err, tail(out, 3000), srv.out)
	}
}

// TestRedisOutage503ThenRecovers stops Redis under a running server: a
// REGISTER gets 503 with Retry-After; when Redis is back, registering works
// again without restarting sipfed.
func TestRedisOutage503ThenRecovers(t *testing.T) {
	dir := t.TempDir()
	inf := filepath.Join(dir, "users.csv")
	users := filepath.Join(dir, "users.txt")
	r := testenv.StartRedis(t)
	addUsers(t, 2, []string{"--users", users}, inf)
	srv := startServe(t, "--store", r.URL(), "--users", users)
	if out, err := sipp(t, srv.addr(), "register.xml", inf, "-m", "1"); err != nil {
		t.Fatalf("register: %v\n%s", err, tail(out, 3000))
	}
	r.Stop()
	out, err := sipp(t, srv.addr(), "register.xml", inf, "-m", "1", "-recv_timeout", "8000")
	if err == nil || !strings.Contains(out, "503") {
		t.Fatalf("with Redis down: want the 200 to fail with a 503, got %v\n%s", err, tail(out, 3000))
	}
	r.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := sipp(t, srv.addr(), "register.xml", inf, "-m", "1")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %v\n%s\n--- sipfed:\n%s", err, tail(out, 3000), tail(srv.out.String(), 3000))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
