package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sipfed/sipfed/internal/testenv"
)

func parse(t *testing.T, in, format string) *ParsedUsers {
	t.Helper()
	p, err := ParseUsers(strings.NewReader(in), format)
	if err != nil {
		t.Fatalf("ParseUsers(%q): %v", in, err)
	}
	return p
}

func md5Only(user, realm, password string) Credential {
	c := NewCredential(user, realm, password)
	c.HA1SHA256 = ""
	return c
}

func TestParseUsersLines(t *testing.T) {
	in := "# exported 2025-03-01\n" +
		"alice@a.example:alice-secret\n" +
		"\n   \t\n" +
		"sip:bob@A.Example:pa:ss word \r\n" + // CRLF; ':' and spaces kept
		"carol@[2001:db8::1]:c:arol\n" +
		"  # indented comment\n" +
		"dave@10.0.0.1:dave" // no final newline
	for _, format := range []string{"lines", "auto", ""} {
		p := parse(t, in, format)
		want := []Credential{
			NewCredential("alice", "a.example", "alice-secret"),
			NewCredential("bob", "a.example", "pa:ss word "),
			NewCredential("carol", "[2001:db8::1]", "c:arol"),
			NewCredential("dave", "10.0.0.1", "dave"),
		}
		if p.Format != FormatLines || !slices.Equal(p.Creds, want) || p.Records != 4 || p.BadCount != 0 || p.MD5Only != 0 {
			t.Errorf("format %q: %+v\nwant %+v", format, p, want)
		}
	}
}

func TestParseUsersCSV(t *testing.T) {
	aliceHA1 := md5hex("alice:a.example:alice-secret")
	for _, c := range []struct {
		name, in    string
		want        []Credential
		mismatch    int
		md5Only     int
		explicitCSV bool
	}{
		{"aor,password", "aor,password\nalice@a.example,alice-secret\n\"bob@a.example\",\"b,\"\"ob\"\"\"\r\n",
			[]Credential{NewCredential("alice", "a.example", "alice-secret"), NewCredential("bob", "a.example", `b,"ob"`)}, 0, 0, false},
		{"BOM and comment", "\xef\xbb\xbf# users\nAOR,Password\nalice@a.example,alice-secret\n",
			[]Credential{NewCredential("alice", "a.example", "alice-secret")}, 0, 0, false},
		{"aor,ha1", "aor,ha1\nalice@a.example," + strings.ToUpper(aliceHA1) + "\n",
			[]Credential{md5Only("alice", "a.example", "alice-secret")}, 0, 1, false},
		{"kamailio", "id,username,domain,password,ha1,ha1b,email_address\n" +
			"1,alice,a.example,alice-secret," + aliceHA1 + ",ffff,a@x\n" + // password matches: both hashes
			"2,bob,a.example,stale," + md5hex("bob:a.example:bob-secret") + ",ffff,\n" + // ha1 wins
			"3,carol,b.example,carol-secret,,,\n" + // password only
			"4,dave,b.example,,\\N,,\n", // neither: bad
			[]Credential{NewCredential("alice", "a.example", "alice-secret"), md5Only("bob", "a.example", "bob-secret"), NewCredential("carol", "b.example", "carol-secret")}, 1, 1, false},
		{"semicolons", "username;domain;password\nalice;a.example;alice-secret\n",
			[]Credential{NewCredential("alice", "a.example", "alice-secret")}, 0, 0, false},
		{"tabs", "username\tdomain\tha1\nalice\ta.example\t" + aliceHA1 + "\n",
			[]Credential{md5Only("alice", "a.example", "alice-secret")}, 0, 1, false},
		{"explicit", "aor,password\nalice@a.example,alice-secret\n",
			[]Credential{NewCredential("alice", "a.example", "alice-secret")}, 0, 0, true},
	} {
		format := FormatAuto
		if c.explicitCSV {
			format = FormatCSV
		}
		p := parse(t, c.in, format)
		if p.Format != FormatCSV || !slices.Equal(p.Creds, c.want) || p.HA1Mismatch != c.mismatch || p.MD5Only != c.md5Only {
			t.Errorf("%s: %+v\nwant %+v", c.name, p, c.want)
		}
	}
	p := parse(t, "id,username,domain,password,ha1\n1,dave,b.example,,\\N\n2,x y,b.example,pw,\n3,eve,b.example\n", FormatCSV)
	if p.BadCount != 3 || len(p.Creds) != 0 || p.Bad[0].Line != 2 || !strings.Contains(p.Bad[0].Error(), "neither a password nor an ha1") ||
		p.Bad[1].Line != 3 || !errors.Is(&p.Bad[1], ErrInvalidAOR) || p.Bad[2].Line != 4 || !strings.Contains(p.Bad[2].Error(), "3 fields, the header has 5") {
		t.Errorf("bad rows: %+v", p.Bad)
	}
	if _, err := ParseUsers(strings.NewReader("aor,secret\nalice@a.example,x\n"), FormatCSV); err == nil || !strings.Contains(err.Error(), `no "password" or "ha1" column`) {
		t.Errorf("header without a secret column: %v", err)
	}
}

