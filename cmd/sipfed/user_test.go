package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/internal/testenv"
)

// userEnv returns an env with stdin, captured output and an empty
// environment.
func userEnv(stdin string) (*env, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	return &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}, &out, &errOut
}

func runUserCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	e, out, errOut := userEnv(stdin)
	code = run(context.Background(), e, append([]string{"user"}, args...))
	return code, out.String(), errOut.String()
}

// TestUserAddDelList runs the commands against a users file, with flags
// after the arguments, and checks that only hashes are stored, mode 0600.
func TestUserAddDelList(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.txt")
	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"alice-secret\n", []string{"add", "alice@A.example", "--users", users, "--password-stdin"}},
		{"bob-secret", []string{"add", "--users", users, "--password-stdin", "bob@a.example"}},
		{"carol-secret\r\n", []string{"add", "carol@b.example", "--password-stdin", "--users=" + users}},
	} {
		if code, _, stderr := runUserCLI(t, c.stdin, c.args...); code != 0 {
			t.Fatalf("%q: exit %d: %s", c.args, code, stderr)
		}
	}
	data, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"alice-secret", "bob-secret", "carol-secret"} {
		if strings.Contains(string(data), pw) {
			t.Fatalf("password %q stored:\n%s", pw, data)
		}
	}
	if st, _ := os.Stat(users); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	fs, err := auth.OpenFile(users)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := fs.Lookup(context.Background(), "carol", "b.example"); err != nil || c != auth.NewCredential("carol", "b.example", "carol-secret") {
		t.Fatalf("carol: %+v, %v (trailing CR not stripped?)", c, err)
	}

	if code, out, stderr := runUserCLI(t, "", "list", "--users", users); code != 0 || out != "alice@a.example\nbob@a.example\ncarol@b.example\n" {
		t.Fatalf("list: exit %d, %q %s", code, out, stderr)
	}
	if code, out, _ := runUserCLI(t, "", "list", "b.example", "--users", users); code != 0 || out != "carol@b.example\n" {
		t.Fatalf("list b.example: exit %d, %q", code, out)
	}
	if code, _, stderr := runUserCLI(t, "", "del", "bob@a.example", "--users", users); code != 0 {
		t.Fatalf("del: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runUserCLI(t, "", "del", "bob@a.example", "--users", users); code != 1 || !strings.Contains(stderr, "unknown user") {
		t.Fatalf("del twice: exit %d: %s", code, stderr)
	}
	if _, out, _ := runUserCLI(t, "", "list", "a.example", "--users", users); out != "alice@a.example\n" {
		t.Fatalf("list after del: %q", out)
	}
}

// TestUserUsage checks exit statuses: 0 for help, 2 for command-line
// mistakes, with nothing written.
func TestUserUsage(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.txt")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "sipfed user add|del|list"},
		{[]string{"add", "--help"}, 0, "--password-stdin"},
		{[]string{"list", "-h"}, 0, "--users"},
		{[]string{}, 2, "missing subcommand"},
		{[]string{"frob"}, 2, "unknown subcommand"},
		{[]string{"add", "--users", users, "--password-stdin"}, 2, "missing the user's AOR"},
		{[]string{"add", "alice", "--users", users, "--password-stdin"}, 2, "invalid address of record"},
		{[]string{"add", "al ice@a.example", "--users", users, "--password-stdin"}, 2, "invalid address of record"},
		{[]string{"add", "a@a.example", "b@a.example", "--users", users}, 2, "several AORs need --password-stdin"},
		{[]string{"add", "alice@a.example", "--users", users}, 2, "stdin is not a terminal: use --password-stdin"},
		{[]string{"add", "alice@a.example", "--users", users, "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"del", "alice@a.example", "--users", "redis"}, 2, "--users redis needs --store"},
		{[]string{"list", "--password-stdin", "--users", users}, 2, "flag provided but not defined"},
	} {
		code, stdout, stderr := runUserCLI(t, "pw\n", c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, stdout, stderr)
		}
	}
	if _, err := os.Stat(users); !os.IsNotExist(err) {
		t.Errorf("a failed command wrote %s", users)
	}
	if code, _, stderr := runUserCLI(t, "\n", "add", "alice@a.example", "--users", users, "--password-stdin"); code != 1 || !strings.Contains(stderr, "no password on stdin") {
		t.Errorf("empty password: exit %d: %s", code, stderr)
	}
}

