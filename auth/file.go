package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fileHeader opens every users file FileStore writes.
const fileHeader = `# sipfed users file, written by "sipfed user add|del|import|alias"; edit with care.
# One user per line: AOR md5=HA1 sha-256=HA1, where HA1 is
# H(user ":" domain ":" password) in lower-case hex (RFC 7616 §3.4.2).
# An alias line, ALIAS alias=AOR (1001@a.example alias=alice@a.example),
# makes ALIAS another name of the user AOR of its domain; it has no hashes.
# Lines starting with '#' and blank lines are ignored; comments are not kept.
`

// FileStore keeps users in a text file, one per line, and their aliases
// (see AliasResolver), one per line too:
//
//	alice@a.example md5=<32 hex digits> sha-256=<64 hex digits>
//	1001@a.example alias=alice@a.example
//
// Lines starting with '#' and blank lines are ignored, as are fields
// other than md5=, sha-256= and alias=. An alias line has no hashes; its
// AOR is no user, and its alias= is a user of the same domain. Lookup and
// Alias re-read the file when its size, modification time or inode
// changes, checking at most once a second, so users added by "sipfed
// user add" count on a running server. A file that no longer parses is
// ignored (the last good contents stay in effect) until it changes again.
// A missing file is an empty store. Add, Del, Import (many users at once),
// AddAlias and DelAlias rewrite the file atomically (temporary file, then
// rename) with mode 0600, the users sorted, then the aliases sorted; two
// concurrent writers race, and the last one wins. The file is read whole
// into one string that the users' hashes point into: a million users take
// about 250 bytes each and half a second to load.
type FileStore struct {
	path    string
	now     func() time.Time
	data    atomic.Pointer[fileData]
	checked atomic.Int64 // Unix nanoseconds of the last stat
	mu      sync.Mutex   // serialises reloads and writes
	stat    fs.FileInfo  // of the contents in data; nil for a missing file
	warn    atomic.Pointer[func(string)]
}

// OnWarning gives f what the store has to say about the file it reads: a
// change that did not load (the last good contents stay in effect) and
// alias lines left out. The current contents' are said at once.
func (s *FileStore) OnWarning(f func(msg string)) {
	s.warn.Store(&f)
	s.sayDropped(s.data.Load())
}

func (s *FileStore) warnf(format string, args ...any) {
	if f := s.warn.Load(); f != nil {
		(*f)(fmt.Sprintf(format, args...))
	}
}

// sayDropped warns of the alias lines d left out, the first ten.
func (s *FileStore) sayDropped(d *fileData) {
	for i, msg := range d.dropped {
		if i == 10 {
			s.warnf("users file %s: %d more alias lines left out", s.path, len(d.dropped)-i)
			break
		}
		s.warnf("users file %s: %s", s.path, msg)
	}
}

// fileData is what one reading of the file holds. The strings point into
// the file's contents, read as one string: no allocation per line.
type fileData struct {
	users   fileUsers
	aliases fileAliases
	// dropped says which alias lines were left out: their user is gone,
	// or their name is a user's (users win; see parseUsersFile).
	dropped []string
}

// fileUsers maps domain, then user, to the hashes.
type fileUsers map[string]map[string]fileHA1

// fileAliases maps domain, then alias, to the user the alias stands for
// (user parts: "1001" → "alice").
type fileAliases map[string]map[string]string

// fileHA1 holds a user's hashes; either may be "".
type fileHA1 struct{ md5, sha256 string }

var _ CredentialStore = (*FileStore)(nil)

// OpenFile opens the users file at path. A missing file is an empty store
// (Add creates it); one that does not parse is an error.
func OpenFile(path string) (*FileStore, error) {
	s := &FileStore{path: path, now: time.Now}
	d, st, err := s.read()
	if err != nil {
		return nil, err
	}
	s.data.Store(d)
	s.stat = st
	s.checked.Store(s.now().UnixNano())
	return s, nil
}

