package auth

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Import formats, for ParseUsers.
const (
	// FormatAuto picks the format from the first line that is neither
	// blank nor a comment: a CSV header naming the columns, "AOR:password"
	// (the text before the first ':' holds an '@'), or "user:realm:HA1".
	FormatAuto = "auto"
	// FormatLines is one "AOR:password" per line, e.g.
	// "alice@a.example:secret". The password is everything after the
	// colon that ends the AOR, to the end of the line (a CR before the LF
	// is dropped), and may hold ':' or spaces. An optional "sip:" may
	// start the AOR; an IPv6 domain is bracketed.
	FormatLines = "lines"
	// FormatCSV is a table with a header row, separated by commas,
	// semicolons or tabs (whichever the header uses), quoted as RFC 4180
	// says. The AOR is in column "aor", or in "username" (or "user") and
	// "domain" (or "realm"), as in Kamailio's subscriber table; the secret
	// in "password" or "ha1" (the MD5 HA1 of username:domain:password).
	// Other columns (id, ha1b, …) are ignored. When a row has an ha1 it is
	// used (it is what Kamailio authenticates with by default); when the
	// row's password gives the same HA1 the password is used, and the user
	// gets SHA-256 too.
	FormatCSV = "csv"
	// FormatHA1 is one "user:realm:HA1" per line, the shape of Apache
	// htdigest files and of Asterisk's md5_cred (HA1 = MD5 of
	// "user:realm:password", 32 hex digits), or "AOR:HA1". The realm must be
	// the AOR's domain, the realm sipfed challenges with. Users imported
	// from an HA1 have no SHA-256 hash and can use MD5 digest only.
	FormatHA1 = "ha1"
)

// ImportFormats lists the formats ParseUsers takes.
var ImportFormats = []string{FormatAuto, FormatCSV, FormatLines, FormatHA1}

// maxImportLine bounds a line of the lines and ha1 formats.
const maxImportLine = 64 << 10

// maxReported bounds the bad lines and duplicates a ParsedUsers keeps.
const maxReported = 1000

// ErrBadLine is wrapped by every LineError.
var ErrBadLine = errors.New("bad line")

// LineError is a line of an import that could not be used. Its message
// names the line and, quoted, the AOR or what stands in its place, never a
// password or an HA1.
type LineError struct {
	Line int    // from 1, counting every line of the input
	AOR  string // quoted and clipped; "" when nothing of the line is shown
	Err  error
}

func (e *LineError) Error() string {
	if e.AOR == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.AOR, e.Err)
}

func (e *LineError) Unwrap() []error { return []error{ErrBadLine, e.Err} }

// Duplicate is an AOR an import lists more than once; the last line wins.
type Duplicate struct {
	AOR            string
	Line, Replaced int // the later line, and the line it replaced
}

// ParsedUsers is what ParseUsers read.
type ParsedUsers struct {
	Format string // the format used (detected, for FormatAuto)
	// Creds holds one credential per AOR, in the order of first
	// appearance, with the hashes of the AOR's last line.
	Creds       []Credential
	Records     int         // data lines or rows read, good and bad
	BadCount    int         // bad lines
	Bad         []LineError // the first maxReported of them
	DupCount    int         // lines that replaced an earlier one
	Duplicates  []Duplicate // the first maxReported of them
	MD5Only     int         // credentials in Creds with no SHA-256 HA1
	HA1Mismatch int         // CSV rows whose password did not give their ha1 (ha1 used)
	// index maps domain, then user, to the index in Creds; lastDomain
	// and last are the domain and map of the previous line.
	index      map[string]map[string]int
	lastDomain string
	last       map[string]int
	lineOf     []int // index in Creds → line
}