// TestUserRedisStore runs add, list and del against a real redis-server.
func TestUserRedisStore(t *testing.T) {
	r := testenv.StartRedis(t)
	if code, _, stderr := runUserCLI(t, "alice-secret\n", "add", "alice@a.example", "--store", r.URL(), "--password-stdin"); code != 0 {
		t.Fatalf("add: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runUserCLI(t, "bob-secret\n", "add", "bob@a.example", "--store", r.URL(), "--users", "redis", "--password-stdin"); code != 0 {
		t.Fatalf("add with --users redis: exit %d: %s", code, stderr)
	}
	if code, out, stderr := runUserCLI(t, "", "list", "--store", r.URL()); code != 0 || out != "alice@a.example\nbob@a.example\n" {
		t.Fatalf("list: exit %d, %q %s", code, out, stderr)
	}
	if code, _, stderr := runUserCLI(t, "", "del", "alice@a.example", "--store", r.URL()); code != 0 {
		t.Fatalf("del: exit %d: %s", code, stderr)
	}
	if _, out, _ := runUserCLI(t, "", "list", "a.example", "--store", r.URL()); out != "bob@a.example\n" {
		t.Fatalf("list after del: %q", out)
	}
}

// TestUserMissingUsersFile checks that list and del in a users file that
// does not exist fail (exit 1) naming the file, rather than printing
// nothing, and that add creates it.
func TestUserMissingUsersFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "nosuch.txt")
	want := "sipfed user: users file " + users + " does not exist (create it with 'sipfed user add')\n"
	for _, args := range [][]string{{"list", "--users", users}, {"del", "alice@a.example", "--users", users}} {
		if code, out, stderr := runUserCLI(t, "", args...); code != 1 || out != "" || stderr != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, out, stderr, want)
		}
	}
	t.Chdir(dir)
	if code, _, stderr := runUserCLI(t, "", "list"); code != 1 || !strings.Contains(stderr, "users file users.txt does not exist") {
		t.Errorf("list with the default users.txt missing: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runUserCLI(t, "pw\n", "add", "alice@a.example", "--users", users, "--password-stdin"); code != 0 {
		t.Fatalf("add: exit %d: %s", code, stderr)
	}
	if code, out, stderr := runUserCLI(t, "", "list", "--users", users); code != 0 || out != "alice@a.example\n" {
		t.Errorf("list after add: exit %d, %q %s", code, out, stderr)
	}
}

// TestUserAddNotesNormalisedAOR checks that an AOR the store keeps in
// another form (no "sip:", lower-case domain) is accepted with a note on
// stderr, and one kept as given gets none.
func TestUserAddNotesNormalisedAOR(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.txt")
	for _, c := range []struct{ aor, note string }{
		{"sip:erin@a.example", "sipfed user: storing sip:erin@a.example as erin@a.example\n"},
		{"Frank@A.Example", "sipfed user: storing Frank@A.Example as Frank@a.example\n"},
		{"gina@a.example", ""},
	} {
		if code, _, stderr := runUserCLI(t, "pw\n", "add", c.aor, "--users", users, "--password-stdin"); code != 0 || stderr != c.note {
			t.Errorf("add %s: exit %d, stderr %q, want %q", c.aor, code, stderr, c.note)
		}
	}
	if _, out, _ := runUserCLI(t, "", "list", "--users", users); out != "Frank@a.example\nerin@a.example\ngina@a.example\n" {
		t.Errorf("list: %q", out)
	}
	if code, _, stderr := runUserCLI(t, "", "del", "sip:erin@A.example", "--users", users); code != 0 {
		t.Errorf("del sip:erin@A.example: exit %d: %s", code, stderr)
	}
}