// Lookup returns the credential of user@realm, or ErrUnknownUser.
func (s *FileStore) Lookup(ctx context.Context, user, realm string) (Credential, error) {
	s.reloadIfChanged()
	if h, ok := s.data.Load().users[realm][user]; ok {
		return Credential{User: user, Realm: realm, HA1MD5: h.md5, HA1SHA256: h.sha256}, nil
	}
	return Credential{}, ErrUnknownUser
}

// reloadIfChanged re-reads the file if a second has passed since the last
// check and the file changed since.
func (s *FileStore) reloadIfChanged() {
	now := s.now().UnixNano()
	last := s.checked.Load()
	if now-last < int64(time.Second) || !s.checked.CompareAndSwap(last, now) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) || sameFile(st, s.stat) {
		return
	}
	d, rst, rerr := s.read()
	if rerr != nil {
		s.warnf("%v: not reloaded, the last good contents stay in effect", rerr)
		s.stat = st // said once per change
		return
	}
	s.data.Store(d)
	s.stat = rst
	s.sayDropped(d)
}

func sameFile(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// read parses the file; a missing file is empty. The file is read whole
// into one string, which the users' strings then point into.
func (s *FileStore) read() (*fileData, fs.FileInfo, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &fileData{users: fileUsers{}, aliases: fileAliases{}}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("auth: users file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("auth: users file: %w", err)
	}
	var b strings.Builder
	if size := st.Size(); size > 0 && size < 1<<34 {
		b.Grow(int(size) + 1) // +1: a read that finds EOF
	}
	if _, err := io.Copy(&b, f); err != nil {
		return nil, nil, fmt.Errorf("auth: users file %s: %w", s.path, err)
	}
	d, err := parseUsersFile(b.String())
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %s:%w", s.path, err)
	}
	return d, st, nil
}

// aliasLine is an alias line of a users file, kept until every user is
// read.
type aliasLine struct {
	line                 int
	user, domain, target string
}

// parseUsersFile parses the contents of a users file. Its errors start
// with the line number.
func parseUsersFile(data string) (*fileData, error) {
	users := fileUsers{}
	var aliases []aliasLine
	// Most files serve one domain: size the first domain's map for every
	// line at once (a third faster than growing it), and shrink it at the
	// end if the guess was wrong.
	hint := strings.Count(data, "\n") + 1
	hint0, first := hint, ""
	var domain string
	var m map[string]fileHA1
	for line := 1; len(data) > 0; line++ {
		text, rest, _ := strings.Cut(data, "\n")
		data = rest
		text = strings.TrimSpace(text)
		if text == "" || text[0] == '#' {
			continue
		}
		user, realm, h, target, err := parseUserLine(text)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", line, err)
		}
		if target != "" {
			aliases = append(aliases, aliasLine{line, user, realm, target})
			continue
		}
		if m == nil || realm != domain {
			if m = users[realm]; m == nil {
				if len(users) == 0 {
					first = realm
				}
				m = make(map[string]fileHA1, hint)
				users[realm] = m
				hint = 0
			}
			domain = realm
		}
		n := len(m)
		if m[user] = h; len(m) == n {
			return nil, fmt.Errorf("%d: %s@%s listed twice", line, user, realm)
		}
	}
	if big := users[first]; big != nil && len(big) < hint0/2 {
		small := make(map[string]fileHA1, len(big)) // maps.Clone keeps the size
		for k, v := range big {
			small[k] = v
		}
		users[first] = small
	}
	d := &fileData{users: users, aliases: fileAliases{}}
	// An alias whose user is gone, or whose name is now a user's, is left
	// out rather than failing the file: deleting a user's line by hand
	// must take effect (a compromised account locked out) even when an
	// alias still names it. The next write drops the line.
	for _, a := range aliases {
		if _, ok := users[a.domain][a.user]; ok {
			d.dropped = append(d.dropped, fmt.Sprintf("line %d: %s@%s is a user and an alias: the alias is left out", a.line, a.user, a.domain))
			continue
		}
		if _, ok := users[a.domain][a.target]; !ok {
			d.dropped = append(d.dropped, fmt.Sprintf("line %d: %s@%s stands for %s@%s, who is no user: left out", a.line, a.user, a.domain, a.target, a.domain))
			continue
		}
		m := d.aliases[a.domain]
		if m == nil {
			m = map[string]string{}
			d.aliases[a.domain] = m
		}
		if _, ok := m[a.user]; ok {
			return nil, fmt.Errorf("%d: %s@%s listed twice", a.line, a.user, a.domain)
		}
		m[a.user] = a.target
	}
	return d, nil
}

