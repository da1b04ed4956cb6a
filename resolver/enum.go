package resolver

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// ENUM limits. Records come from other people's DNS: every loop and every
// string they can make us build is bounded.
const (
	// maxENUMHops is how many non-terminal records one look-up under one
	// suffix follows before it calls the chain a loop (RFC 3402 §4 asks
	// clients to detect loops; real trees delegate once or twice).
	maxENUMHops = 5
	// maxRewrite caps what a NAPTR regexp may produce: a SIP URI longer
	// than this is a broken or hostile record, not an address.
	maxRewrite = 1024
	// maxRegexpField is the longest NAPTR field DNS can carry: one
	// character-string (RFC 1035 §3.3).
	maxRegexpField = 255
	// maxShown cuts values from DNS quoted in errors and steps.
	maxShown = 256
	// maxRegexpSize caps a NAPTR regular expression with its counted
	// repeats written out (expandedSize): a real ENUM rule is a few dozen.
	maxRegexpSize = 1000
	// maxENUMRecords caps the NAPTR records one look-up tries under a
	// suffix, across the names it visits: a name may hold any number,
	// each with a regular expression to compile, and a zone with
	// hundreds would make a look-up cost seconds.
	maxENUMRecords = 20
	// maxSubsts caps the cache of compiled regexp fields (a few KB each),
	// below WithMaxEntries when that is lower.
	maxSubsts = 1000
)

// ENUMResult is what an ENUM look-up found.
type ENUMResult struct {
	Number string `json:"number"` // the number looked up, normalised
	URI    string `json:"uri"`    // the SIP or SIPS URI the winning record rewrote the number to
	Record string `json:"record"` // that NAPTR record, presentation format
	// Steps are what was asked and what came back, in order (names
	// queried, records seen, records skipped and why), for `sipfed
	// resolve` to explain.
	Steps []string `json:"steps"`
}

// NormalizeE164 returns the global E.164 number in s ("+81312345678") with
// the visual separators of RFC 3966 (- . ( ) and spaces) removed; ok false
// when s is not '+' followed by 1 to 15 digits after that (ITU-T E.164 §6).
func NormalizeE164(s string) (number string, ok bool) {
	b := make([]byte, 0, 16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		case c == '+' && len(b) == 0:
			b = append(b, c)
		case c >= '0' && c <= '9' && len(b) > 0:
			if len(b) > 15 {
				return "", false
			}
			b = append(b, c)
		default:
			return "", false
		}
	}
	if len(b) < 2 {
		return "", false
	}
	return string(b), true
}

// ENUMName returns the domain queried for number under suffix:
// "8.7.6.5.4.3.2.1.3.1.8.e164.arpa." for ("+81312345678", "e164.arpa")
// (RFC 6116 §2.4): the digits reversed, one label each, anything else in
// number ignored. The suffix is made lower case and fully qualified, so
// that one number has one cache entry however the suffix is spelled.
func ENUMName(number, suffix string) string {
	var sb strings.Builder
	sb.Grow(2*len(number) + len(suffix) + 1)
	for i := len(number) - 1; i >= 0; i-- {
		if c := number[i]; c >= '0' && c <= '9' {
			sb.WriteByte(c)
			sb.WriteByte('.')
		}
	}
	sb.WriteString(strings.ToLower(strings.Trim(suffix, ".")))
	sb.WriteByte('.')
	return sb.String()
}

// NAPTRRewrite applies a NAPTR regexp field (RFC 3402 §3.2: delim ERE
// delim replacement delim [i]; \1..\9 back-references in the replacement,
// \\ for a backslash; any delimiter char that is not a digit, backslash,
// or 'i'; the delimiter may be escaped) to the application unique string
// aus and returns the result; an error for a malformed field or a regular
// expression Go cannot compile or one that does not match.
//
// The result is the replacement alone, as DDDS clients build it (the parts
// of aus outside the match are not kept); it is at most 1024 bytes. The
// field is the octets DNS carries: miekg/dns keeps NAPTR fields in
// presentation format (\\ and \DDD escapes), which ENUM undoes before
// calling this. The ERE is compiled by Go's regexp (RE2: linear time, so
// no record can make matching slow) with POSIX leftmost-longest matching;
// an escaped delimiter in it stands for the delimiter character itself.
func NAPTRRewrite(regexp, aus string) (string, error) {
	sub, err := parseSubst(regexp)
	if err != nil {
		return "", err
	}
	return sub.apply(aus)
}

