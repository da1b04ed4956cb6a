package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
	Import(ctx context.Context, creds []auth.Credential) (auth.ImportStats, error)
	auth.AliasResolver
	AddAlias(ctx context.Context, alias, aor string) error
	DelAlias(ctx context.Context, alias string) error
	ListAliases(ctx context.Context, domain string) ([]auth.Alias, error)
}

var (
	_ userAdmin = (*auth.FileStore)(nil)
	_ userAdmin = (*auth.RedisStore)(nil)
)

const userUsage = `Usage: sipfed user add|del|list|import|alias [--users FILE | --store redis://…] [--password-stdin] [AOR... | DOMAIN | FILE]

  sipfed user add alice@a.example          set alice's password (prompted, or --password-stdin)
  sipfed user add --password-stdin a@x b@x set several, one password per stdin line, in order
  sipfed user del alice@a.example          remove alice (or several), and their aliases
  sipfed user list [a.example]             print the users, one AOR per line, sorted
  sipfed user import [--format F] [--skip-bad] [--dry-run] [FILE|-]
                                           add or update many users from FILE (or stdin)
  sipfed user alias add|del|list …         other names of users (1001@a.example for
                                           alice@a.example); see 'sipfed user alias --help'

Only the HA1 hashes (MD5 and SHA-256) are stored, never the password. The
users file is written with mode 0600; a running 'sipfed serve' picks up
changes within a second. Users live in the file given by --users (default
users.txt), or in Redis with --store redis://… (and --users redis or no
--users), as 'sipfed serve' reads them.` + "\n\n" + importUsage

const importUsage = `Import (sipfed user import): the whole input is read and checked
before anything is written. By default one bad line refuses the import
(nothing is written, exit status 1); --skip-bad imports the good lines.
Each bad line is reported with its number, never with its password or
HA1. When an AOR appears twice the last line wins; existing users are
updated, others are kept. The users file is rewritten once; Redis gets
pipelined writes. --format (default auto, which looks at the first line
that is not blank or a #comment):

  lines  AOR:password, one per line:
           alice@a.example:alice-secret
         The password runs from the first ':' after the domain to the end
         of the line (a CR before the LF is dropped) and may hold ':' and
         spaces. "sip:" before the AOR is allowed; an IPv6 domain is
         bracketed (bob@[2001:db8::1]:pw).
  csv    a header row, then one user per row; commas, semicolons or tabs
         (as the header has them), "quoted" fields as RFC 4180. Columns:
           aor,password          aor,ha1
           username,domain,password,ha1,ha1b   (Kamailio's subscriber table;
                                                other columns are ignored)
         A row's ha1 is used when present (Kamailio authenticates with it by
         default); if the row's password gives the same ha1 the password is
         used instead, so the user gets SHA-256 too. Otherwise the password.
  ha1    user:realm:HA1 (Apache htdigest, Asterisk md5_cred), or
         AOR:HA1 (only with --format ha1):
           alice:a.example:2b07f5ef5030f61c44d8254b6bb8d087
         HA1 = MD5("user:realm:password") in hex; the realm must be the
         domain (sipfed challenges with realm = domain).

Lines starting with '#' and blank lines are skipped in every format.
Passwords are stored as 'add' stores them (MD5 and SHA-256 HA1). Users
imported from an MD5 HA1 (ha1 format, or a CSV ha1 without a matching
password) have no SHA-256 hash: they can only use MD5 digest. The server
still offers SHA-256 beside MD5 (--digest-algorithms), and a phone that
answers the SHA-256 challenge for such a user is refused as for a wrong
password (a new 401, counted by the failure guard). Give those users a
password with 'sipfed user add' (or import one) to offer them SHA-256, or
serve them with --digest-algorithms MD5.`