// parseUserLine parses "alice@a.example md5=HEX sha-256=HEX" (already
// trimmed), without allocating unless the line has upper-case letters,
// or "1001@a.example alias=alice@a.example", for which it returns the
// target's user part, "alice".
func parseUserLine(text string) (user, domain string, h fileHA1, target string, err error) {
	aor, fields, _ := cutSpace(text)
	user, domain, err = ParseAOR(aor)
	if err != nil {
		return "", "", h, "", err
	}
	var alias string
	isAlias := false
	for fields != "" {
		var f string
		f, fields, _ = cutSpace(fields)
		if f == "" {
			continue
		}
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToLower(k) {
		case "md5":
			var ok bool
			if h.md5, ok = lowerHex(v, 32); !ok {
				return "", "", h, "", fmt.Errorf("md5= is not 32 hex digits")
			}
		case "sha-256":
			var ok bool
			if h.sha256, ok = lowerHex(v, 64); !ok {
				return "", "", h, "", fmt.Errorf("sha-256= is not 64 hex digits")
			}
		case "alias":
			alias, isAlias = v, true
		}
	}
	if isAlias {
		if h.md5 != "" || h.sha256 != "" {
			return "", "", h, "", fmt.Errorf("%s@%s has alias= and a hash: an alias has no password", user, domain)
		}
		target, targetDomain, err := ParseAOR(alias)
		if err != nil {
			return "", "", h, "", fmt.Errorf("alias=: %w", err)
		}
		if targetDomain != domain {
			return "", "", h, "", errCrossDomain(user, domain, target, targetDomain)
		}
		return user, domain, h, target, nil
	}
	if h.md5 == "" && h.sha256 == "" {
		return "", "", h, "", fmt.Errorf("%s@%s has neither md5= nor sha-256= nor alias=", user, domain)
	}
	return user, domain, h, "", nil
}

// hexClass is 1 for the digits and a-f, 2 for A-F, 4 for other bytes.
var hexClass = func() (t [256]uint8) {
	for i := range t {
		switch {
		case i >= '0' && i <= '9' || i >= 'a' && i <= 'f':
			t[i] = 1
		case i >= 'A' && i <= 'F':
			t[i] = 2
		default:
			t[i] = 4
		}
	}
	return t
}()

// lowerHex returns s in lower case if it is n hex digits. It is isHex and
// strings.ToLower in one pass without a branch per byte: random hex
// digits defeat branch prediction, and a million users' file has 96
// million of them.
func lowerHex(s string, n int) (string, bool) {
	if len(s) != n {
		return "", false
	}
	var class uint8
	for i := 0; i < len(s); i++ {
		class |= hexClass[s[i]]
	}
	switch {
	case class&4 != 0:
		return "", false
	case class&2 != 0:
		return strings.ToLower(s), true
	}
	return s, true
}

// cutSpace cuts s around its first space or tab (strings.Fields without
// the slice).
func cutSpace(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Add sets the password of aor (user@domain), adding the user if needed.
// Only the HA1 hashes are written. An aor that is an alias is an error
// wrapping ErrAliasConflict.
func (s *FileStore) Add(ctx context.Context, aor, password string) error {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return err
	}
	_, err = s.Import(ctx, []Credential{NewCredential(user, domain, password)})
	return err
}