// subst is a parsed NAPTR regexp field: what NAPTRRewrite does to any
// string. It is safe for concurrent use.
type subst struct {
	field string // as DNS carries it, for errors
	re    *regexp.Regexp
	repl  string // checked: every \ is followed by a byte, every \N names a group
}

// parseSubst parses and checks a regexp field (see NAPTRRewrite).
func parseSubst(field string) (*subst, error) {
	if field == "" {
		return nil, fmt.Errorf("resolver: NAPTR regexp is empty")
	}
	if len(field) > maxRegexpField {
		return nil, fmt.Errorf("resolver: NAPTR regexp of %d bytes (at most %d fit in DNS)", len(field), maxRegexpField)
	}
	d := field[0]
	if (d >= '0' && d <= '9') || d == '\\' || d == 'i' || d == 'I' {
		return nil, fmt.Errorf("resolver: NAPTR regexp %q: delimiter %q is a digit, a backslash or the flag i (RFC 3402 §3.2)", clip(field), rune(d))
	}
	ere, rest, ok := cutDelim(field[1:], d)
	if !ok {
		return nil, fmt.Errorf("resolver: NAPTR regexp %q: no second delimiter %q", clip(field), rune(d))
	}
	repl, flags, ok := cutDelim(rest, d)
	if !ok {
		return nil, fmt.Errorf("resolver: NAPTR regexp %q: no closing delimiter %q", clip(field), rune(d))
	}
	if ere == "" {
		return nil, fmt.Errorf("resolver: NAPTR regexp %q: empty regular expression", clip(field))
	}
	icase := false
	for i := 0; i < len(flags); i++ {
		if flags[i] != 'i' && flags[i] != 'I' {
			return nil, fmt.Errorf("resolver: NAPTR regexp %q: flags %q: only i is defined (RFC 3402 §3.2)", clip(field), clip(flags))
		}
		icase = true
	}
	re, err := compileERE(ere, d, icase)
	if err != nil {
		return nil, fmt.Errorf("resolver: NAPTR regexp %q: %s", clip(field), shown(err.Error()))
	}
	// The replacement is checked here, not when applied, so that a broken
	// record is reported as such whatever number it is tried on.
	for i := 0; i < len(repl); i++ {
		if repl[i] != '\\' {
			continue
		}
		i++
		switch c := repl[i]; {
		case c == '0':
			return nil, fmt.Errorf("resolver: NAPTR regexp %q: \\0 is no back-reference (RFC 3402 §3.2: \\1 to \\9)", clip(field))
		case c >= '1' && c <= '9' && int(c-'0') > re.NumSubexp():
			return nil, fmt.Errorf("resolver: NAPTR regexp %q: \\%c but the expression has %d group(s)", clip(field), c, re.NumSubexp())
		}
	}
	return &subst{field: field, re: re, repl: repl}, nil
}

// apply rewrites aus: the replacement with its back-references filled in.
func (s *subst) apply(aus string) (string, error) {
	m := s.re.FindStringSubmatchIndex(aus)
	if m == nil {
		return "", fmt.Errorf("resolver: NAPTR regexp %q does not match %q", clip(s.field), clip(aus))
	}
	repl := s.repl
	out := make([]byte, 0, min(len(repl)+len(aus), maxRewrite))
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c == '\\' {
			i++
			c = repl[i]
			if c >= '1' && c <= '9' {
				if g := int(c - '0'); m[2*g] >= 0 {
					out = append(out, aus[m[2*g]:m[2*g+1]]...)
				}
				if len(out) > maxRewrite {
					break
				}
				continue
			}
			// \\, an escaped delimiter, or any other escaped character:
			// the character itself.
		}
		out = append(out, c)
	}
	if len(out) > maxRewrite {
		return "", fmt.Errorf("resolver: NAPTR regexp %q: result longer than %d bytes", clip(s.field), maxRewrite)
	}
	return string(out), nil
}

// substEntry is a cached parseSubst outcome: a broken field stays broken.
type substEntry struct {
	s   *subst
	err error
}