// TestUserImport imports AOR:password lines from stdin over an existing
// user, and checks the summary, the hashes and the file's mode.
func TestUserImport(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.txt")
	if code, _, stderr := runUserCLI(t, "old\n", "add", "alice@a.example", "--users", users, "--password-stdin"); code != 0 {
		t.Fatalf("add: exit %d: %s", code, stderr)
	}
	in := "# from the old PBX\nalice@a.example:alice-secret\r\nbob@a.example:b:o b\nsip:carol@B.example:c1\ncarol@b.example:c2\n"
	code, stdout, stderr := runUserCLI(t, in, "import", "--users", users)
	if code != 0 || stdout != "imported 3 users into "+users+": 2 added, 1 updated; 1 repeated AORs (the last line won)\n" {
		t.Fatalf("import: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if want := "sipfed user: stdin: format lines\nsipfed user: stdin:5: carol@b.example again, replacing line 4 (the last wins)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	fs, err := auth.OpenFile(users)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []auth.Credential{
		auth.NewCredential("alice", "a.example", "alice-secret"),
		auth.NewCredential("bob", "a.example", "b:o b"),
		auth.NewCredential("carol", "b.example", "c2"),
	} {
		if got, err := fs.Lookup(context.Background(), c.User, c.Realm); err != nil || got != c {
			t.Errorf("%s: %+v, %v", c.User, got, err)
		}
	}
	if st, _ := os.Stat(users); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
}

// TestUserImportBadLines checks that a bad line refuses the import unless
// --skip-bad, names its line, and never shows its password.
func TestUserImportBadLines(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	input := filepath.Join(dir, "in.txt")
	writeFile(t, input, "alice@a.example:alice-secret\nbob@a.example:Hunter2\x00\nHunter3:carol@a.example\nal ice@a.example:Hunter4\ndave@a.example:dave-secret\n")
	code, stdout, stderr := runUserCLI(t, "", "import", input, "--users", users)
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
		input + `:2: "bob@a.example": auth: invalid password: control character '\x00'`,
		input + ":3: no user@domain before the first ':'",
		input + `:4: "al ice@a.example": auth: invalid address of record`,
		"sipfed user: " + input + ": 3 bad of 5 lines: nothing imported (fix them, or import the others with --skip-bad)\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "Hunter") || strings.Contains(stderr, "\x00") {
		t.Errorf("a password shown:\n%s", stderr)
	}
	if _, err := os.Stat(users); !os.IsNotExist(err) {
		t.Errorf("a refused import wrote %s", users)
	}
	code, stdout, stderr = runUserCLI(t, "", "import", "--dry-run", "--skip-bad", input, "--users", users)
	if code != 0 || stdout != "2 users to import, nothing written (--dry-run); 3 bad lines skipped\n" {
		t.Errorf("--dry-run: exit %d, %q %s", code, stdout, stderr)
	}
	if _, err := os.Stat(users); !os.IsNotExist(err) {
		t.Errorf("--dry-run wrote %s", users)
	}
	code, stdout, stderr = runUserCLI(t, "", "import", "--skip-bad", input, "--users", users)
	if code != 0 || stdout != "imported 2 users into "+users+": 2 added, 0 updated; 3 bad lines skipped\n" || strings.Count(stderr, "\n") != 4 {
		t.Errorf("--skip-bad: exit %d, %q\n%s", code, stdout, stderr)
	}
	if _, out, _ := runUserCLI(t, "", "list", "--users", users); out != "alice@a.example\ndave@a.example\n" {
		t.Errorf("list: %q", out)
	}
}

// TestUserImportFormats imports Kamailio's subscriber CSV and htdigest
// HA1 lines, and checks that HA1-only users are reported.
func TestUserImportFormats(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	ha1 := md5Hex
	csv := filepath.Join(dir, "subscriber.csv")
	writeFile(t, csv, "id,username,domain,password,ha1,ha1b\n"+
		"1,alice,a.example,alice-secret,"+ha1("alice:a.example:alice-secret")+",x\n"+
		"2,bob,a.example,,"+ha1("bob:a.example:bob-secret")+",x\n")
	code, stdout, stderr := runUserCLI(t, "", "import", csv, "--users", users)
	if code != 0 || stdout != "imported 2 users into "+users+": 2 added, 0 updated; 1 users with an MD5 HA1 only: MD5 digest only\n" || !strings.Contains(stderr, "format csv") {
		t.Fatalf("csv: exit %d, %q\n%s", code, stdout, stderr)
	}
	htdigest := filepath.Join(dir, "digest")
	writeFile(t, htdigest, "carol:b.example:"+ha1("carol:b.example:c")+"\n")
	if code, stdout, stderr := runUserCLI(t, "", "import", "--format", "ha1", htdigest, "--users", users); code != 0 || !strings.Contains(stdout, "1 added") {
		t.Fatalf("ha1: exit %d, %q\n%s", code, stdout, stderr)
	}
	fs, _ := auth.OpenFile(users)
	for _, c := range []auth.Credential{
		auth.NewCredential("alice", "a.example", "alice-secret"),
		{User: "bob", Realm: "a.example", HA1MD5: ha1("bob:a.example:bob-secret")},
		{User: "carol", Realm: "b.example", HA1MD5: ha1("carol:b.example:c")},
	} {
		if got, err := fs.Lookup(context.Background(), c.User, c.Realm); err != nil || got != c {
			t.Errorf("%s: %+v, %v; want %+v", c.User, got, err, c)
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", "--format", "xml", csv, "--users", users}, 2, `--format "xml": want auto, csv, lines, ha1`},
		{[]string{"import", csv, htdigest, "--users", users}, 2, "too many arguments"},
		{[]string{"import", filepath.Join(dir, "nosuch"), "--users", users}, 1, "no such file"},
		{[]string{"import", "--users", "redis", csv}, 2, "--users redis needs --store"},
		{[]string{"import", "--help"}, 0, "username,domain,password,ha1,ha1b"},
	} {
		if code, stdout, stderr := runUserCLI(t, "", c.args...); code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%q: exit %d, want %d with %q\n%s%s", c.args, code, c.code, c.want, stdout, stderr)
		}
	}
	if code, _, stderr := runUserCLI(t, "what is this\n", "import", "--users", users); code != 1 || !strings.Contains(stderr, "cannot detect the import format from line 1") {
		t.Errorf("undetectable: exit %d: %s", code, stderr)
	}
}

func md5Hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestUserImportRedis imports into a real redis-server, then lists.
func TestUserImportRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	var in strings.Builder
	for i := range 2345 {
		fmt.Fprintf(&in, "u%04d@a.example:pw%d\n", i, i)
	}
	code, stdout, stderr := runUserCLI(t, in.String(), "import", "-", "--store", r.URL())
	if code != 0 || stdout != "imported 2345 users into Redis: 2345 added, 0 updated\n" {
		t.Fatalf("import: exit %d, %q\n%s", code, stdout, stderr)
	}
	code, out, stderr := runUserCLI(t, "", "list", "--store", r.URL())
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); code != 0 || len(lines) != 2345 || lines[0] != "u0000@a.example" {
		t.Fatalf("list: exit %d, %d lines\n%s", code, len(lines), stderr)
	}
	if code, stdout, _ := runUserCLI(t, "u0001@a.example:new\n", "import", "--store", r.URL()); code != 0 || stdout != "imported 1 users into Redis: 0 added, 1 updated\n" {
		t.Errorf("update: exit %d, %q", code, stdout)
	}
}

