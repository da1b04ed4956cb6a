package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fileHeader opens every users file FileStore writes.
const fileHeader = `# sipfed users file, written by "sipfed user add|del"; edit with care.
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
// it changes again. A missing file is an empty store. Add and Del rewrite
// the file atomically (temporary file, then rename) with mode 0600; two
// concurrent writers race, and the last one wins.
type FileStore struct {
	path    string
	now     func() time.Time
	users   atomic.Pointer[fileUsers]
	checked atomic.Int64 // Unix nanoseconds of the last stat
	mu      sync.Mutex   // serialises reloads and writes
	stat    fs.FileInfo  // of the contents in users; nil for a missing file
}

// fileUsers maps domain, then user, to the credential.
type fileUsers map[string]map[string]Credential

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
	if c, ok := (*s.users.Load())[realm][user]; ok {
		return c, nil
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

// read parses the file; a missing file is empty.
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
	users := fileUsers{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		c, err := parseUserLine(text)
		if err != nil {
			return nil, nil, fmt.Errorf("auth: %s:%d: %w", s.path, line, err)
		}
		if users[c.Realm] == nil {
			users[c.Realm] = map[string]Credential{}
		}
		if _, dup := users[c.Realm][c.User]; dup {
			return nil, nil, fmt.Errorf("auth: %s:%d: %s@%s listed twice", s.path, line, c.User, c.Realm)
		}
		users[c.Realm][c.User] = c
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("auth: users file %s: %w", s.path, err)
	}
	return users, st, nil
}

// parseUserLine parses "alice@a.example md5=HEX sha-256=HEX".
func parseUserLine(text string) (Credential, error) {
	fields := strings.Fields(text)
	user, domain, err := ParseAOR(fields[0])
	if err != nil {
		return Credential{}, err
	}
	c := Credential{User: user, Realm: domain}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToLower(k) {
		case "md5":
			if !isHex(v, 32) {
				return c, fmt.Errorf("md5= is not 32 hex digits")
			}
			c.HA1MD5 = strings.ToLower(v)
		case "sha-256":
			if !isHex(v, 64) {
				return c, fmt.Errorf("sha-256= is not 64 hex digits")
			}
			c.HA1SHA256 = strings.ToLower(v)
		}
	}
	if c.HA1MD5 == "" && c.HA1SHA256 == "" {
		return c, fmt.Errorf("%s@%s has neither md5= nor sha-256=", user, domain)
	}
	return c, nil
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
	return s.update(func(u fileUsers) error {
		if u[domain] == nil {
			u[domain] = map[string]Credential{}
		}
		u[domain][user] = NewCredential(user, domain, password)
		return nil
	})
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

// write replaces the file with users, atomically, mode 0600.
func (s *FileStore) write(users fileUsers) (fs.FileInfo, error) {
	var b bytes.Buffer
	b.WriteString(fileHeader)
	var lines []string
	for _, m := range users {
		for _, c := range m {
			l := c.User + "@" + c.Realm
			if c.HA1MD5 != "" {
				l += " md5=" + c.HA1MD5
			}
			if c.HA1SHA256 != "" {
				l += " sha-256=" + c.HA1SHA256
			}
			lines = append(lines, l+"\n")
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("auth: users file: %w", err)
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
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
