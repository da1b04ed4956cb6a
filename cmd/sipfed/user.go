package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/sipfed/sipfed/auth"
	"github.com/sipfed/sipfed/internal/redisurl"
)

// userAdmin is what sipfed user needs of a credential store.
type userAdmin interface {
	Add(ctx context.Context, aor, password string) error
	Del(ctx context.Context, aor string) error
	List(ctx context.Context, domain string) ([]string, error)
}

var (
	_ userAdmin = (*auth.FileStore)(nil)
	_ userAdmin = (*auth.RedisStore)(nil)
)

const userUsage = `Usage: sipfed user add|del|list [--users FILE | --store redis://…] [--password-stdin] [AOR... | DOMAIN]

  sipfed user add alice@a.example          set alice's password (prompted, or --password-stdin)
  sipfed user add --password-stdin a@x b@x set several, one password per stdin line, in order
  sipfed user del alice@a.example          remove alice (or several)
  sipfed user list [a.example]             print the users, one AOR per line, sorted

Only the HA1 hashes (MD5 and SHA-256) are stored, never the password. The
users file is written with mode 0600; a running 'sipfed serve' picks up
changes within a second. Users live in the file given by --users (default
users.txt), or in Redis with --store redis://… (and --users redis or no
--users), as 'sipfed serve' reads them.`

// runUser implements sipfed user add|del|list.
func runUser(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: add, del or list (see --help)")
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprintln(e.stdout, userUsage)
		return errHelp
	case "add", "del", "list":
	default:
		return usagef("unknown subcommand %q: want add, del or list", sub)
	}
	fs := newFlagSet(e, "user "+sub, userUsage)
	fs.withConfig()
	users := fs.String("users", "", "users `file` (default users.txt), or 'redis' to use --store")
	store := fs.String("store", "", "Redis `URL` holding the users (redis://, rediss://, redis+sentinel://, redis+cluster://)")
	var passwordStdin *bool
	if sub == "add" {
		passwordStdin = fs.Bool("password-stdin", false, "read the password from stdin, one line per AOR")
	}
	pos, err := fs.parse(e, args[1:])
	if err != nil {
		return err
	}

	// aors are the AORs given, as the stores keep them (auth.ParseAOR
	// drops "sip:" and lowers the domain's case).
	var aors []string
	if sub == "list" {
		if len(pos) > 1 {
			return usagef("too many arguments: %q", pos)
		}
	} else {
		if len(pos) == 0 {
			return usagef("missing the user's AOR, e.g. alice@a.example")
		}
		for _, a := range pos {
			user, domain, err := auth.ParseAOR(a)
			if err != nil {
				return usagef("%v", err)
			}
			aors = append(aors, user+"@"+domain)
		}
		if sub == "add" && len(pos) > 1 && !*passwordStdin {
			return usagef("several AORs need --password-stdin (one password per line, in order)")
		}
	}

	admin, closeStore, err := openUserAdmin(*users, *store, sub == "add")
	if err != nil {
		return err
	}
	defer closeStore()

	switch sub {
	case "add":
		in := bufio.NewReader(e.stdin)
		for i, aor := range aors {
			if aor != pos[i] {
				fmt.Fprintf(e.stderr, "sipfed user: storing %s as %s\n", pos[i], aor)
			}
			password, err := readPassword(e, in, aor, *passwordStdin)
			if err != nil {
				return err
			}
			if err := admin.Add(ctx, aor, password); err != nil {
				return err
			}
		}
		return nil
	case "del":
		for _, aor := range aors {
			if err := admin.Del(ctx, aor); err != nil {
				return err
			}
		}
		return nil
	default:
		domain := ""
		if len(pos) == 1 {
			domain = pos[0]
		}
		list, err := admin.List(ctx, domain)
		if err != nil {
			return err
		}
		for _, a := range list {
			fmt.Fprintln(e.stdout, a)
		}
		return nil
	}
}

// openUserAdmin picks the store as sipfed serve does: the --users file,
// or Redis when --users is "redis", or unset with a Redis --store. The
// users file must exist unless create is set: listing or deleting in a
// file that is not there is a mistake (a wrong --users, or the wrong
// directory), not an empty list.
func openUserAdmin(users, store string, create bool) (userAdmin, func(), error) {
	redisStore := store != "" && store != "memory"
	switch {
	case users == "redis" && !redisStore:
		return nil, nil, usagef("--users redis needs --store redis://…")
	case users == "redis" || users == "" && redisStore:
		rdb, err := redisurl.Open(store)
		if err != nil {
			return nil, nil, usagef("--store: %v", err)
		}
		return auth.NewRedisStore(rdb), func() { rdb.Close() }, nil
	case users == "":
		users = "users.txt"
	}
	if !create {
		if _, err := os.Stat(users); errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("users file %s does not exist (create it with 'sipfed user add')", users)
		}
	}
	fstore, err := auth.OpenFile(users)
	if err != nil {
		return nil, nil, err
	}
	return fstore, func() {}, nil
}

// readPassword reads the password from the first line of stdin, or prompts
// for it twice without echo when stdin is a terminal.
func readPassword(e *env, in *bufio.Reader, aor string, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			return "", fmt.Errorf("no password on stdin for %s", aor)
		}
		return line, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("stdin is not a terminal: use --password-stdin")
	}
	fmt.Fprintf(e.stderr, "Password for %s: ", aor)
	p1, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	fmt.Fprint(e.stderr, "Retype it: ")
	p2, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if string(p1) != string(p2) {
		return "", errors.New("the passwords differ")
	}
	return string(p1), nil
}