// TestUserAddMany adds thousands of AORs in one command: one rewrite of
// the file, not one per AOR.
func TestUserAddMany(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.txt")
	const n = 5000
	args := []string{"add", "--users", users, "--password-stdin"}
	var pw strings.Builder
	for i := range n {
		args = append(args, fmt.Sprintf("u%05d@a.example", i))
		fmt.Fprintf(&pw, "pw%d\n", i)
	}
	start := time.Now()
	if code, _, stderr := runUserCLI(t, pw.String(), args...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Logf("%d AORs added in %v", n, time.Since(start))
	fs, _ := auth.OpenFile(users)
	if c, err := fs.Lookup(context.Background(), "u04321", "a.example"); err != nil || c != auth.NewCredential("u04321", "a.example", "pw4321") {
		t.Errorf("u04321: %+v, %v", c, err)
	}
	if _, out, _ := runUserCLI(t, "", "list", "--users", users); strings.Count(out, "\n") != n {
		t.Errorf("list: %d lines", strings.Count(out, "\n"))
	}
	// A missing password writes none of them.
	if code, _, stderr := runUserCLI(t, "a\n", "add", "--users", users, "--password-stdin", "x@a.example", "y@a.example"); code != 1 || !strings.Contains(stderr, "no password on stdin for y@a.example") {
		t.Errorf("missing password: exit %d: %s", code, stderr)
	}
	if _, err := fs.Lookup(context.Background(), "x", "a.example"); err == nil {
		t.Error("x@a.example added although y@a.example had no password")
	}
}

// TestUserAlias adds, replaces, lists and deletes aliases in a users
// file, and checks the conflicts with users both ways.
func TestUserAlias(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users.txt")
	for _, aor := range []string{"alice@a.example", "bob@a.example", "carol@b.example"} {
		if code, _, stderr := runUserCLI(t, "pw\n", "add", aor, "--users", users, "--password-stdin"); code != 0 {
			t.Fatalf("add %s: exit %d: %s", aor, code, stderr)
		}
	}
	for _, c := range []struct {
		args         []string
		code         int
		stdout, note string
	}{
		{[]string{"alias", "add", "1001@a.example", "alice@a.example", "--users", users}, 0, "", ""},
		{[]string{"alias", "add", "--users", users, "sip:+81312345678@A.example", "alice@a.example"}, 0, "",
			"sipfed user: storing sip:+81312345678@A.example as +81312345678@a.example\n"},
		{[]string{"alias", "add", "200@b.example", "carol@b.example", "--users=" + users}, 0, "", ""},
		{[]string{"alias", "add", "1001@a.example", "alice@a.example", "--users", users}, 0, "", ""},
		{[]string{"alias", "list", "--users", users}, 0, "+81312345678@a.example alice@a.example\n1001@a.example alice@a.example\n200@b.example carol@b.example\n", ""},
		{[]string{"alias", "list", "B.example", "--users", users}, 0, "200@b.example carol@b.example\n", ""},
		{[]string{"alias", "list", "c.example", "--users", users}, 0, "", ""},
		{[]string{"alias", "add", "1001@a.example", "bob@a.example", "--users", users}, 0, "",
			"sipfed user: 1001@a.example stood for alice@a.example; it now stands for bob@a.example\n"},
		{[]string{"alias", "add", "bob@a.example", "alice@a.example", "--users", users}, 1, "",
			"sipfed user: auth: alias conflict: bob@a.example is a user (delete the user first)\n"},
		{[]string{"alias", "add", "2000@a.example", "nobody@a.example", "--users", users}, 1, "",
			"sipfed user: auth: alias conflict: nobody@a.example is not a user\n"},
		{[]string{"alias", "add", "2000@a.example", "1001@a.example", "--users", users}, 1, "",
			"sipfed user: auth: alias conflict: 1001@a.example is not a user\n"},
		{[]string{"add", "1001@a.example", "--users", users, "--password-stdin"}, 1, "",
			"sipfed user: auth: alias conflict: 1001@a.example is an alias of bob@a.example (delete the alias first)\n"},
		{[]string{"alias", "del", "1001@a.example", "--users", users}, 0, "", ""},
		{[]string{"alias", "del", "1001@a.example", "--users", users}, 1, "",
			"sipfed user: 1001@a.example is not an alias: auth: unknown user\n"},
		{[]string{"del", "alice@a.example", "--users", users}, 0, "", ""},
		{[]string{"alias", "list", "--users", users}, 0, "200@b.example carol@b.example\n", ""},
	} {
		code, stdout, stderr := runUserCLI(t, "pw\n", c.args...)
		if code != c.code || stdout != c.stdout || stderr != c.note {
			t.Errorf("%q: exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q", c.args, code, stdout, stderr, c.code, c.stdout, c.note)
		}
	}
	code, stdout, stderr := runUserCLI(t, "200@b.example:pw\ndave@b.example:pw\n", "import", "--users", users)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "200@b.example is an alias of carol@b.example") {
		t.Errorf("import of an alias: exit %d, %q %s", code, stdout, stderr)
	}
	if _, out, _ := runUserCLI(t, "", "list", "--users", users); out != "bob@a.example\ncarol@b.example\n" {
		t.Errorf("list: %q", out)
	}
	data, _ := os.ReadFile(users)
	if !strings.HasSuffix(string(data), "\n\n200@b.example alias=carol@b.example\n") {
		t.Errorf("users file:\n%s", data)
	}
}

