package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/testenv"
)

// adminStore is what both stores offer the sipfed user command.
type adminStore interface {
	CredentialStore
	Add(ctx context.Context, aor, password string) error
	Del(ctx context.Context, aor string) error
	List(ctx context.Context, domain string) ([]string, error)
}

// runStoreSuite checks the behaviour both stores share: add, look up,
// change a password, list by domain, delete.
func runStoreSuite(t *testing.T, s adminStore) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Lookup(ctx, "alice", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("empty store: %v", err)
	}
	for _, a := range [][2]string{{"alice@A.example", "old"}, {"alice@a.example", "alice-secret"}, {"bob@a.example", "b"}, {"carol@b.example", "c"}} {
		if err := s.Add(ctx, a[0], a[1]); err != nil {
			t.Fatalf("Add %s: %v", a[0], err)
		}
	}
	got, err := s.Lookup(ctx, "alice", "a.example")
	if want := NewCredential("alice", "a.example", "alice-secret"); err != nil || got != want {
		t.Fatalf("Lookup = %+v, %v; want %+v", got, err, want)
	}
	if got.HA1MD5 != md5hex("alice:a.example:alice-secret") || got.HA1SHA256 != sha256hex("alice:a.example:alice-secret") {
		t.Fatalf("HA1s %+v", got)
	}
	if err := s.Add(ctx, "bad aor", "x"); !errors.Is(err, ErrInvalidAOR) {
		t.Errorf("Add bad AOR: %v", err)
	}
	if err := s.Add(ctx, "dave@a.example", "pw\r"); !errors.Is(err, ErrInvalidPassword) {
		t.Errorf("Add password with CR: %v", err)
	}
	for domain, want := range map[string][]string{
		"":          {"alice@a.example", "bob@a.example", "carol@b.example"},
		"a.example": {"alice@a.example", "bob@a.example"},
		"B.example": {"carol@b.example"},
		"c.example": nil,
	} {
		if list, err := s.List(ctx, domain); err != nil || !slices.Equal(list, want) {
			t.Errorf("List(%q) = %q, %v; want %q", domain, list, err, want)
		}
	}
	if err := s.Del(ctx, "bob@a.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Del(ctx, "bob@a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Del twice: %v", err)
	}
	if _, err := s.Lookup(ctx, "bob", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("deleted user: %v", err)
	}
	if list, _ := s.List(ctx, ""); !slices.Equal(list, []string{"alice@a.example", "carol@b.example"}) {
		t.Errorf("List after Del = %q", list)
	}
}

func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	runStoreSuite(t, s)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", st.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "alice-secret") {
		t.Fatalf("password stored in the file:\n%s", data)
	}
	again, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := again.Lookup(context.Background(), "alice", "a.example"); err != nil || c != NewCredential("alice", "a.example", "alice-secret") {
		t.Fatalf("reopened: %+v, %v", c, err)
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(matches) != 0 {
		t.Fatalf("temporary files left: %q", matches)
	}
}

// TestFileStoreReloadsAfterExternalChange checks that a running server
// sees users another process added, within a second, and keeps the last
// good contents when the file is broken.
func TestFileStoreReloadsAfterExternalChange(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users")
	server, clk := openOnClock(t, path)

	cli, _ := OpenFile(path)
	if err := cli.Add(ctx, "alice@a.example", "alice-secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Lookup(ctx, "alice", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("reloaded within the second: %v", err)
	}
	clk.add(time.Second)
	if _, err := server.Lookup(ctx, "alice", "a.example"); err != nil {
		t.Fatalf("after a second: %v", err)
	}

	if err := os.WriteFile(path, []byte("alice@a.example md5=nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if _, err := server.Lookup(ctx, "alice", "a.example"); err != nil {
		t.Fatalf("broken file dropped the last good contents: %v", err)
	}
	if _, err := OpenFile(path); err == nil || !strings.Contains(err.Error(), path+":1") {
		t.Fatalf("OpenFile of a broken file: %v", err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if _, err := server.Lookup(ctx, "alice", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("file removed: %v", err)
	}
}

func TestRedisStore(t *testing.T) {
	r := testenv.StartRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	t.Cleanup(func() { c.Close() })
	runStoreSuite(t, NewRedisStore(c))
	keys, err := c.Keys(context.Background(), "*").Result()
	slices.Sort(keys)
	want := []string{"sipfed:domains", "sipfed:user:{alice@a.example}", "sipfed:user:{carol@b.example}", "sipfed:users:{a.example}", "sipfed:users:{b.example}"}
	if err != nil || !slices.Equal(keys, want) {
		t.Errorf("keys %q, %v; want %q", keys, err, want)
	}
}

// TestRedisStoppedIs503 checks that an unreachable Redis gives
// ErrUnavailable, and the server 503 with Retry-After.
func TestRedisStoppedIs503(t *testing.T) {
	r := testenv.StartRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	store := NewRedisStore(c)
	ctx := context.Background()
	if err := store.Add(ctx, "alice@a.example", "alice-secret"); err != nil {
		t.Fatal(err)
	}
	s := NewServer(store, testSecret)
	nonce := fetchNonce(t, s)
	cl := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "SHA-256"}
	if _, err := s.Authenticate(ctx, register(t, "sip:a.example", cl.answer("REGISTER", "sip:a.example", nonce, "00000001", "c")), "a.example", false); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	r.Stop()
	if _, err := store.Lookup(ctx, "alice", "a.example"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Lookup with Redis down: %v", err)
	}
	if err := store.Add(ctx, "bob@a.example", "b"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Add with Redis down: %v", err)
	}
	_, err := s.Authenticate(ctx, register(t, "sip:a.example", cl.answer("REGISTER", "sip:a.example", nonce, "00000002", "c")), "a.example", false)
	se := statusOf(t, err)
	if se.Code != 503 || len(se.Headers) != 1 || se.Headers[0].Name() != "Retry-After" || se.Headers[0].Value() != "5" {
		t.Fatalf("with Redis down: %v %v", err, se.Headers)
	}
}

// openOnClock opens the users file at path as a server does, on a clock
// the test moves (reloads are checked once a second of it).
func openOnClock(t *testing.T, path string) (*FileStore, *clock) {
	t.Helper()
	clk := newClock()
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clk.now
	s.checked.Store(clk.now().UnixNano())
	return s, clk
}