func TestParseUsersHA1(t *testing.T) {
	ha1 := md5hex("alice:a.example:alice-secret")
	in := "alice:a.example:" + strings.ToUpper(ha1) + "\r\n" +
		"bob:[::1]:" + md5hex("bob:[::1]:b") + "\n" +
		"sip:carol@B.example:" + md5hex("carol:b.example:c") + "\n"
	p := parse(t, in, FormatHA1)
	want := []Credential{md5Only("alice", "a.example", "alice-secret"), md5Only("bob", "[::1]", "b"), md5Only("carol", "b.example", "c")}
	if !slices.Equal(p.Creds, want) || p.MD5Only != 3 || p.BadCount != 0 {
		t.Errorf("%+v\nwant %+v", p, want)
	}
	// Auto: user:realm:HA1 is ha1; AOR:32 hex digits is a password.
	if p := parse(t, "alice:a.example:"+ha1+"\n", FormatAuto); p.Format != FormatHA1 || p.Creds[0] != want[0] {
		t.Errorf("auto htdigest: %+v", p)
	}
	if p := parse(t, "alice@a.example:"+ha1+"\n", FormatAuto); p.Format != FormatLines || p.Creds[0] != NewCredential("alice", "a.example", ha1) {
		t.Errorf("auto AOR:hex: %+v", p)
	}
	p = parse(t, "alice:a.example:"+sha256hex("x")+"\nbob:a.example:s3kr1t\nbob@a.example:pa55:w0rd\n", FormatHA1)
	if p.BadCount != 3 || !strings.Contains(p.Bad[0].Error(), "only the MD5 HA1") || !strings.Contains(p.Bad[1].Error(), "not 32 hex digits") {
		t.Errorf("bad HA1s: %+v", p.Bad)
	}
	for _, b := range p.Bad {
		if strings.Contains(b.Error(), "s3kr1t") || strings.Contains(b.Error(), "pa55") || strings.Contains(b.Error(), sha256hex("x")[:16]) {
			t.Errorf("secret shown: %v", &b)
		}
	}
}