// Import adds or updates the users of creds, each of which must be as
// ParseAOR returns it with its HA1s in lower-case hex, in one rewrite of
// the file: it is read once, merged in memory and written once. A user's
// hashes are replaced whole: a credential without HA1SHA256 leaves the
// user with MD5 alone. When an AOR is in creds more than once, the last
// wins. Nothing is written when a credential is invalid, or is an alias
// (an error wrapping ErrAliasConflict).
func (s *FileStore) Import(ctx context.Context, creds []Credential) (ImportStats, error) {
	var st ImportStats
	for i := range creds {
		if err := creds[i].check(); err != nil {
			return st, fmt.Errorf("auth: import %d: %w", i+1, err)
		}
	}
	perDomain := map[string]int{}
	for _, c := range creds {
		perDomain[c.Realm]++
	}
	err := s.update(func(d *fileData) error {
		for i := 0; i < len(creds) && len(d.aliases) > 0; i++ {
			c := &creds[i]
			if target, ok := d.aliases[c.Realm][c.User]; ok {
				return errIsAlias(c.User, c.Realm, target)
			}
		}
		u := d.users
		var domain string
		var m map[string]fileHA1
		for _, c := range creds {
			if m == nil || c.Realm != domain {
				if m = u[c.Realm]; m == nil {
					m = make(map[string]fileHA1, perDomain[c.Realm])
					u[c.Realm] = m
				}
				domain = c.Realm
			}
			if _, ok := m[c.User]; ok {
				st.Updated++
			} else {
				st.Added++
			}
			m[c.User] = fileHA1{c.HA1MD5, c.HA1SHA256}
		}
		return nil
	})
	if err != nil {
		return ImportStats{}, err
	}
	return st, nil
}

// Del removes aor and its aliases, or returns ErrUnknownUser.
func (s *FileStore) Del(ctx context.Context, aor string) error {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return err
	}
	return s.update(func(d *fileData) error {
		u := d.users
		if _, ok := u[domain][user]; !ok {
			return fmt.Errorf("%s@%s: %w", user, domain, ErrUnknownUser)
		}
		delete(u[domain], user)
		if len(u[domain]) == 0 {
			delete(u, domain)
		}
		for alias, target := range d.aliases[domain] {
			if target == user {
				delete(d.aliases[domain], alias)
			}
		}
		if len(d.aliases[domain]) == 0 {
			delete(d.aliases, domain)
		}
		return nil
	})
}

// List returns the AORs of domain, or of every domain when domain is
// empty, sorted.
func (s *FileStore) List(ctx context.Context, domain string) ([]string, error) {
	s.mu.Lock()
	data, _, err := s.read()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var aors []string
	for d, m := range data.users {
		if domain != "" && d != strings.ToLower(domain) {
			continue
		}
		for u := range m {
			aors = append(aors, u+"@"+d)
		}
	}
	sort.Strings(aors)
	return aors, nil
}

// Alias returns the user part of the AOR that user@domain is an alias
// of, or ErrUnknownUser. It reloads the file as Lookup does.
func (s *FileStore) Alias(ctx context.Context, user, domain string) (string, error) {
	s.reloadIfChanged()
	if target, ok := s.data.Load().aliases[strings.ToLower(domain)][user]; ok {
		return target, nil
	}
	return "", ErrUnknownUser
}

// AddAlias makes alias (e.g. 1001@a.example) stand for the user aor of
// the same domain. An alias that stands for another user is pointed at
// aor instead, as Add replaces a password. An alias in another domain
// than aor, an alias that is a user, or an aor that is not a user is an
// error wrapping ErrAliasConflict.
func (s *FileStore) AddAlias(ctx context.Context, alias, aor string) error {
	user, target, domain, err := parseAlias(alias, aor)
	if err != nil {
		return err
	}
	return s.update(func(d *fileData) error {
		if _, ok := d.users[domain][user]; ok {
			return errIsUser(user, domain)
		}
		if _, ok := d.users[domain][target]; !ok {
			return errNotUser(target, domain)
		}
		m := d.aliases[domain]
		if m == nil {
			m = map[string]string{}
			d.aliases[domain] = m
		}
		m[user] = target
		return nil
	})
}