// subst returns the parsed regexp field, from a cache: compiling a
// regular expression costs more than the rest of a cached look-up. The
// cache holds at most maxSubsts fields, and forgets arbitrary ones when full.
func (r *Resolver) subst(field string) (*subst, error) {
	r.smu.Lock()
	e, ok := r.substs[field]
	r.smu.Unlock()
	if ok {
		return e.s, e.err
	}
	s, err := parseSubst(field)
	r.smu.Lock()
	defer r.smu.Unlock()
	for k := range r.substs {
		if len(r.substs) < min(r.maxEntries, maxSubsts) {
			break
		}
		delete(r.substs, k)
	}
	r.substs[field] = substEntry{s, err}
	return s, err
}

// cutDelim splits s at its first delimiter d that no backslash escapes; ok
// is false when there is none. A backslash escapes the byte after it, so
// that neither part ends in a lone backslash.
func cutDelim(s string, d byte) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case d:
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// compileERE compiles the ERE of a substitution expression whose
// delimiter is d. An escaped delimiter becomes that character, quoted for
// the regexp package, so "\/" and "\x" (with x as the delimiter) both
// mean the character; other escapes are left to the regexp package.
func compileERE(ere string, d byte, icase bool) (*regexp.Regexp, error) {
	var sb strings.Builder
	if icase {
		sb.WriteString("(?i)")
	}
	for i := 0; i < len(ere); i++ {
		c := ere[i]
		if c == '\\' && i+1 < len(ere) {
			i++
			if ere[i] == d {
				sb.WriteString(regexp.QuoteMeta(string([]byte{d})))
			} else {
				sb.WriteByte(c)
				sb.WriteByte(ere[i])
			}
			continue
		}
		sb.WriteByte(c)
	}
	// Counted repeats multiply a program's size ("(.{1000}){9}" is nine
	// thousand instructions from 13 bytes): a hostile zone could make each
	// look-up compile megabytes. A number has at most 15 digits; an
	// expression that would expand past maxRegexpSize is refused before
	// it is compiled.
	tree, err := syntax.Parse(sb.String(), syntax.Perl)
	if err != nil {
		return nil, err
	}
	if n := expandedSize(tree); n > maxRegexpSize {
		return nil, fmt.Errorf("expands to %d or more operations, at most %d", n, maxRegexpSize)
	}
	re, err := regexp.Compile(sb.String())
	if err != nil {
		return nil, err
	}
	re.Longest() // POSIX EREs match leftmost-longest
	return re, nil
}

// expandedSize bounds the size of re once its counted repeats are
// written out, stopping early past maxRegexpSize.
func expandedSize(re *syntax.Regexp) int {
	n := 1
	for _, sub := range re.Sub {
		n += expandedSize(sub)
		if n > maxRegexpSize {
			return n
		}
	}
	if re.Op == syntax.OpRepeat {
		times := max(re.Min, re.Max)
		if times < 1 {
			times = 1
		}
		n *= times
	}
	return n
}