const aliasUsage = `Usage: sipfed user alias add|del|list [--users FILE | --store redis://…] [ALIAS AOR | ALIAS... | DOMAIN]

  sipfed user alias add 1001@a.example alice@a.example
                                    make 1001 another name of alice: calls to
                                    1001@a.example reach alice's devices
  sipfed user alias del 1001@a.example
                                    remove the alias (or several)
  sipfed user alias list [a.example]
                                    print the aliases, "ALIAS AOR" per line, sorted

An alias is a name within its user's domain: a number ("1001",
"+81312345678") or a name ("sales"). It has no password: phones register
and authenticate as the user. A name is a user or an alias, never both:
'alias add' refuses an alias that is a user or a user that does not
exist, and 'user add' and 'user import' refuse a user that is an alias.
'alias add' of an alias that stands for another user points it at the
new one. 'user del' removes the user's aliases too. The store is chosen
as for 'sipfed user add' (--users, --store); a running 'sipfed serve'
picks up changes to the users file within a second.`

// runUser implements sipfed user add|del|list|import|alias.
func runUser(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: add, del, list, import or alias (see --help)")
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprintln(e.stdout, userUsage)
		return errHelp
	case "alias":
		return runUserAlias(ctx, e, args[1:])
	case "add", "del", "list", "import":
	default:
		return usagef("unknown subcommand %q: want add, del, list, import or alias", sub)
	}
	fs := newFlagSet(e, "user "+sub, userUsage)
	fs.withConfig()
	users := fs.String("users", "", "users `file` (default users.txt), or 'redis' to use --store")
	store := fs.String("store", "", "Redis `URL` holding the users (redis://, rediss://, redis+sentinel://, redis+cluster://)")
	var passwordStdin, skipBad, dryRun *bool
	var format *string
	switch sub {
	case "add":
		passwordStdin = fs.Bool("password-stdin", false, "read the password from stdin, one line per AOR")
	case "import":
		format = fs.String("format", auth.FormatAuto, "input `format`: auto, csv, lines (AOR:password) or ha1 (user:realm:HA1)")
		skipBad = fs.Bool("skip-bad", false, "import the good lines when some are bad (default: import nothing)")
		dryRun = fs.Bool("dry-run", false, "read and check the input, report, write nothing")
	}
	pos, err := fs.parse(e, args[1:])
	if err != nil {
		return err
	}
	if sub == "import" {
		return runUserImport(ctx, e, pos, *users, *store, *format, *skipBad, *dryRun)
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

	admin, _, closeStore, err := openUserAdmin(*users, *store, sub == "add")
	if err != nil {
		return err
	}
	defer closeStore()

	switch sub {
	case "add":
		// Every password first, then one write for all: the users file
		// is rewritten once, however many AORs.
		in := bufio.NewReader(e.stdin)
		creds := make([]auth.Credential, 0, len(aors))
		for i, aor := range aors {
			if aor != pos[i] {
				fmt.Fprintf(e.stderr, "sipfed user: storing %s as %s\n", pos[i], aor)
			}
			password, err := readPassword(e, in, aor, *passwordStdin)
			if err != nil {
				return err
			}
			c, err := auth.MakeCredential(aor, password)
			if err != nil {
				return fmt.Errorf("%s: %w", aor, err)
			}
			creds = append(creds, c)
		}
		_, err := admin.Import(ctx, creds)
		return err
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

// runUserAlias implements sipfed user alias add|del|list.
func runUserAlias(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing alias subcommand: add, del or list (see 'sipfed user alias --help')")
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprintln(e.stdout, aliasUsage)
		return errHelp
	case "add", "del", "list":
	default:
		return usagef("unknown alias subcommand %q: want add, del or list", sub)
	}
	fs := newFlagSet(e, "user alias "+sub, aliasUsage)
	fs.withConfig()
	users := fs.String("users", "", "users `file` (default users.txt), or 'redis' to use --store")
	store := fs.String("store", "", "Redis `URL` holding the users (redis://, rediss://, redis+sentinel://, redis+cluster://)")
	pos, err := fs.parse(e, args[1:])
	if err != nil {
		return err
	}
	// The AORs given, as the stores keep them.
	var aors []string
	switch sub {
	case "add":
		if len(pos) != 2 {
			return usagef("want ALIAS AOR, e.g. 1001@a.example alice@a.example; got %d arguments", len(pos))
		}
	case "del":
		if len(pos) == 0 {
			return usagef("missing the alias, e.g. 1001@a.example")
		}
	case "list":
		if len(pos) > 1 {
			return usagef("too many arguments: %q", pos)
		}
	}
	if sub != "list" {
		for _, a := range pos {
			user, domain, err := auth.ParseAOR(a)
			if err != nil {
				return usagef("%v", err)
			}
			aors = append(aors, user+"@"+domain)
		}
	}
	if sub == "add" {
		_, aliasDomain, _ := strings.Cut(aors[0], "@")
		if _, domain, _ := strings.Cut(aors[1], "@"); domain != aliasDomain {
			return usagef("%s and %s are in different domains: an alias is another name within its user's domain", aors[0], aors[1])
		}
	}

	admin, _, closeStore, err := openUserAdmin(*users, *store, false)
	if err != nil {
		return err
	}
	defer closeStore()

	switch sub {
	case "add":
		for i, aor := range aors {
			if aor != pos[i] {
				fmt.Fprintf(e.stderr, "sipfed user: storing %s as %s\n", pos[i], aor)
			}
		}
		alias, aor := aors[0], aors[1]
		user, domain, _ := strings.Cut(alias, "@")
		old, err := admin.Alias(ctx, user, domain)
		if err != nil && !errors.Is(err, auth.ErrUnknownUser) {
			return err
		}
		if err := admin.AddAlias(ctx, alias, aor); err != nil {
			return err
		}
		if old != "" && old+"@"+domain != aor {
			fmt.Fprintf(e.stderr, "sipfed user: %s stood for %s@%s; it now stands for %s\n", alias, old, domain, aor)
		}
		return nil
	case "del":
		for _, alias := range aors {
			if err := admin.DelAlias(ctx, alias); err != nil {
				return err
			}
		}
		return nil
	default:
		domain := ""
		if len(pos) == 1 {
			domain = pos[0]
		}
		list, err := admin.ListAliases(ctx, domain)
		if err != nil {
			return err
		}
		for _, a := range list {
			fmt.Fprintln(e.stdout, a.Alias, a.AOR)
		}
		return nil
	}
}

// maxShown bounds the bad lines and duplicates import prints.
const maxShown = 20

// runUserImport implements sipfed user import.
func runUserImport(ctx context.Context, e *env, pos []string, users, store, format string, skipBad, dryRun bool) error {
	if !slices.Contains(auth.ImportFormats, format) {
		return usagef("--format %q: want %s", format, strings.Join(auth.ImportFormats, ", "))
	}
	if len(pos) > 1 {
		return usagef("too many arguments: %q (one FILE, or - for stdin)", pos)
	}
	name := "-"
	if len(pos) == 1 {
		name = pos[0]
	}
	// Check the store's flags before reading a million lines.
	if users == "redis" && (store == "" || store == "memory") {
		return usagef("--users redis needs --store redis://…")
	}
	in := e.stdin
	if name == "-" {
		if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return usagef("stdin is a terminal: give the FILE to import, or pipe it in")
		}
	} else {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	shown := name
	if name == "-" {
		shown = "stdin"
	}
	p, err := auth.ParseUsers(in, format)
	if err != nil {
		return fmt.Errorf("%s: %w", shown, err)
	}
	if format == auth.FormatAuto && p.Records > 0 {
		fmt.Fprintf(e.stderr, "sipfed user: %s: format %s\n", shown, p.Format)
	}
	for i, b := range p.Bad {
		if i == maxShown {
			break
		}
		if b.AOR != "" {
			fmt.Fprintf(e.stderr, "sipfed user: %s:%d: %s: %v\n", shown, b.Line, b.AOR, b.Err)
		} else {
			fmt.Fprintf(e.stderr, "sipfed user: %s:%d: %v\n", shown, b.Line, b.Err)
		}
	}
	if p.BadCount > maxShown {
		fmt.Fprintf(e.stderr, "sipfed user: %s: … and %d more bad lines\n", shown, p.BadCount-maxShown)
	}
	for i, d := range p.Duplicates {
		if i == maxShown {
			break
		}
		fmt.Fprintf(e.stderr, "sipfed user: %s:%d: %s again, replacing line %d (the last wins)\n", shown, d.Line, d.AOR, d.Replaced)
	}
	if p.DupCount > maxShown {
		fmt.Fprintf(e.stderr, "sipfed user: %s: … and %d more repeated AORs\n", shown, p.DupCount-maxShown)
	}
	if p.BadCount > 0 && !skipBad {
		return fmt.Errorf("%s: %d bad of %d lines: nothing imported (fix them, or import the others with --skip-bad)", shown, p.BadCount, p.Records)
	}
	if len(p.Creds) == 0 {
		return fmt.Errorf("%s: no users to import", shown)
	}
	var notes []string
	if p.BadCount > 0 {
		notes = append(notes, fmt.Sprintf("%d bad lines skipped", p.BadCount))
	}
	if p.DupCount > 0 {
		notes = append(notes, fmt.Sprintf("%d repeated AORs (the last line won)", p.DupCount))
	}
	if p.HA1Mismatch > 0 {
		notes = append(notes, fmt.Sprintf("%d rows whose password did not give their ha1 (ha1 used)", p.HA1Mismatch))
	}
	if p.MD5Only > 0 {
		notes = append(notes, fmt.Sprintf("%d users with an MD5 HA1 only: MD5 digest only", p.MD5Only))
	}
	tail := ""
	if len(notes) > 0 {
		tail = "; " + strings.Join(notes, "; ")
	}
	if dryRun {
		fmt.Fprintf(e.stdout, "%d users to import, nothing written (--dry-run)%s\n", len(p.Creds), tail)
		return nil
	}
	admin, where, closeStore, err := openUserAdmin(users, store, true)
	if err != nil {
		return err
	}
	defer closeStore()
	st, err := admin.Import(ctx, p.Creds)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "imported %d users into %s: %d added, %d updated%s\n", len(p.Creds), where, st.Added, st.Updated, tail)
	return nil
}

