package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/testenv"
)

// aliasStore is what both stores offer for aliases.
type aliasStore interface {
	adminStore
	AliasResolver
	Import(ctx context.Context, creds []Credential) (ImportStats, error)
	AddAlias(ctx context.Context, alias, aor string) error
	DelAlias(ctx context.Context, alias string) error
	ListAliases(ctx context.Context, domain string) ([]Alias, error)
}

// runAliasSuite checks the behaviour both stores share: add, resolve,
// replace, list and delete aliases; the conflicts either way; a deleted
// user takes its aliases with it.
func runAliasSuite(t *testing.T, s aliasStore) {
	t.Helper()
	ctx := context.Background()
	for _, aor := range []string{"alice@a.example", "bob@a.example", "carol@b.example"} {
		if err := s.Add(ctx, aor, "pw-"+aor); err != nil {
			t.Fatalf("Add %s: %v", aor, err)
		}
	}
	for _, a := range [][2]string{
		{"1001@a.example", "alice@a.example"},
		{"+81312345678@A.Example", "alice@a.example"}, // E.164; the domain is lowered
		{"sip:front@a.example", "bob@A.example"},
		{"200@b.example", "carol@b.example"},
		{"1001@a.example", "alice@a.example"}, // again: no change
	} {
		if err := s.AddAlias(ctx, a[0], a[1]); err != nil {
			t.Fatalf("AddAlias %s %s: %v", a[0], a[1], err)
		}
	}
	for _, c := range []struct{ user, domain, want string }{
		{"1001", "a.example", "alice"},
		{"1001", "A.EXAMPLE", "alice"},
		{"+81312345678", "a.example", "alice"},
		{"front", "a.example", "bob"},
		{"200", "b.example", "carol"},
	} {
		if got, err := s.Alias(ctx, c.user, c.domain); err != nil || got != c.want {
			t.Errorf("Alias(%s, %s) = %q, %v; want %q", c.user, c.domain, got, err, c.want)
		}
	}
	for _, c := range [][2]string{{"alice", "a.example"}, {"1001", "b.example"}, {"1002", "a.example"}} {
		if got, err := s.Alias(ctx, c[0], c[1]); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("Alias(%s, %s) = %q, %v; want ErrUnknownUser", c[0], c[1], got, err)
		}
	}
	if c, err := s.Lookup(ctx, "1001", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Lookup of an alias = %+v, %v; want ErrUnknownUser (an alias has no credentials)", c, err)
	}

	// Replace: front now stands for alice.
	if err := s.AddAlias(ctx, "front@a.example", "alice@a.example"); err != nil {
		t.Fatalf("AddAlias to another user: %v", err)
	}
	if got, err := s.Alias(ctx, "front", "a.example"); err != nil || got != "alice" {
		t.Errorf("replaced alias = %q, %v; want alice", got, err)
	}

	for _, c := range []struct {
		alias, aor string
		want       error
		msg        string
	}{
		{"2000@a.example", "carol@b.example", ErrAliasConflict, "2000@a.example and carol@b.example are in different domains"},
		{"bob@a.example", "alice@a.example", ErrAliasConflict, "bob@a.example is a user"},
		{"2000@a.example", "nobody@a.example", ErrAliasConflict, "nobody@a.example is not a user"},
		{"2001@a.example", "1001@a.example", ErrAliasConflict, "1001@a.example is not a user"}, // no alias of an alias
		{"alice@a.example", "alice@a.example", ErrAliasConflict, "alice@a.example is a user"},
		{"2000", "alice@a.example", ErrInvalidAOR, "is not user@domain"},
		{"2000@a.example", "al ice@a.example", ErrInvalidAOR, "user part"},
	} {
		if err := s.AddAlias(ctx, c.alias, c.aor); !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.msg) {
			t.Errorf("AddAlias(%s, %s) = %v; want %v with %q", c.alias, c.aor, err, c.want, c.msg)
		}
	}
	if _, err := s.Alias(ctx, "2000", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("a refused alias was added: %v", err)
	}

	// A user may not take an alias's name, nor be imported under one.
	if err := s.Add(ctx, "1001@a.example", "pw"); !errors.Is(err, ErrAliasConflict) || !strings.Contains(err.Error(), "1001@a.example is an alias of alice@a.example") {
		t.Errorf("Add of an alias: %v", err)
	}
	dave := NewCredential("dave", "a.example", "d")
	if _, err := s.Import(ctx, []Credential{dave, NewCredential("200", "b.example", "pw")}); !errors.Is(err, ErrAliasConflict) {
		t.Errorf("Import of an alias: %v", err)
	}
	for _, c := range [][2]string{{"1001", "a.example"}, {"200", "b.example"}, {"dave", "a.example"}} {
		if _, err := s.Lookup(ctx, c[0], c[1]); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("%s@%s written by a refused Add or Import: %v", c[0], c[1], err)
		}
	}
	if st, err := s.Import(ctx, []Credential{dave}); err != nil || st.Added != 1 {
		t.Errorf("Import beside aliases: %+v, %v", st, err)
	}

	all := []Alias{
		{"+81312345678@a.example", "alice@a.example"},
		{"1001@a.example", "alice@a.example"},
		{"200@b.example", "carol@b.example"},
		{"front@a.example", "alice@a.example"},
	}
	for domain, want := range map[string][]Alias{
		"":          all,
		"A.example": {all[0], all[1], all[3]},
		"b.example": {all[2]},
		"c.example": nil,
	} {
		if got, err := s.ListAliases(ctx, domain); err != nil || !slices.Equal(got, want) {
			t.Errorf("ListAliases(%q) = %v, %v; want %v", domain, got, err, want)
		}
	}
	if l, err := s.List(ctx, ""); err != nil || !slices.Equal(l, []string{"alice@a.example", "bob@a.example", "carol@b.example", "dave@a.example"}) {
		t.Errorf("List shows aliases: %q, %v", l, err)
	}

	if err := s.DelAlias(ctx, "1001@A.example"); err != nil {
		t.Fatalf("DelAlias: %v", err)
	}
	for _, a := range []string{"1001@a.example", "alice@a.example", "9@c.example"} {
		if err := s.DelAlias(ctx, a); !errors.Is(err, ErrUnknownUser) || !strings.Contains(err.Error(), a+" is not an alias") {
			t.Errorf("DelAlias(%s) = %v; want ErrUnknownUser", a, err)
		}
	}
	if err := s.DelAlias(ctx, "1001"); !errors.Is(err, ErrInvalidAOR) {
		t.Errorf("DelAlias of no AOR: %v", err)
	}

	// Deleting alice deletes her aliases, and only hers.
	if err := s.Add(ctx, "1001@a.example", "pw"); err != nil {
		t.Fatalf("Add of a deleted alias's name: %v", err)
	}
	if err := s.AddAlias(ctx, "1002@a.example", "bob@a.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Del(ctx, "alice@a.example"); err != nil {
		t.Fatal(err)
	}
	want := []Alias{{"1002@a.example", "bob@a.example"}, {"200@b.example", "carol@b.example"}}
	if got, err := s.ListAliases(ctx, ""); err != nil || !slices.Equal(got, want) {
		t.Errorf("ListAliases after Del alice = %v, %v; want %v", got, err, want)
	}
	for _, u := range []string{"front", "+81312345678"} {
		if _, err := s.Alias(ctx, u, "a.example"); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("alias %s of a deleted user: %v", u, err)
		}
	}
	if err := s.Add(ctx, "front@a.example", "pw"); err != nil {
		t.Errorf("Add of a deleted user's alias's name: %v", err)
	}
}