// ParseUsers reads users to import in format (FormatAuto when ""), and
// turns passwords into HA1 hashes as Add does. Bad lines do not stop it:
// they are counted in the result, which the caller may refuse. It returns
// an error only for an unknown format, one it cannot detect, a CSV header
// without the needed columns, or a failure to read.
func ParseUsers(r io.Reader, format string) (*ParsedUsers, error) {
	br := bufio.NewReaderSize(r, maxImportLine)
	// A UTF-8 byte order mark, as spreadsheets write.
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	if format == "" {
		format = FormatAuto
	}
	p := &ParsedUsers{Format: format, index: map[string]map[string]int{}}
	var comma rune
	switch format {
	case FormatAuto:
		var err error
		if p.Format, comma, err = detectFormat(br); err != nil {
			return nil, err
		}
	case FormatCSV:
		head, _ := firstDataLine(br)
		comma = csvComma(head)
	case FormatLines, FormatHA1:
	default:
		return nil, fmt.Errorf("auth: unknown import format %q (want %s)", clip(format), strings.Join(ImportFormats, ", "))
	}
	var err error
	if p.Format == FormatCSV {
		err = p.readCSV(br, comma)
	} else {
		err = p.readLines(br)
	}
	if err != nil {
		return nil, err
	}
	for _, c := range p.Creds {
		if c.HA1SHA256 == "" {
			p.MD5Only++
		}
	}
	p.index, p.last, p.lineOf = nil, nil, nil
	return p, nil
}

// firstDataLine returns the first line in br's buffer that is neither
// blank nor a comment, without its line end, and its number, without
// consuming anything; "" when the buffer holds none.
func firstDataLine(br *bufio.Reader) (string, int) {
	buf, _ := br.Peek(maxImportLine)
	for n := 1; len(buf) > 0; n++ {
		line, rest, found := bytes.Cut(buf, []byte("\n"))
		if !found && len(buf) == maxImportLine {
			return "", 0 // a line too long to judge
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			return string(line), n
		}
		buf = rest
	}
	return "", 0
}

// detectFormat picks the format from the first data line.
func detectFormat(br *bufio.Reader) (string, rune, error) {
	line, n := firstDataLine(br)
	if line == "" {
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			return FormatLines, 0, nil // empty input: nothing to import
		}
		return "", 0, errors.New("auth: cannot detect the import format: no data line in the first 64 KiB (give the format)")
	}
	if comma := csvComma(line); comma != 0 {
		return FormatCSV, comma, nil
	}
	body := strings.TrimPrefix(line, "sip:")
	if before, _, ok := strings.Cut(body, ":"); ok && strings.Contains(before, "@") {
		return FormatLines, 0, nil
	}
	if i := strings.LastIndexByte(line, ':'); i > 0 && strings.Contains(line[:i], ":") && isHex(line[i+1:], 32) {
		return FormatHA1, 0, nil
	}
	return "", 0, fmt.Errorf("auth: cannot detect the import format from line %d (not a CSV header, AOR:password or user:realm:HA1; give the format)", n)
}

// csvComma returns the separator of a CSV header line that names the
// needed columns, or 0 when line is not one.
func csvComma(line string) rune {
	for _, c := range []rune{',', ';', '\t'} {
		if !strings.ContainsRune(line, c) {
			continue
		}
		r := csv.NewReader(strings.NewReader(line))
		r.Comma = c
		rec, err := r.Read()
		if err != nil {
			continue
		}
		if _, err := csvColumns(rec); err == nil {
			return c
		}
	}
	return 0
}

// csvCols are the indexes of the columns used; -1 when absent.
type csvCols struct{ aor, user, domain, password, ha1 int }

func csvColumns(header []string) (csvCols, error) {
	c := csvCols{-1, -1, -1, -1, -1}
	for i, h := range header {
		var p *int
		switch strings.ToLower(strings.TrimSpace(h)) {
		case "aor":
			p = &c.aor
		case "username", "user":
			p = &c.user
		case "domain", "realm":
			p = &c.domain
		case "password":
			p = &c.password
		case "ha1":
			p = &c.ha1
		default:
			continue
		}
		if *p >= 0 {
			return c, fmt.Errorf("column %q given twice", clip(strings.TrimSpace(h)))
		}
		*p = i
	}
	if c.aor < 0 && (c.user < 0 || c.domain < 0) {
		return c, errors.New(`no "aor" column, nor "username" and "domain"`)
	}
	if c.password < 0 && c.ha1 < 0 {
		return c, errors.New(`no "password" or "ha1" column`)
	}
	return c, nil
}