// openUserAdmin picks the store as sipfed serve does: the --users file,
// or Redis when --users is "redis", or unset with a Redis --store. The
// users file must exist unless create is set: listing or deleting in a
// file that is not there is a mistake (a wrong --users, or the wrong
// directory), not an empty list.
// It also returns the store's name for messages: the file, or "Redis"
// (the URL may hold a password).
func openUserAdmin(users, store string, create bool) (userAdmin, string, func(), error) {
	redisStore := store != "" && store != "memory"
	switch {
	case users == "redis" && !redisStore:
		return nil, "", nil, usagef("--users redis needs --store redis://…")
	case users == "redis" || users == "" && redisStore:
		rdb, err := redisurl.Open(store)
		if err != nil {
			return nil, "", nil, usagef("--store: %v", err)
		}
		return auth.NewRedisStore(rdb), "Redis", func() { rdb.Close() }, nil
	case users == "":
		users = "users.txt"
	}
	if !create {
		if _, err := os.Stat(users); errors.Is(err, os.ErrNotExist) {
			return nil, "", nil, fmt.Errorf("users file %s does not exist (create it with 'sipfed user add')", users)
		}
	}
	fstore, err := auth.OpenFile(users)
	if err != nil {
		return nil, "", nil, err
	}
	return fstore, users, func() {}, nil
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