func TestFileStoreAliases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	runAliasSuite(t, s)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The users sorted, a blank line, the aliases sorted.
	want := fileHeader +
		"1001@a.example md5=" + md5hex("1001:a.example:pw") + " sha-256=" + sha256hex("1001:a.example:pw") + "\n" +
		"bob@a.example md5=" + md5hex("bob:a.example:pw-bob@a.example") + " sha-256=" + sha256hex("bob:a.example:pw-bob@a.example") + "\n" +
		"carol@b.example md5=" + md5hex("carol:b.example:pw-carol@b.example") + " sha-256=" + sha256hex("carol:b.example:pw-carol@b.example") + "\n" +
		"dave@a.example md5=" + md5hex("dave:a.example:d") + " sha-256=" + sha256hex("dave:a.example:d") + "\n" +
		"front@a.example md5=" + md5hex("front:a.example:pw") + " sha-256=" + sha256hex("front:a.example:pw") + "\n" +
		"\n" +
		"1002@a.example alias=bob@a.example\n" +
		"200@b.example alias=carol@b.example\n"
	if string(data) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", data, want)
	}
	// Re-adding an alias rewrites the file byte for byte.
	if err := s.AddAlias(context.Background(), "1002@a.example", "bob@a.example"); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); string(again) != want {
		t.Errorf("file changed by an idempotent AddAlias:\n%s", again)
	}
	reopened, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reopened.Alias(context.Background(), "200", "b.example"); err != nil || got != "carol" {
		t.Errorf("reopened: Alias = %q, %v", got, err)
	}
}