// DelAlias removes alias, or returns an error wrapping ErrUnknownUser
// when it is not an alias.
func (s *FileStore) DelAlias(ctx context.Context, alias string) error {
	user, domain, err := ParseAOR(alias)
	if err != nil {
		return err
	}
	return s.update(func(d *fileData) error {
		if _, ok := d.aliases[domain][user]; !ok {
			return errNoAlias(user, domain)
		}
		delete(d.aliases[domain], user)
		if len(d.aliases[domain]) == 0 {
			delete(d.aliases, domain)
		}
		return nil
	})
}

// ListAliases returns the aliases of domain, or of every domain when
// domain is empty, sorted by alias.
func (s *FileStore) ListAliases(ctx context.Context, domain string) ([]Alias, error) {
	s.mu.Lock()
	d, _, err := s.read()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return d.list(strings.ToLower(domain)), nil
}

// list returns the aliases of domain (lower case), or of every domain
// when domain is empty, sorted by alias.
func (d *fileData) list(domain string) []Alias {
	var aliases []Alias
	for dom, m := range d.aliases {
		if domain != "" && dom != domain {
			continue
		}
		for user, target := range m {
			aliases = append(aliases, Alias{user + "@" + dom, target + "@" + dom})
		}
	}
	sortAliases(aliases)
	return aliases
}

// update reads the file afresh, applies change and writes it back.
func (s *FileStore) update(change func(*fileData) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, _, err := s.read()
	if err != nil {
		return err
	}
	if err := change(d); err != nil {
		return err
	}
	st, err := s.write(d)
	if err != nil {
		return err
	}
	s.data.Store(d)
	s.stat = st
	return nil
}

// write replaces the file with d's users, sorted, then its aliases,
// sorted, atomically, mode 0600.
func (s *FileStore) write(d *fileData) (fs.FileInfo, error) {
	type entry struct {
		user, domain string
		h            fileHA1
	}
	n := 0
	for _, m := range d.users {
		n += len(m)
	}
	entries := make([]entry, 0, n)
	for domain, m := range d.users {
		for u, h := range m {
			entries = append(entries, entry{u, domain, h})
		}
	}
	// By AOR, as the lines sort: no character of an AOR sorts before the
	// space that ends it.
	slices.SortFunc(entries, func(a, b entry) int {
		return compareAOR(a.user, a.domain, b.user, b.domain)
	})
	aliases := d.list("")
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	w.WriteString(fileHeader)
	for _, e := range entries {
		w.WriteString(e.user)
		w.WriteByte('@')
		w.WriteString(e.domain)
		if e.h.md5 != "" {
			w.WriteString(" md5=")
			w.WriteString(e.h.md5)
		}
		if e.h.sha256 != "" {
			w.WriteString(" sha-256=")
			w.WriteString(e.h.sha256)
		}
		w.WriteByte('\n')
	}
	if len(aliases) > 0 {
		w.WriteByte('\n')
	}
	for _, a := range aliases {
		w.WriteString(a.Alias)
		w.WriteString(" alias=")
		w.WriteString(a.AOR)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	st, err := os.Stat(s.path)
	if err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	return st, nil
}

// compareAOR compares user1@domain1 with user2@domain2 as strings,
// without building them.
func compareAOR(user1, domain1, user2, domain2 string) int {
	if c := strings.Compare(user1, user2); c != 0 {
		// A user that is a prefix of the other is followed by '@', which
		// sorts before every other character a user part may hold,
		// except those below it: compare as the whole strings would.
		short, long, sign := user1, user2, -1
		if len(user1) > len(user2) {
			short, long, sign = user2, user1, 1
		}
		if strings.HasPrefix(long, short) {
			if long[len(short)] < '@' {
				return -sign
			}
			return sign
		}
		return c
	}
	return strings.Compare(domain1, domain2)
}