// TestParseUsersBadLines checks that each bad line is reported with its
// number, its AOR quoted, and never its password.
func TestParseUsersBadLines(t *testing.T) {
	const pw = "Sup3rSecret"
	for _, c := range []struct {
		line string
		want string // in the message
		aor  bool   // the message quotes the AOR
	}{
		{"alice@a.example:" + pw + "\x00x", `invalid password: control character '\x00'`, true},
		{"alice@a.example:" + pw + "\rx", `invalid password: control character '\r'`, true},
		{"alice@a.example:", "invalid password: empty", true},
		{"al\x00ice@a.example:" + pw, "invalid address of record", true},
		{"alice@a.exa mple:" + pw, "invalid address of record", true},
		{"alice@a.example " + pw, "no ':'", false},
		{pw + ":alice@a.example", "no user@domain before the first ':'", false},
		{"alice:" + pw + "@x", "no user@domain before the first ':'", false},
		{"alice@[::1:" + pw, `IPv6 domain not closed`, true},
		{"alice@a.example:" + strings.Repeat(pw, 7000), "longer than 64 KiB", false},
	} {
		in := "# header\nok@a.example:pw\n" + c.line + "\nok2@a.example:pw\n"
		p := parse(t, in, FormatLines)
		if p.BadCount != 1 || len(p.Bad) != 1 || len(p.Creds) != 2 || p.Records != 3 {
			t.Errorf("%q: %+v", c.line, p)
			continue
		}
		msg := p.Bad[0].Error()
		if p.Bad[0].Line != 3 || !strings.HasPrefix(msg, "line 3: ") || !strings.Contains(msg, c.want) || !errors.Is(&p.Bad[0], ErrBadLine) {
			t.Errorf("%q: %q, want line 3 and %q", c.line, msg, c.want)
		}
		if c.aor != (p.Bad[0].AOR != "") || strings.Contains(msg, pw) || strings.Contains(msg, "\x00") || strings.Contains(msg, "\r") {
			t.Errorf("%q: message %q shows the password or a raw control character, or lacks the AOR", c.line, msg)
		}
	}
	if _, err := ParseUsers(strings.NewReader("just some text\n"), FormatAuto); err == nil || strings.Contains(err.Error(), "just") {
		t.Errorf("undetectable: %v", err)
	}
	if _, err := ParseUsers(strings.NewReader(""), "xml"); err == nil {
		t.Error("unknown format accepted")
	}
	if p := parse(t, "", FormatAuto); len(p.Creds) != 0 || p.Records != 0 {
		t.Errorf("empty input: %+v", p)
	}
}

func TestParseUsersDuplicatesLastWins(t *testing.T) {
	p := parse(t, "alice@a.example:one\nbob@a.example:b\nalice@A.example:two\nsip:alice@a.example:three\n", FormatLines)
	want := []Credential{NewCredential("alice", "a.example", "three"), NewCredential("bob", "a.example", "b")}
	wantDup := []Duplicate{{"alice@a.example", 3, 1}, {"alice@a.example", 4, 3}}
	if !slices.Equal(p.Creds, want) || p.DupCount != 2 || !slices.Equal(p.Duplicates, wantDup) {
		t.Errorf("%+v", p)
	}
}

// TestHashCredentialMatchesNewCredential checks the import's hashing
// against Add's.
func TestHashCredentialMatchesNewCredential(t *testing.T) {
	var scratch []byte
	for _, pw := range []string{"x", "pa:ss word", strings.Repeat("long", 100)} {
		if got, want := hashCredential(&scratch, "alice", "a.example", pw), NewCredential("alice", "a.example", pw); got != want {
			t.Errorf("%q: %+v, want %+v", pw, got, want)
		}
		if got, want := hashCredential(&scratch, "alice", "a.example", []byte(pw)), NewCredential("alice", "a.example", pw); got != want {
			t.Errorf("%q bytes: %+v, want %+v", pw, got, want)
		}
	}
}