// TestUserAliasUsage checks exit statuses: 0 for help, 2 for command-line
// mistakes (before the store is opened), 1 for a missing users file.
func TestUserAliasUsage(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "sipfed user alias add|del|list"},
		{[]string{"alias", "--help"}, 0, "Usage: sipfed user alias add|del|list"},
		{[]string{"alias", "add", "--help"}, 0, "--store URL"},
		{[]string{"alias"}, 2, "missing alias subcommand"},
		{[]string{"alias", "frob"}, 2, `unknown alias subcommand "frob"`},
		{[]string{"frob"}, 2, "want add, del, list, import or alias"},
		{[]string{"alias", "add", "1001@a.example", "--users", users}, 2, "want ALIAS AOR, e.g. 1001@a.example alice@a.example; got 1 arguments"},
		{[]string{"alias", "add", "1001@a.example", "alice@a.example", "x@a.example", "--users", users}, 2, "want ALIAS AOR"},
		{[]string{"alias", "add", "1001", "alice@a.example", "--users", users}, 2, "invalid address of record"},
		{[]string{"alias", "add", "1001@a.example", "alice@B.example", "--users", users}, 2,
			"sipfed user: 1001@a.example and alice@b.example are in different domains: an alias is another name within its user's domain (see --help)"},
		{[]string{"alias", "del", "--users", users}, 2, "missing the alias"},
		{[]string{"alias", "del", "10 01@a.example", "--users", users}, 2, "invalid address of record"},
		{[]string{"alias", "list", "a.example", "b.example", "--users", users}, 2, "too many arguments"},
		{[]string{"alias", "list", "--users", "redis"}, 2, "--users redis needs --store"},
		{[]string{"alias", "add", "1001@a.example", "alice@a.example", "--password-stdin", "--users", users}, 2, "flag provided but not defined: --password-stdin"},
		{[]string{"alias", "list", "--users", users}, 1, "sipfed user: users file " + users + " does not exist (create it with 'sipfed user add')"},
		{[]string{"alias", "add", "1001@a.example", "alice@a.example", "--users", users}, 1, "does not exist"},
	} {
		code, stdout, stderr := runUserCLI(t, "", c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", c.args, code, c.code, c.want, stdout, stderr)
		}
		if c.code != 0 && strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: not one line on stderr: %q", c.args, stderr)
		}
	}
	if _, err := os.Stat(users); !os.IsNotExist(err) {
		t.Errorf("a failed command wrote %s", users)
	}
}