// ENUM looks number up under each suffix in turn (the first suffix with a
// record wins; e.g. []string{"e164.lab", "e164.arpa"}). DNS failures
// (timeouts, SERVFAIL) come back as the resolver's existing errors so the
// proxy can tell them apart (it answers 504).
//
// The look-up follows RFC 6116 and the DDDS algorithm of RFC 3402 §4:
// the NAPTR records of the number's name, sorted by order then preference
// (RFC 3403 §4.1), those with the E2U+sip service (RFC 3764) tried in
// turn. A terminal record (flag "u") rewrites the number, "+" and digits,
// into the URI; a non-terminal one (flag "") sends the look-up on to its
// replacement, or to the domain its regexp yields, and when nothing comes
// of that the next record is tried. The answers come from the Resolver's
// cache. A DNS failure under one suffix ends the look-up rather than
// moving on to the next suffix: a record there might have said otherwise.
//
// Errors wrap ErrENUMNoRecord (no record for SIP under any suffix),
// ErrENUMBadRecord or ErrENUMLoop (a suffix has records for SIP, but none
// usable), a *LookupError, or ErrUnsupported for a number that is not a
// global E.164 number or a suffix that is not a domain name. Their text
// holds values from DNS only quoted or escaped: no CR or LF. On an error
// the result still holds the number and the steps taken.
func (r *Resolver) ENUM(ctx context.Context, number string, suffixes []string) (ENUMResult, error) {
	num, ok := NormalizeE164(number)
	if !ok {
		return ENUMResult{}, fmt.Errorf("resolver: ENUM: %q is not a global E.164 number (+ and 1 to 15 digits): %w", clip(number), ErrUnsupported)
	}
	res := ENUMResult{Number: num}
	if len(suffixes) == 0 {
		return res, fmt.Errorf("resolver: ENUM %s: no suffix to look under: %w", num, ErrENUMNoRecord)
	}
	for i, sfx := range suffixes {
		name := ENUMName(num, sfx)
		if _, ok := dns.IsDomainName(name); !ok || strings.Trim(sfx, ".") == "" {
			return res, fmt.Errorf("resolver: ENUM suffix %q is not a domain name: %w", clip(sfx), ErrUnsupported)
		}
		sfx = strings.TrimSuffix(name[2*(len(num)-1):], ".")
		w := &enumWalk{r: r, aus: num, sfx: sfx, res: &res, path: map[string]bool{}, tried: map[string]bool{}}
		found, err := w.walk(ctx, name)
		if err != nil {
			return res, err
		}
		if found {
			return res, nil
		}
		switch {
		case w.loop != "":
			return res, fmt.Errorf("resolver: ENUM %s under %s: %s: %w", num, sfx, w.loop, ErrENUMLoop)
		case w.sawSIP:
			return res, fmt.Errorf("resolver: ENUM %s under %s: %s: %w", num, sfx, w.reasons(), ErrENUMBadRecord)
		}
		if i+1 < len(suffixes) {
			res.Steps = append(res.Steps, "no E2U+sip record under "+sfx+": next suffix")
		}
	}
	var under []string
	for _, sfx := range suffixes {
		under = append(under, strings.ToLower(strings.Trim(sfx, ".")))
	}
	return res, fmt.Errorf("resolver: ENUM %s: nothing under %s: %w", num, strings.Join(under, ", "), ErrENUMNoRecord)
}

// enumWalk is one ENUM look-up under one suffix: the DDDS rules of RFC
// 3402 §4, depth first through non-terminal records.
type enumWalk struct {
	r      *Resolver
	aus    string // the application unique string: the number, "+" and digits
	sfx    string // the suffix, for errors
	res    *ENUMResult
	path   map[string]bool // names on the current chain: one seen again is a loop
	tried  map[string]bool // names looked up already
	hops   int             // non-terminal records followed
	tries  int             // records tried (maxENUMRecords)
	sawSIP bool            // a record with the E2U+sip service was seen
	loop   string          // the first loop found, for the error
	bad    []string        // why each record for SIP was unusable
}

func (w *enumWalk) step(format string, args ...any) {
	w.res.Steps = append(w.res.Steps, shown(fmt.Sprintf(format, args...)))
}

// walk tries the records at name. found is true when one gave a URI; err
// is a DNS failure, or a chain longer than maxENUMHops.
func (w *enumWalk) walk(ctx context.Context, name string) (found bool, err error) {
	a, err := w.r.lookup(ctx, name, dns.TypeNAPTR)
	if err != nil {
		return false, err
	}
	w.path[name], w.tried[name] = true, true
	defer delete(w.path, name)
	for _, cn := range a.cnames {
		w.step("via %s", text(cn))
	}
	if a.neg != nil {
		why := strings.TrimPrefix(a.neg.Error(), "resolver: ")
		w.step("%s", why)
		if w.hops > 0 { // a non-terminal record led here
			w.bad = append(w.bad, shown(why))
		}
		return false, nil
	}
	ns := make([]*dns.NAPTR, 0, len(a.rrs))
	for _, rr := range a.rrs {
		if n, ok := rr.(*dns.NAPTR); ok {
			ns = append(ns, n)
		}
	}
	slices.SortStableFunc(ns, func(x, y *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(x.Order, y.Order), cmp.Compare(x.Preference, y.Preference))
	})
	w.step("%s NAPTR: %d record(s)", strings.TrimSuffix(name, "."), len(ns))
	for i, n := range ns {
		if w.tries++; w.tries > maxENUMRecords {
			w.step("stop at %s: more than %d records tried", text(n), maxENUMRecords)
			return false, fmt.Errorf("resolver: ENUM %s under %s: more than %d records tried: %w", w.aus, w.sfx, maxENUMRecords, ErrENUMBadRecord)
		}
		found, err := w.try(ctx, n)
		if err != nil {
			return false, err
		}
		if found {
			for _, m := range ns[i+1:] {
				w.step("unused %s", text(m))
			}
			return true, nil
		}
	}
	return false, nil
}