// importSuite imports into s over a user added before, and checks the
// counts, Lookup and List.
func importSuite(t *testing.T, s interface {
	adminStore
	Import(context.Context, []Credential) (ImportStats, error)
}) {
	t.Helper()
	ctx := context.Background()
	if err := s.Add(ctx, "alice@a.example", "old"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "carol@a.example", "carol-secret"); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	in.WriteString("aor,password,ha1\n")
	in.WriteString("alice@a.example,alice-secret,\n")
	in.WriteString("carol@a.example,," + md5hex("carol:a.example:new") + "\n") // MD5 only now
	for i := range 2500 {
		fmt.Fprintf(&in, "u%04d@b.example,pw%d,\n", i, i)
	}
	p := parse(t, in.String(), FormatAuto)
	if len(p.Creds) != 2502 || p.BadCount != 0 || p.MD5Only != 1 {
		t.Fatalf("parsed %+v", p)
	}
	if _, err := s.Import(ctx, []Credential{{User: "x", Realm: "A.example", HA1MD5: md5hex("x")}}); !errors.Is(err, ErrInvalidAOR) {
		t.Errorf("Import of an AOR not in normal form: %v", err)
	}
	st, err := s.Import(ctx, p.Creds)
	if err != nil || st != (ImportStats{Added: 2500, Updated: 2}) {
		t.Fatalf("Import = %+v, %v", st, err)
	}
	for _, want := range []Credential{
		NewCredential("alice", "a.example", "alice-secret"),
		md5Only("carol", "a.example", "new"),
		NewCredential("u0000", "b.example", "pw0"),
		NewCredential("u1234", "b.example", "pw1234"),
		NewCredential("u2499", "b.example", "pw2499"),
	} {
		if got, err := s.Lookup(ctx, want.User, want.Realm); err != nil || got != want {
			t.Errorf("Lookup %s@%s = %+v, %v; want %+v", want.User, want.Realm, got, err, want)
		}
	}
	if l, err := s.List(ctx, "a.example"); err != nil || !slices.Equal(l, []string{"alice@a.example", "carol@a.example"}) {
		t.Errorf("List a.example = %q, %v", l, err)
	}
	if l, err := s.List(ctx, ""); err != nil || len(l) != 2502 || l[2] != "u0000@b.example" {
		t.Errorf("List = %d AORs, %v", len(l), err)
	}
	if err := s.Del(ctx, "u0001@b.example"); err != nil {
		t.Errorf("Del of an imported user: %v", err)
	}
}

func TestFileStoreImport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	importSuite(t, s)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "\ncarol@a.example md5="+md5hex("carol:a.example:new")+"\n") {
		t.Errorf("carol's line is not MD5 alone:\n%.500s", data)
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(matches) != 0 {
		t.Fatalf("temporary files left: %q", matches)
	}
}

// TestFileStoreWriteOrder checks that the file is sorted by line, as it
// was when the lines were sorted as strings.
func TestFileStoreWriteOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	s, _ := OpenFile(path)
	aors := []string{"a@b.c", "a-b@b.c", "a@b.c-d", "a.b@b.c", "a@a.c", "ab@b.c", "a!@b.c", "A@b.c"}
	var creds []Credential
	for _, a := range aors {
		c, err := MakeCredential(a, "pw")
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, c)
	}
	if _, err := s.Import(context.Background(), creds); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && l[0] != '#' {
			lines = append(lines, l)
		}
	}
	if !slices.IsSorted(lines) || len(lines) != len(aors) {
		t.Errorf("not sorted:\n%s", strings.Join(lines, "\n"))
	}
}