func (p *ParsedUsers) readCSV(br *bufio.Reader, comma rune) error {
	r := csv.NewReader(br)
	if comma != 0 {
		r.Comma = comma
	}
	r.Comment = '#'
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auth: CSV header: %w", err)
	}
	cols, err := csvColumns(header)
	if err != nil {
		return fmt.Errorf("auth: CSV header: %w (want aor,password or aor,ha1, or Kamailio's username,domain,password,ha1)", err)
	}
	width := len(header)
	r.FieldsPerRecord = width
	var scratch []byte
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var perr *csv.ParseError
		if err != nil && !errors.As(err, &perr) {
			return fmt.Errorf("auth: reading the users: %w", err)
		}
		p.Records++
		if err != nil {
			if errors.Is(err, csv.ErrFieldCount) {
				p.bad(perr.StartLine, "", fmt.Errorf("%d fields, the header has %d", len(rec), width))
			} else {
				p.bad(perr.StartLine, "", fmt.Errorf("CSV: %v", perr.Err))
			}
			continue
		}
		line, _ := r.FieldPos(0)
		var aor string
		if cols.aor >= 0 {
			aor = rec[cols.aor]
		} else {
			aor = rec[cols.user] + "@" + rec[cols.domain]
		}
		aor = strings.TrimSpace(aor)
		user, domain, err := ParseAOR(aor)
		if err != nil {
			p.bad(line, aor, err)
			continue
		}
		var password, ha1 string
		if cols.password >= 0 {
			password = rec[cols.password]
		}
		if cols.ha1 >= 0 {
			ha1 = strings.TrimSpace(rec[cols.ha1])
			if ha1 == `\N` || ha1 == "NULL" { // SQL NULL, as mysql writes it
				ha1 = ""
			}
		}
		// aor may share memory with the reused record: copy what is kept.
		key := user + "@" + domain
		user, domain = key[:len(user)], key[len(user)+1:]
		var c Credential
		switch {
		case ha1 != "":
			if !isHex(ha1, 32) {
				p.bad(line, aor, errors.New("ha1 is not 32 hex digits (the MD5 HA1)"))
				continue
			}
			c = Credential{User: user, Realm: domain, HA1MD5: strings.ToLower(ha1)}
			if password != "" && checkPassword(password) == nil {
				if full := hashCredential(&scratch, user, domain, password); full.HA1MD5 == c.HA1MD5 {
					c = full
				} else {
					p.HA1Mismatch++
				}
			}
		case password != "":
			if err := checkPassword(password); err != nil {
				p.bad(line, aor, err)
				continue
			}
			c = hashCredential(&scratch, user, domain, password)
		default:
			p.bad(line, aor, errors.New("neither a password nor an ha1"))
			continue
		}
		p.add(line, c)
	}
}

func (p *ParsedUsers) readLines(br *bufio.Reader) error {
	var scratch []byte
	for n := 1; ; n++ {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			p.Records++
			p.bad(n, "", fmt.Errorf("longer than %d KiB", maxImportLine>>10))
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("auth: reading the users: %w", err)
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("auth: reading the users: %w", err)
		}
		if len(b) == 0 && err != nil {
			return nil
		}
		b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		if !skipLine(b) {
			p.Records++
			if p.Format == FormatHA1 {
				p.ha1Line(n, b)
			} else {
				p.passwordLine(n, b, &scratch)
			}
		}
		if err != nil {
			return nil
		}
	}
}

// skipLine reports whether b is blank or a comment.
func skipLine(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return c == '#'
		}
	}
	return true
}