// try follows one record: a URI from a terminal one, the records of the
// next name from a non-terminal one, or a step saying why it was skipped.
func (w *enumWalk) try(ctx context.Context, n *dns.NAPTR) (found bool, err error) {
	rec := text(n)
	flags, service := unescapeString(n.Flags), unescapeString(n.Service)
	sipService := isE2USIP(service)
	// A non-terminal record may leave the service to the records it
	// leads to (RFC 3403 §4.1).
	if !sipService && !(flags == "" && service == "") {
		w.step("skip %s: service %q is not E2U+sip", rec, service)
		return false, nil
	}
	w.sawSIP = w.sawSIP || sipService
	switch {
	case strings.EqualFold(flags, "u"):
		uri, err := w.terminalURI(unescapeString(n.Regexp))
		if err != nil {
			w.skip(n, rec, err.Error())
			return false, nil
		}
		w.step("use %s: %s", rec, uri)
		w.res.URI, w.res.Record = uri, rec
		return true, nil
	case flags == "":
		next, why := w.nextName(n)
		if why != "" {
			w.skip(n, rec, why)
			return false, nil
		}
		switch {
		case w.path[next]:
			w.step("skip %s: %s is already on the way here: a loop", rec, strings.TrimSuffix(next, "."))
			if w.loop == "" {
				w.loop = fmt.Sprintf("%s leads back to %s", naptrID(n), strings.TrimSuffix(next, "."))
			}
			return false, nil
		case w.tried[next]:
			w.step("skip %s: %s was looked up already, without a URI", rec, strings.TrimSuffix(next, "."))
			return false, nil
		case w.hops >= maxENUMHops:
			w.step("stop at %s: more than %d non-terminal records", rec, maxENUMHops)
			return false, fmt.Errorf("resolver: ENUM %s under %s: more than %d non-terminal records followed, at %s: %w", w.aus, w.sfx, maxENUMHops, naptrID(n), ErrENUMLoop)
		}
		w.hops++
		w.step("follow %s: non-terminal, on to %s", rec, strings.TrimSuffix(next, "."))
		nbad := len(w.bad)
		found, err := w.walk(ctx, next)
		if !found && err == nil && len(w.bad) == nbad && w.loop == "" {
			w.bad = append(w.bad, shown(fmt.Sprintf("%s: no E2U+sip record at %s", naptrID(n), strings.TrimSuffix(next, "."))))
		}
		return found, err
	default:
		w.skip(n, rec, fmt.Sprintf("flags %q: ENUM knows only \"u\" (terminal) and \"\" (non-terminal)", flags))
		return false, nil
	}
}

// skip records why a record for SIP was unusable.
func (w *enumWalk) skip(n *dns.NAPTR, rec, why string) {
	why = strings.TrimPrefix(why, "resolver: ")
	w.step("skip %s: %s", rec, why)
	w.bad = append(w.bad, shown(naptrID(n)+": "+why))
}

// reasons joins the first few reasons records were unusable.
func (w *enumWalk) reasons() string {
	const most = 3
	if len(w.bad) == 0 {
		return "no record leads to a URI"
	}
	s := strings.Join(w.bad[:min(len(w.bad), most)], "; ")
	if len(w.bad) > most {
		s += fmt.Sprintf("; and %d more", len(w.bad)-most)
	}
	return s
}

// terminalURI applies the regexp of a terminal record to the number, and
// checks the result with checkSIPURI.
func (w *enumWalk) terminalURI(re string) (string, error) {
	if re == "" {
		return "", fmt.Errorf("terminal record without a regexp")
	}
	sub, err := w.r.subst(re)
	if err != nil {
		return "", err
	}
	uri, err := sub.apply(w.aus)
	if err != nil {
		return "", err
	}
	return checkSIPURI(uri)
}