func TestRedisStoreImport(t *testing.T) {
	r := testenv.StartRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	t.Cleanup(func() { c.Close() })
	importSuite(t, NewRedisStore(c))
	ctx := context.Background()
	if f, err := c.HKeys(ctx, "sipfed:user:{carol@a.example}").Result(); err != nil || !slices.Equal(f, []string{"md5"}) {
		t.Errorf("carol's fields %q, %v: the old sha-256 should be gone", f, err)
	}
	if d, err := c.SMembers(ctx, "sipfed:domains").Result(); err != nil || len(d) != 2 {
		t.Errorf("domains %q, %v", d, err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 2501+3 {
		t.Errorf("%d keys, %v; want a hash per user and the three sets", n, err)
	}
}

// TestMD5OnlyUser checks what a user imported from an MD5 HA1 gets: MD5
// digest works; an answer to the SHA-256 challenge is refused as a wrong
// password would be (a new challenge), without a crash.
func TestMD5OnlyUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	store, _ := OpenFile(path)
	p := parse(t, "alice:a.example:"+md5hex("alice:a.example:alice-secret")+"\n", FormatAuto)
	if _, err := store.Import(context.Background(), p.Creds); err != nil {
		t.Fatal(err)
	}
	s := NewServer(store, testSecret)
	for i, alg := range []string{"MD5", ""} {
		cl := client{user: "alice", realm: "a.example", password: "alice-secret", alg: alg}
		nonce := fetchNonce(t, s)
		if u, err := s.Authenticate(context.Background(), register(t, "sip:a.example", cl.answer("REGISTER", "sip:a.example", nonce, "00000001", strconv.Itoa(i))), "a.example", false); err != nil || u != "alice" {
			t.Errorf("%q: %q, %v", alg, u, err)
		}
	}
	cl := client{user: "alice", realm: "a.example", password: "alice-secret", alg: "SHA-256"}
	nonce := fetchNonce(t, s)
	_, err := s.Authenticate(context.Background(), register(t, "sip:a.example", cl.answer("REGISTER", "sip:a.example", nonce, "00000001", "c")), "a.example", false)
	if se := statusOf(t, err); se.Code != 401 || len(se.Headers) != 2 || !errors.Is(err, ErrUnknownUser) {
		t.Errorf("SHA-256 answer of an MD5-only user: %v, %d challenges", err, len(se.Headers))
	}
}

// BenchmarkImport1M imports 1,000,000 users (one domain, AOR:password
// lines) into a users file holding none, and into a fresh redis-server.
// It runs only with -bench: go test -run '^$' -bench Import1M ./auth
func BenchmarkImport1M(b *testing.B) {
	const n = 1_000_000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "user%07d@a.example:pw-%d\n", i, i)
	}
	input := in.String()
	in = strings.Builder{}
	b.Run("file", func(b *testing.B) {
		dir := b.TempDir()
		var size int64
		for i := 0; i < b.N; i++ {
			path := filepath.Join(dir, "users"+strconv.Itoa(i))
			s, err := OpenFile(path)
			if err != nil {
				b.Fatal(err)
			}
			st := importOnce(b, s, input, n)
			if st.Added != n {
				b.Fatalf("%+v", st)
			}
			fi, _ := os.Stat(path)
			size = fi.Size()
			var m0, m1 runtime.MemStats
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&m0)
			t0 := time.Now()
			again, err := OpenFile(path)
			load := time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			if _, err := again.Lookup(context.Background(), "user0999999", "a.example"); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(load.Milliseconds()), "load-ms")
			b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/n, "loaded-B/user")
			runtime.KeepAlive(again)
			os.Remove(path)
			b.StartTimer()
		}
		b.ReportMetric(float64(size)/n, "file-B/user")
	})
	b.Run("redis", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			r := testenv.StartRedis(b)
			c := goredis.NewClient(&goredis.Options{Addr: r.Addr})
			before := redisUsedMemory(b, c)
			b.StartTimer()
			st := importOnce(b, NewRedisStore(c), input, n)
			b.StopTimer()
			if st.Added != n {
				b.Fatalf("%+v", st)
			}
			b.ReportMetric(float64(redisUsedMemory(b, c)-before)/n, "redis-B/user")
			if _, err := NewRedisStore(c).Lookup(context.Background(), "user0999999", "a.example"); err != nil {
				b.Fatal(err)
			}
			c.Close()
			r.Stop()
			b.StartTimer()
		}
	})
}

// importOnce parses input and imports it into s, reporting users/s.
func importOnce(b *testing.B, s interface {
	Import(context.Context, []Credential) (ImportStats, error)
}, input string, n int) ImportStats {
	t0 := time.Now()
	p, err := ParseUsers(strings.NewReader(input), FormatAuto)
	if err != nil || len(p.Creds) != n {
		b.Fatalf("%v", err)
	}
	parsed := time.Since(t0)
	st, err := s.Import(context.Background(), p.Creds)
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	b.ReportMetric(float64(n)/d.Seconds(), "users/s")
	b.ReportMetric(float64(parsed.Milliseconds()), "parse-ms")
	return st
}

// redisUsedMemory returns used_memory from INFO memory.
func redisUsedMemory(b *testing.B, c *goredis.Client) int64 {
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "used_memory:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}
