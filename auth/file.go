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
const fileHeader = `# sipfed users file, written by "sipfed user add|del|import"; edit with care.
# One user per line: AOR md5=HA1 sha-256=HA1, where HA1 is
# H(user ":" domain ":" password) in lower-case hex (RFC 7616 §3.4.2).
# Lines starting with '#' and blank lines are ignored; comments are not kept.
`

// FileStore keeps users in a text file, one per line:
//
//	alice@a.example md5=<32 hex digits> sha-256=<64 hex digits>
//
// Lines starting with '#' and blank lines are ignored, as are fields
// other than md5= and sha-256=. Lookup re-reads the file when its size,
// modification time or inode changes, checking at most once a second, so
// users added by "sipfed user add" count on a running server. A file that
// no longer parses is ignored (the last good contents stay in effect) until
// it changes again. A missing file is an empty store. Add, Del and Import
// (many users at once) rewrite the file atomically (temporary file, then
// rename) with mode 0600; two concurrent writers race, and the last one
// wins. The file is read whole into one string that the users' hashes
// point into: a million users take about 250 bytes each and half a
// second to load.
type FileStore struct {
	path    string
	now     func() time.Time
	users   atomic.Pointer[fileUsers]
	checked atomic.Int64 // Unix nanoseconds of the last stat
	mu      sync.Mutex   // serialises reloads and writes
	stat    fs.FileInfo  // of the contents in users; nil for a missing file
}

// fileUsers maps domain, then user, to the hashes. The strings point into
// the file's contents, read as one string: no allocation per line.
type fileUsers map[string]map[string]fileHA1

// fileHA1 holds a user's hashes; either may be "".
type fileHA1 struct{ md5, sha256 string }

var _ CredentialStore = (*FileStore)(nil)

// OpenFile opens the users file at path. A missing file is an empty store
// (Add creates it); one that does not parse is an error.
func OpenFile(path string) (*FileStore, error) {
	s := &FileStore{path: path, now: time.Now}
	users, st, err := s.read()
	if err != nil {
		return nil, err
	}
	s.users.Store(&users)
	s.stat = st
	s.checked.Store(s.now().UnixNano())
	return s, nil
}

// Lookup returns the credential of user@realm, or ErrUnknownUser.
func (s *FileStore) Lookup(ctx context.Context, user, realm string) (Credential, error) {
	s.reloadIfChanged()
	if h, ok := (*s.users.Load())[realm][user]; ok {
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
	if users, st, err := s.read(); err == nil {
		s.users.Store(&users)
		s.stat = st
	}
}

func sameFile(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// read parses the file; a missing file is empty. The file is read whole
// into one string, which the users' strings then point into.
func (s *FileStore) read() (fileUsers, fs.FileInfo, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileUsers{}, nil, nil
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
	users, err := parseUsersFile(b.String())
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %s:%w", s.path, err)
	}
	return users, st, nil
}

// parseUsersFile parses the contents of a users file. Its errors start
// with the line number.
func parseUsersFile(data string) (fileUsers, error) {
	users := fileUsers{}
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
		user, realm, h, err := parseUserLine(text)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", line, err)
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
	return users, nil
}

// parseUserLine parses "alice@a.example md5=HEX sha-256=HEX" (already
// trimmed), without allocating unless the line has upper-case letters.
func parseUserLine(text string) (user, domain string, h fileHA1, err error) {
	aor, fields, _ := cutSpace(text)
	user, domain, err = ParseAOR(aor)
	if err != nil {
		return "", "", h, err
	}
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
				return "", "", h, fmt.Errorf("md5= is not 32 hex digits")
			}
		case "sha-256":
			var ok bool
			if h.sha256, ok = lowerHex(v, 64); !ok {
				return "", "", h, fmt.Errorf("sha-256= is not 64 hex digits")
			}
		}
	}
	if h.md5 == "" && h.sha256 == "" {
		return "", "", h, fmt.Errorf("%s@%s has neither md5= nor sha-256=", user, domain)
	}
	return user, domain, h, nil
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
// Only the HA1 hashes are written.
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
// wins. Nothing is written when a credential is invalid.
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
	err := s.update(func(u fileUsers) error {
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

// Del removes aor, or returns ErrUnknownUser.
func (s *FileStore) Del(ctx context.Context, aor string) error {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return err
	}
	return s.update(func(u fileUsers) error {
		if _, ok := u[domain][user]; !ok {
			return fmt.Errorf("%s@%s: %w", user, domain, ErrUnknownUser)
		}
		delete(u[domain], user)
		if len(u[domain]) == 0 {
			delete(u, domain)
		}
		return nil
	})
}

// List returns the AORs of domain, or of every domain when domain is
// empty, sorted.
func (s *FileStore) List(ctx context.Context, domain string) ([]string, error) {
	s.mu.Lock()
	users, _, err := s.read()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var aors []string
	for d, m := range users {
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

// update reads the file afresh, applies change and writes it back.
func (s *FileStore) update(change func(fileUsers) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	users, _, err := s.read()
	if err != nil {
		return err
	}
	if err := change(users); err != nil {
		return err
	}
	st, err := s.write(users)
	if err != nil {
		return err
	}
	s.users.Store(&users)
	s.stat = st
	return nil
}

// write replaces the file with users, sorted, atomically, mode 0600.
func (s *FileStore) write(users fileUsers) (fs.FileInfo, error) {
	type entry struct {
		user, domain string
		h            fileHA1
	}
	n := 0
	for _, m := range users {
		n += len(m)
	}
	entries := make([]entry, 0, n)
	for d, m := range users {
		for u, h := range m {
			entries = append(entries, entry{u, d, h})
		}
	}
	// By AOR, as the lines sort: no character of an AOR sorts before the
	// space that ends it.
	slices.SortFunc(entries, func(a, b entry) int {
		return compareAOR(a.user, a.domain, b.user, b.domain)
	})
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