// passwordLine parses "AOR:password".
func (p *ParsedUsers) passwordLine(n int, b []byte, scratch *[]byte) {
	body := bytes.TrimPrefix(b, []byte("sip:"))
	skip := len(b) - len(body)
	colon, at := bytes.IndexByte(body, ':'), bytes.IndexByte(body, '@')
	switch {
	case colon < 0:
		// Without its separator the line may be a bare password: show none of it.
		p.bad(n, "", errors.New("no ':' (want AOR:password; the line is not shown)"))
		return
	case at < 0 || at > colon:
		// Perhaps password:AOR, or a user without a domain: show none of it.
		p.bad(n, "", errors.New("no user@domain before the first ':' (want AOR:password; the line is not shown)"))
		return
	}
	sep, ok := aorEnd(body, at)
	if !ok {
		p.bad(n, string(b[:skip+at+1])+"[…", errors.New("IPv6 domain not closed by \"]:\""))
		return
	}
	aor, password := string(b[:skip+sep]), body[sep+1:]
	user, domain, err := ParseAOR(aor)
	if err != nil {
		p.bad(n, aor, err)
		return
	}
	if err := checkPasswordBytes(password); err != nil {
		p.bad(n, aor, err)
		return
	}
	p.add(n, hashCredential(scratch, user, domain, password))
}

// aorEnd returns the index of the ':' that ends the AOR at the start of
// body, whose '@' is at index at and precedes any ':' (a user part has
// none); false for an unclosed IPv6 domain.
func aorEnd(body []byte, at int) (int, bool) {
	if at+1 < len(body) && body[at+1] == '[' { // user@[IPv6]:secret
		end := bytes.IndexByte(body[at:], ']')
		if end < 0 || at+end+1 >= len(body) || body[at+end+1] != ':' {
			return 0, false
		}
		return at + end + 1, true
	}
	return at + bytes.IndexByte(body[at:], ':'), true
}

// ha1Line parses "user:realm:HA1" or "AOR:HA1". Its messages show the
// AOR, or the user alone when the realm is in doubt.
func (p *ParsedUsers) ha1Line(n int, b []byte) {
	body := bytes.TrimPrefix(b, []byte("sip:"))
	colon, at := bytes.IndexByte(body, ':'), bytes.IndexByte(body, '@')
	if colon < 0 {
		p.bad(n, "", errors.New("no ':' (want user:realm:HA1 or AOR:HA1; the line is not shown)"))
		return
	}
	var user, domain, shown string
	var ha1 []byte
	if at >= 0 && at < colon { // AOR:HA1
		sep, ok := aorEnd(body, at)
		if !ok {
			p.bad(n, string(body[:at+1])+"[…", errors.New("IPv6 domain not closed by \"]:\""))
			return
		}
		shown, ha1 = string(b[:len(b)-len(body)+sep]), body[sep+1:]
		var err error
		if user, domain, err = ParseAOR(shown); err != nil {
			p.bad(n, shown, err)
			return
		}
	} else { // user:realm:HA1, as htdigest (a "sip:" was the user "sip")
		last := bytes.LastIndexByte(b, ':')
		first := bytes.IndexByte(b, ':')
		if first == last {
			p.bad(n, string(b[:first]), errors.New("want user:realm:HA1 or AOR:HA1"))
			return
		}
		ha1 = b[last+1:]
		var err error
		if user, domain, err = ParseAOR(string(b[:first]) + "@" + string(b[first+1:last])); err != nil {
			// The realm may be a password put where the HA1 belongs.
			p.bad(n, string(b[:first]), fmt.Errorf("%w: bad user or realm (want user:realm:HA1)", ErrInvalidAOR))
			return
		}
		shown = user + "@" + domain
	}
	if !isHexBytes(ha1, 32) {
		msg := "HA1 is not 32 hex digits (the MD5 of user:realm:password)"
		if isHexBytes(ha1, 64) {
			msg = "HA1 of 64 hex digits: only the MD5 HA1 (32) can be imported"
		}
		p.bad(n, shown, errors.New(msg))
		return
	}
	p.add(n, Credential{User: user, Realm: domain, HA1MD5: strings.ToLower(string(ha1))})
}