func TestRedisStoreAliases(t *testing.T) {
	r := testenv.StartRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	s := NewRedisStore(c)
	runAliasSuite(t, s)
	ctx := context.Background()
	if m, err := c.HGetAll(ctx, "sipfed:aliases:{a.example}").Result(); err != nil || len(m) != 1 || m["1002"] != "bob" {
		t.Errorf("sipfed:aliases:{a.example} = %v, %v; want 1002 → bob", m, err)
	}
	if m, err := c.HGetAll(ctx, "sipfed:aliases:{b.example}").Result(); err != nil || len(m) != 1 || m["200"] != "carol" {
		t.Errorf("sipfed:aliases:{b.example} = %v, %v; want 200 → carol", m, err)
	}

	// Import into a domain with aliases: checked in batches before a
	// single user is written.
	creds := make([]Credential, 2500)
	for i := range creds {
		creds[i] = NewCredential(fmt.Sprintf("u%04d", i), "b.example", "pw")
	}
	creds[2100] = NewCredential("200", "b.example", "pw")
	keys, _ := c.DBSize(ctx).Result()
	if _, err := s.Import(ctx, creds); !errors.Is(err, ErrAliasConflict) || !strings.Contains(err.Error(), "200@b.example is an alias of carol@b.example") {
		t.Errorf("Import with an alias in its third batch: %v", err)
	}
	if n, _ := c.DBSize(ctx).Result(); n != keys {
		t.Errorf("a refused Import wrote %d keys", n-keys)
	}

	r.Stop()
	if _, err := s.Alias(ctx, "200", "b.example"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Alias with Redis down: %v", err)
	}
	if err := s.AddAlias(ctx, "201@b.example", "carol@b.example"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("AddAlias with Redis down: %v", err)
	}
}