// TestUserAliasRedis runs alias add, list and del against a real
// redis-server, the store given by flag, SIPFED_STORE and --config.
func TestUserAliasRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	for _, aor := range []string{"alice@a.example", "bob@a.example"} {
		if code, _, stderr := runUserCLI(t, "pw\n", "add", aor, "--store", r.URL(), "--password-stdin"); code != 0 {
			t.Fatalf("add %s: exit %d: %s", aor, code, stderr)
		}
	}
	if code, _, stderr := runUserCLI(t, "", "alias", "add", "1001@a.example", "alice@a.example", "--store", r.URL()); code != 0 {
		t.Fatalf("alias add: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, map[string]string{"SIPFED_STORE": r.URL(), "SIPFED_USERS": "redis"}, "user", "alias", "add", "+81312345678@a.example", "bob@a.example"); code != 0 {
		t.Fatalf("alias add with SIPFED_STORE: exit %d: %s", code, stderr)
	}
	config := filepath.Join(t.TempDir(), "sipfed.yaml")
	writeFile(t, config, "store: "+r.URL()+"\n")
	if code, out, stderr := runUserCLI(t, "", "alias", "list", "a.example", "--config", config); code != 0 || out != "+81312345678@a.example bob@a.example\n1001@a.example alice@a.example\n" {
		t.Fatalf("alias list --config: exit %d, %q %s", code, out, stderr)
	}
	if code, _, stderr := runUserCLI(t, "", "alias", "add", "bob@a.example", "alice@a.example", "--store", r.URL()); code != 1 || stderr != "sipfed user: auth: alias conflict: bob@a.example is a user (delete the user first)\n" {
		t.Errorf("alias add of a user: exit %d: %q", code, stderr)
	}
	if code, _, stderr := runUserCLI(t, "pw\n", "add", "1001@a.example", "--store", r.URL(), "--password-stdin"); code != 1 || !strings.Contains(stderr, "1001@a.example is an alias of alice@a.example") {
		t.Errorf("add of an alias: exit %d: %q", code, stderr)
	}
	if code, _, stderr := runUserCLI(t, "", "alias", "del", "1001@a.example", "--store", r.URL()); code != 0 {
		t.Errorf("alias del: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runUserCLI(t, "", "del", "bob@a.example", "--store", r.URL()); code != 0 {
		t.Errorf("del bob: exit %d: %s", code, stderr)
	}
	if code, out, stderr := runUserCLI(t, "", "alias", "list", "--store", r.URL()); code != 0 || out != "" {
		t.Errorf("alias list after del: exit %d, %q %s", code, out, stderr)
	}
}