// bad records a bad line; aor is quoted and clipped here.
func (p *ParsedUsers) bad(line int, aor string, err error) {
	p.BadCount++
	if len(p.Bad) < maxReported {
		if aor != "" {
			aor = quoteClip(aor)
		}
		p.Bad = append(p.Bad, LineError{Line: line, AOR: aor, Err: err})
	}
}

// add keeps c, replacing an earlier credential of the same AOR.
func (p *ParsedUsers) add(line int, c Credential) {
	if p.last == nil || c.Realm != p.lastDomain {
		if p.last = p.index[c.Realm]; p.last == nil {
			p.last = map[string]int{}
			p.index[c.Realm] = p.last
		}
		p.lastDomain = c.Realm
	}
	if i, ok := p.last[c.User]; ok {
		p.DupCount++
		if len(p.Duplicates) < maxReported {
			p.Duplicates = append(p.Duplicates, Duplicate{AOR: c.User + "@" + c.Realm, Line: line, Replaced: p.lineOf[i]})
		}
		p.Creds[i], p.lineOf[i] = c, line
		return
	}
	p.last[c.User] = len(p.Creds)
	p.Creds = append(p.Creds, c)
	p.lineOf = append(p.lineOf, line)
}

// quoteClip quotes s, escaping control characters, clipped to 64 bytes.
func quoteClip(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	return strconv.Quote(s)
}

// hashCredential is NewCredential for a password given as a string or
// bytes, with one allocation for both hashes; scratch is reused.
func hashCredential[P string | []byte](scratch *[]byte, user, realm string, password P) Credential {
	a1 := append(append(append(append(append((*scratch)[:0], user...), ':'), realm...), ':'), password...)
	m := md5.Sum(a1)
	s := sha256.Sum256(a1)
	clear(a1)
	*scratch = a1
	var h [2 * (md5.Size + sha256.Size)]byte
	hex.Encode(h[:2*md5.Size], m[:])
	hex.Encode(h[2*md5.Size:], s[:])
	hs := string(h[:])
	return Credential{User: user, Realm: realm, HA1MD5: hs[:2*md5.Size], HA1SHA256: hs[2*md5.Size:]}
}

func checkPasswordBytes(p []byte) error {
	if len(p) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidPassword)
	}
	for _, c := range p {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: control character %q", ErrInvalidPassword, c)
		}
	}
	return nil
}

func isHexBytes(b []byte, n int) bool {
	if len(b) != n {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// MakeCredential checks aor and password as Add does and returns the
// credential Add would store.
func MakeCredential(aor, password string) (Credential, error) {
	user, domain, err := ParseAOR(aor)
	if err != nil {
		return Credential{}, err
	}
	if err := checkPassword(password); err != nil {
		return Credential{}, err
	}
	return NewCredential(user, domain, password), nil
}

// ImportStats counts what an Import did.
type ImportStats struct {
	Added, Updated int
}

// check reports whether c is a credential a store may keep: an AOR as
// ParseAOR returns it and at least one HA1 of the right length.
func (c Credential) check() error {
	user, domain, err := ParseAOR(c.User + "@" + c.Realm)
	if err != nil {
		return err
	}
	if user != c.User || domain != c.Realm {
		return fmt.Errorf("%w: %q is not in normal form", ErrInvalidAOR, c.User+"@"+c.Realm)
	}
	if c.HA1MD5 == "" && c.HA1SHA256 == "" {
		return fmt.Errorf("%s@%s has no HA1", c.User, c.Realm)
	}
	if c.HA1MD5 != "" && !isLowerHex(c.HA1MD5, 32) || c.HA1SHA256 != "" && !isLowerHex(c.HA1SHA256, 64) {
		return fmt.Errorf("%s@%s: HA1 is not lower-case hex of the right length", c.User, c.Realm)
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
