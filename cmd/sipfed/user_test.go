package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