// checkSIPURI returns uri when it is a SIP or SIPS URI (RFC 3764 §4) that
// can go into a Request-URI as it is: printable ASCII, no spaces, a host.
func checkSIPURI(uri string) (string, error) {
	for i := 0; i < len(uri); i++ {
		if uri[i] <= ' ' || uri[i] >= 0x7f {
			return "", fmt.Errorf("result %q is not a SIP URI: byte 0x%02x", uri, uri[i])
		}
	}
	scheme, _, _ := strings.Cut(uri, ":")
	if !strings.EqualFold(scheme, "sip") && !strings.EqualFold(scheme, "sips") {
		return "", fmt.Errorf("result %q is not a sip: or sips: URI", uri)
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil || u.Host == "" {
		return "", fmt.Errorf("result %q is not a SIP URI with a host", uri)
	}
	return uri, nil
}

// nextName returns the name a non-terminal record leads to: its
// replacement, or the domain its regexp makes of the number (RFC 3403
// §4.1: one or the other). why says what is wrong when there is none.
func (w *enumWalk) nextName(n *dns.NAPTR) (next, why string) {
	re := unescapeString(n.Regexp)
	hasRepl := n.Replacement != "" && n.Replacement != "."
	switch {
	case hasRepl && re != "":
		return "", "non-terminal with both a regexp and a replacement (RFC 3403 §4.1: one or the other)"
	case hasRepl:
		next = n.Replacement
	case re != "":
		sub, err := w.r.subst(re)
		if err == nil {
			next, err = sub.apply(w.aus)
		}
		if err != nil {
			return "", err.Error()
		}
	default:
		return "", "non-terminal without a replacement or a regexp"
	}
	next = strings.ToLower(dns.Fqdn(next))
	if _, ok := dns.IsDomainName(next); !ok || next == "." {
		return "", fmt.Sprintf("next name %q is not a domain name", clip(next))
	}
	return next, ""
}

// isE2USIP reports whether the service field of an ENUM record offers SIP:
// "E2U" then enumservices, each a type with optional ":subtype"s, joined
// by "+" (RFC 6116 §3.4.3; RFC 3761 allowed several in one field), one of
// type sip (RFC 3764), in any case. "E2U+sip" and "E2U+voice:tel+sip" do;
// "E2U+pstn:sip" (RFC 4769, a routing number) does not.
func isE2USIP(service string) bool {
	app, rest, ok := strings.Cut(service, "+")
	if !ok || !strings.EqualFold(app, "E2U") {
		return false
	}
	for rest != "" {
		var es string
		es, rest, _ = strings.Cut(rest, "+")
		typ, _, _ := strings.Cut(es, ":")
		if strings.EqualFold(typ, "sip") {
			return true
		}
	}
	return false
}

// naptrID names a record in errors: "2.0.0.0.0.0.0.0.3.1.8.e164.lab NAPTR
// 10 100".
func naptrID(n *dns.NAPTR) string {
	return fmt.Sprintf("%s NAPTR %d %d", strings.TrimSuffix(n.Hdr.Name, "."), n.Order, n.Preference)
}

// unescapeString returns the octets of a character-string that miekg/dns
// keeps in presentation format (RFC 1035 §5.1: \DDD for a byte in
// decimal, \X for the character X).
func unescapeString(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		i++
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// clip cuts a value from DNS to quote with %q in an error or a step (%q
// escapes control characters).
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return s[:maxShown] + "..."
}

// shown makes text with values from DNS fit for an error or a step:
// control characters and bytes that are not UTF-8 as \xHH, so that no CR
// or LF from someone else's zone reaches a log line or a SIP header.
func shown(s string) string {
	clean := true
	for i := 0; clean && i < len(s); i++ {
		clean = s[i] >= ' ' && s[i] != 0x7f && s[i] < utf8.RuneSelf
	}
	if clean {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r < ' ' || r == 0x7f || (r == utf8.RuneError && size == 1) {
			fmt.Fprintf(&sb, "\\x%02x", s[i])
		} else {
			sb.WriteString(s[i : i+size])
		}
		i += size
	}
	return sb.String()
}