// TestUsersFileAliasLines checks alias lines: anywhere in the file, and
// each mistake a parse error that starts with its line number.
func TestUsersFileAliasLines(t *testing.T) {
	ha1 := " md5=" + md5hex("x")
	alice := "alice@a.example" + ha1 + "\n"
	d, err := parseUsersFile("# aliases first\n1001@A.example  alias=sip:alice@A.EXAMPLE\n\t+81312345678@a.example alias=alice@a.example x=y\n" + alice)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Alias{{"+81312345678@a.example", "alice@a.example"}, {"1001@a.example", "alice@a.example"}}; !slices.Equal(d.list(""), want) {
		t.Errorf("aliases %v, want %v", d.list(""), want)
	}
	if _, ok := d.users["a.example"]["1001"]; ok || len(d.users["a.example"]) != 1 {
		t.Errorf("users %v", d.users)
	}
	for _, c := range []struct {
		in, want string
		conflict bool
	}{
		{alice + "1001@a.example alias=alice@a.example" + ha1 + "\n", "2: 1001@a.example has alias= and a hash: an alias has no password", false},
		{alice + "1001@a.example sha-256=" + sha256hex("x") + " alias=alice@a.example\n", "2: 1001@a.example has alias= and a hash", false},
		{alice + "1001@a.example alias=\n", "2: alias=: auth: invalid address of record", false},
		{alice + "1001@a.example alias=alice\n", "2: alias=: auth: invalid address of record", false},
		{alice + "1001@a.example alias=alice@b.example\n", "2: auth: alias conflict: 1001@a.example and alice@b.example are in different domains", true},
		{alice + "1001@a.example alias=alice@a.example\n# again\n1001@a.example alias=alice@a.example\n", "4: 1001@a.example listed twice", false},
		{alice + "1001@a.example\n", "2: 1001@a.example has neither md5= nor sha-256= nor alias=", false},
	} {
		_, err := parseUsersFile(c.in)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || errors.Is(err, ErrAliasConflict) != c.conflict {
			t.Errorf("%q: %v; want %q (conflict %v)", c.in, err, c.want, c.conflict)
		}
	}
	// Alias lines that users overrule are left out, not fatal: deleting
	// a user's line by hand takes effect even when an alias names it.
	for _, c := range []struct{ in, dropped string }{
		{"1001@a.example alias=alice@a.example\n", "line 1: 1001@a.example stands for alice@a.example, who is no user: left out"},
		{alice + "1001@a.example alias=alice@a.example\n1002@a.example alias=1001@a.example\n", "line 3: 1002@a.example stands for 1001@a.example, who is no user: left out"},
		{alice + "\n1001@a.example alias=alice@a.example\n1001@a.example" + ha1 + "\n", "line 3: 1001@a.example is a user and an alias: the alias is left out"},
	} {
		d, err := parseUsersFile(c.in)
		if err != nil || !slices.Contains(d.dropped, c.dropped) {
			t.Errorf("%q: %v, dropped %q; want %q", c.in, err, d.dropped, c.dropped)
		}
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(alice+"1001@a.example alias=bob@a.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	var warned []string
	f.OnWarning(func(msg string) { warned = append(warned, msg) })
	if _, err := f.Alias(context.Background(), "1001", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("an alias of nobody: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "1001@a.example stands for bob@a.example, who is no user") {
		t.Errorf("warnings %q", warned)
	}
}

// TestFileStoreUserDeletedByHand: removing a user's line by hand locks
// the user out at the next reload, even with an alias still naming it
// (the alias goes, with a warning); a change that does not parse is said
// once and the last good contents stay.
func TestFileStoreUserDeletedByHand(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users")
	s, clk := openOnClock(t, path)
	var warned []string
	s.OnWarning(func(msg string) { warned = append(warned, msg) })
	for _, u := range []string{"alice@a.example", "bob@a.example"} {
		if err := s.Add(ctx, u, "secret"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddAlias(ctx, "1001@a.example", "alice@a.example"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var kept []string
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "alice@") {
			kept = append(kept, line)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Second)
	if _, err := s.Lookup(ctx, "alice", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("alice, deleted by hand: %v", err)
	}
	if _, err := s.Lookup(ctx, "bob", "a.example"); err != nil {
		t.Errorf("bob: %v", err)
	}
	if _, err := s.Alias(ctx, "1001", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("1001, alias of the deleted alice: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "who is no user") {
		t.Errorf("warnings %q", warned)
	}

	if err := os.WriteFile(path, []byte("bob@a.example md5=zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clk.add(2 * time.Second)
		if _, err := s.Lookup(ctx, "bob", "a.example"); err != nil {
			t.Errorf("bob, after a broken edit: %v", err)
		}
	}
	if len(warned) != 2 || !strings.Contains(warned[1], "not reloaded") {
		t.Errorf("warnings %q; want one more, saying the broken file was not reloaded", warned)
	}
}

// TestFileStoreAliasReload checks that a running server sees aliases
// added by "sipfed user alias add" and by hand within a second, and
// keeps the last good aliases when an edit breaks the file.
func TestFileStoreAliasReload(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users")
	server, clk := openOnClock(t, path)

	cli, _ := OpenFile(path)
	if err := cli.Add(ctx, "alice@a.example", "alice-secret"); err != nil {
		t.Fatal(err)
	}
	if err := cli.AddAlias(ctx, "1001@a.example", "alice@a.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Alias(ctx, "1001", "a.example"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("reloaded within the second: %v", err)
	}
	clk.add(time.Second)
	if got, err := server.Alias(ctx, "1001", "a.example"); err != nil || got != "alice" {
		t.Fatalf("after a second: %q, %v", got, err)
	}

	// By hand: 1001 now stands for bob, and 1002 for alice.
	data, _ := os.ReadFile(path)
	edited := strings.Replace(string(data), "\n1001@a.example alias=alice@a.example\n", "\n1001@a.example alias=bob@a.example\n1002@a.example alias=alice@a.example\n", 1) +
		"bob@a.example md5=" + md5hex("bob:a.example:b") + "\n"
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	for user, want := range map[string]string{"1001": "bob", "1002": "alice"} {
		if got, err := server.Alias(ctx, user, "a.example"); err != nil || got != want {
			t.Errorf("hand-edited: Alias(%s) = %q, %v; want %q", user, got, err, want)
		}
	}
	if list, err := cli.ListAliases(ctx, ""); err != nil || len(list) != 2 {
		t.Errorf("ListAliases of the hand-edited file: %v, %v", list, err)
	}

	if err := os.WriteFile(path, []byte(edited+"1003@a.example alias=carol\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if got, err := server.Alias(ctx, "1001", "a.example"); err != nil || got != "bob" {
		t.Errorf("broken file dropped the last good aliases: %q, %v", got, err)
	}
	if err := cli.AddAlias(ctx, "1004@a.example", "alice@a.example"); err == nil || !strings.Contains(err.Error(), path+":") {
		t.Errorf("AddAlias into a broken file: %v", err)
	}
}

// stepClock is a clock that moves a second on every reading: a FileStore
// on it checks the file on every call.
type stepClock struct{ ns atomic.Int64 }

func (c *stepClock) now() time.Time { return time.Unix(0, c.ns.Add(int64(time.Second))) }

// TestFileStoreConcurrentReload reads users and aliases while other
// writers change the file, checking on every call: under -race it finds
// data races between reloads, writes and reads; the checks find a
// reading that mixes two versions of the file.
func TestFileStoreConcurrentReload(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users")
	admin, _ := OpenFile(path)
	for _, aor := range []string{"alice@a.example", "bob@a.example"} {
		if err := admin.Add(ctx, aor, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	server, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var clk stepClock
	server.now = clk.now

	const rounds = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := server.Lookup(ctx, "alice", "a.example"); err != nil {
					errc <- fmt.Errorf("Lookup alice: %w", err)
					return
				}
				if _, err := server.Lookup(ctx, "1001", "a.example"); !errors.Is(err, ErrUnknownUser) {
					errc <- fmt.Errorf("Lookup of the alias 1001: %v", err)
					return
				}
				got, err := server.Alias(ctx, "1001", "a.example")
				if err != nil && !errors.Is(err, ErrUnknownUser) || err == nil && got != "alice" && got != "bob" {
					errc <- fmt.Errorf("Alias 1001 = %q, %v", got, err)
					return
				}
			}
		}()
	}
	writer := func(s *FileStore) error {
		for i := range rounds {
			target := []string{"alice@a.example", "bob@a.example"}[i%2]
			if err := s.AddAlias(ctx, "1001@a.example", target); err != nil {
				return err
			}
			if i%3 == 0 {
				if err := s.DelAlias(ctx, "1001@a.example"); err != nil && !errors.Is(err, ErrUnknownUser) {
					return err
				}
			}
		}
		return nil
	}
	var wwg sync.WaitGroup
	for _, s := range []*FileStore{admin, server} { // another process, and the server's own store
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			if err := writer(s); err != nil {
				errc <- err
			}
		}()
	}
	wwg.Wait()
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if _, err := OpenFile(path); err != nil {
		t.Errorf("the file after concurrent writes: %v", err)
	}
}

// TestFileStoreHotPathAllocs checks that Lookup and Alias allocate
// nothing, reloads aside.
func TestFileStoreHotPathAllocs(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenFile(filepath.Join(t.TempDir(), "users"))
	if err := s.Add(ctx, "alice@a.example", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias(ctx, "1001@a.example", "alice@a.example"); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(){
		"Lookup": func() { s.Lookup(ctx, "alice", "a.example") },
		"Alias":  func() { s.Alias(ctx, "1001", "a.example") },
		"Alias of no alias": func() {
			s.Alias(ctx, "alice", "a.example")
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

// BenchmarkFileStoreAlias is the proxy's look-up of a Request-URI that
// is no user: Lookup, then Alias.
func BenchmarkFileStoreAlias(b *testing.B) {
	ctx := context.Background()
	s, _ := OpenFile(filepath.Join(b.TempDir(), "users"))
	creds := make([]Credential, 1000)
	for i := range creds {
		creds[i] = NewCredential(fmt.Sprintf("user%d", i), "a.example", "pw")
	}
	if _, err := s.Import(ctx, creds); err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		if err := s.AddAlias(ctx, fmt.Sprintf("%d@a.example", 1000+i), fmt.Sprintf("user%d@a.example", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup(ctx, "1042", "a.example"); !errors.Is(err, ErrUnknownUser) {
			b.Fatal(err)
		}
		if u, err := s.Alias(ctx, "1042", "a.example"); err != nil || u != "user42" {
			b.Fatal(u, err)
		}
	}
}
