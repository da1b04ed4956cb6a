package resolver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sipfed/sipfed/internal/testenv"
)

// enumZone is a private ENUM tree (RFC 6116) served by both the lab server
// and knotd: one case of the look-up per number.
const enumZone = `$ORIGIN e164.lab.
$TTL 60
@ IN SOA ns.e164.lab. hostmaster.e164.lab. 1 3600 600 86400 30
@ IN NS ns
ns IN A 127.0.0.1

; +81312345678 is bob; the mail record before it is passed over.
8.7.6.5.4.3.2.1.3.1.8 IN NAPTR 10 50 "u" "E2U+mailto" "!^.*$!mailto:bob@b.test!" .
8.7.6.5.4.3.2.1.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:bob@b.test!" .

; +81300000001: a regular expression that does not compile.
1.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^(.*$!sip:nobody@b.test!" .

; +81300000002 and +81300000003: non-terminal records pointing at each other.
2.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" 3.0.0.0.0.0.0.0.3.1.8
3.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" 2.0.0.0.0.0.0.0.3.1.8

; +81300000004: mail only.
4.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+mailto" "!^.*$!mailto:dave@b.test!" .

; +81300000005: listed out of order; by order then preference come unknown
; flags, a regexp that does not match, the good record, one never reached.
5.0.0.0.0.0.0.0.3.1.8 IN NAPTR 30 10 "u" "E2U+sip" "!^.*$!sip:last@b.test!" .
5.0.0.0.0.0.0.0.3.1.8 IN NAPTR 20 10 "u" "E2U+sip" "!^\\+81(.*)$!sip:erin@b.test!" .
5.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 20 "u" "E2U+sip" "!^\\+1(.*)$!sip:wrong@b.test!" .
5.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 10 "z" "E2U+sip" "!^.*$!sip:zed@b.test!" .

; +81300000006: a back-reference.
6.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^\\+81(.*)$!sip:\\1@b.test!" .

; +81300000007: a non-terminal record into a carrier's part of the tree.
7.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" carrier
carrier IN NAPTR 10 100 "u" "E2U+sip" "!^\\+(.*)$!sip:\\1@carrier.test;user=phone!" .

; +81300000008: a result that is no SIP URI.
8.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!tel:+81300000008!" .

; +81300000009: RFC 3761 spellings: upper case, several enumservices in one
; field; another delimiter, the i flag, two back-references, sips.
9.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "U" "E2U+voice:tel+SIP" "#^\\+81(3)(.*)$#sips:\\2@b.test;area=\\1#i" .

; +81300000010: six non-terminal records in a row (too many);
; +81300000011: five (enough).
0.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" hop1
1.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" hop2
hop1 IN NAPTR 10 100 "" "E2U+sip" "" hop2
hop2 IN NAPTR 10 100 "" "E2U+sip" "" hop3
hop3 IN NAPTR 10 100 "" "E2U+sip" "" hop4
hop4 IN NAPTR 10 100 "" "E2U+sip" "" hop5
hop5 IN NAPTR 10 100 "" "E2U+sip" "" hop6
hop6 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:far@b.test!" .

; +81300000012: CR LF from DNS, in a result and in a regexp.
2.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:x@b.test\013\010Via: evil!" .
2.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 200 "u" "E2U+sip" "!^(\013\010.*$!sip:y@b.test!" .

; +81300000013: a non-terminal record to a name that does not exist, then
; a good record; +81300000014: only the first.
3.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" nowhere
3.1.0.0.0.0.0.0.3.1.8 IN NAPTR 20 100 "u" "E2U+sip" "!^.*$!sip:back@b.test!" .
4.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" nowhere

; +81300000018: two non-terminal records to the same name that does not
; exist (asked once), then a good record.
8.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "" nowhere
8.1.0.0.0.0.0.0.3.1.8 IN NAPTR 20 100 "" "" "" nowhere
8.1.0.0.0.0.0.0.3.1.8 IN NAPTR 30 100 "u" "E2U+sip" "!^.*$!sip:diamond@b.test!" .

; +81300000016: E2U+pstn:sip (RFC 4769) is not the SIP enumservice.
6.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+pstn:sip" "!^.*$!sip:+81300000016@gw.test;npdi!" .

; +81300000017: a non-terminal record whose regexp makes the next name.
7.1.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "" "E2U+sip" "!^\\+81(.*)$!\\1.re.e164.lab.!" .
300000017.re IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:regexp@b.test!" .
`

// enumAltZone is a second tree, asked after e164.lab.
const enumAltZone = `$ORIGIN e164.alt.
$TTL 60
@ IN SOA ns.e164.alt. hostmaster.e164.alt. 1 3600 600 86400 30
@ IN NS ns
ns IN A 127.0.0.1
9.9.9.9.9.9.9.9.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:alt@b.test!" .
8.7.6.5.4.3.2.1.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:shadowed@b.test!" .
4.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:dave@alt.test!" .
1.0.0.0.0.0.0.0.3.1.8 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:fixed@alt.test!" .
`

var enumZones = map[string]string{"e164.lab": enumZone, "e164.alt": enumAltZone}

// enumCase is one ENUM look-up, checked against any server that serves
// enumZones.
type enumCase struct {
	name     string
	number   string
	suffixes []string // default e164.lab
	want     string   // the URI
	wantErr  error
	steps    []string // lines Steps must hold, in this order
}

var enumCases = []enumCase{
	{name: "RFC6116_terminal_u_record", number: "+81312345678", want: "sip:bob@b.test", steps: []string{
		"8.7.6.5.4.3.2.1.3.1.8.e164.lab NAPTR: 2 record(s)",
		`skip 8.7.6.5.4.3.2.1.3.1.8.e164.lab. 60 IN NAPTR 10 50 "u" "E2U+mailto" "!^.*$!mailto:bob@b.test!" .: service "E2U+mailto" is not E2U+sip`,
		`use 8.7.6.5.4.3.2.1.3.1.8.e164.lab. 60 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:bob@b.test!" .: sip:bob@b.test`,
	}},
	{name: "RFC3966_visual_separators", number: "+81-3-(1234).5678", want: "sip:bob@b.test"},
	{name: "RFC3402_backreference", number: "+81300000006", want: "sip:300000006@b.test"},
	{name: "RFC3403_order_then_preference", number: "+81300000005", want: "sip:erin@b.test", steps: []string{
		"5.0.0.0.0.0.0.0.3.1.8.e164.lab NAPTR: 4 record(s)",
		`skip 5.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 10 10 "z" "E2U+sip" "!^.*$!sip:zed@b.test!" .: flags "z": ENUM knows only "u" (terminal) and "" (non-terminal)`,
		`skip 5.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 10 20 "u" "E2U+sip" "!^\\+1(.*)$!sip:wrong@b.test!" .: NAPTR regexp "!^\\+1(.*)$!sip:wrong@b.test!" does not match "+81300000005"`,
		`use 5.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 20 10 "u" "E2U+sip" "!^\\+81(.*)$!sip:erin@b.test!" .: sip:erin@b.test`,
		`unused 5.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 30 10 "u" "E2U+sip" "!^.*$!sip:last@b.test!" .`,
	}},
	{name: "RFC3761_upper_case_service_list_i_flag_sips", number: "+81300000009", want: "sips:00000009@b.test;area=3"},
	{name: "RFC3402_non_terminal_replacement", number: "+81300000007", want: "sip:81300000007@carrier.test;user=phone", steps: []string{
		`follow 7.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 10 100 "" "E2U+sip" "" carrier.e164.lab.: non-terminal, on to carrier.e164.lab`,
		"carrier.e164.lab NAPTR: 1 record(s)",
	}},
	{name: "RFC3403_non_terminal_regexp", number: "+81300000017", want: "sip:regexp@b.test"},
	{name: "five_non_terminal_records_are_enough", number: "+81300000011", want: "sip:far@b.test"},
	{name: "non_terminal_to_nowhere_then_the_next_record", number: "+81300000013", want: "sip:back@b.test", steps: []string{
		"nowhere.e164.lab NAPTR: NXDOMAIN",
		`use 3.1.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 20 100 "u" "E2U+sip" "!^.*$!sip:back@b.test!" .: sip:back@b.test`,
	}},
	{name: "a_name_tried_once", number: "+81300000018", want: "sip:diamond@b.test", steps: []string{
		"nowhere.e164.lab NAPTR: NXDOMAIN",
		`skip 8.1.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 20 100 "" "" "" nowhere.e164.lab.: nowhere.e164.lab was looked up already, without a URI`,
		`use 8.1.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 30 100 "u" "E2U+sip" "!^.*$!sip:diamond@b.test!" .: sip:diamond@b.test`,
	}},
	{name: "no_NAPTR_NXDOMAIN", number: "+81399999999", wantErr: ErrENUMNoRecord, steps: []string{
		"9.9.9.9.9.9.9.9.3.1.8.e164.lab NAPTR: NXDOMAIN",
	}},
	{name: "no_NAPTR_NODATA", number: "+8", wantErr: ErrENUMNoRecord, steps: []string{
		"8.e164.lab NAPTR: no records of this type",
	}},
	{name: "mailto_only", number: "+81300000004", wantErr: ErrENUMNoRecord},
	{name: "RFC4769_pstn_sip_is_not_sip", number: "+81300000016", wantErr: ErrENUMNoRecord},
	{name: "bad_regexp", number: "+81300000001", wantErr: ErrENUMBadRecord},
	{name: "RFC3764_result_not_a_SIP_URI", number: "+81300000008", wantErr: ErrENUMBadRecord},
	{name: "non_terminal_to_nowhere_only", number: "+81300000014", wantErr: ErrENUMBadRecord},
	{name: "CR_LF_from_DNS", number: "+81300000012", wantErr: ErrENUMBadRecord},
	{name: "RFC3402_loop", number: "+81300000002", wantErr: ErrENUMLoop, steps: []string{
		`follow 2.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 10 100 "" "E2U+sip" "" 3.0.0.0.0.0.0.0.3.1.8.e164.lab.: non-terminal, on to 3.0.0.0.0.0.0.0.3.1.8.e164.lab`,
		`skip 3.0.0.0.0.0.0.0.3.1.8.e164.lab. 60 IN NAPTR 10 100 "" "E2U+sip" "" 2.0.0.0.0.0.0.0.3.1.8.e164.lab.: 2.0.0.0.0.0.0.0.3.1.8.e164.lab is already on the way here: a loop`,
	}},
	{name: "six_non_terminal_records_are_a_loop", number: "+81300000010", wantErr: ErrENUMLoop},
	{name: "next_suffix_when_the_first_has_nothing", number: "+81399999999", suffixes: []string{"e164.lab", "e164.alt"}, want: "sip:alt@b.test", steps: []string{
		"no E2U+sip record under e164.lab: next suffix",
		"9.9.9.9.9.9.9.9.3.1.8.e164.alt NAPTR: 1 record(s)",
	}},
	{name: "first_suffix_wins", number: "+81312345678", suffixes: []string{"e164.lab", "e164.alt"}, want: "sip:bob@b.test"},
	{name: "next_suffix_when_the_first_has_no_SIP_record", number: "+81300000004", suffixes: []string{"E164.Lab.", "e164.alt"}, want: "sip:dave@alt.test"},
	{name: "a_bad_record_ends_the_look_up", number: "+81300000001", suffixes: []string{"e164.lab", "e164.alt"}, wantErr: ErrENUMBadRecord},
	{name: "nothing_under_either", number: "+81300000016", suffixes: []string{"e164.lab", "e164.alt"}, wantErr: ErrENUMNoRecord},
}

func runENUMCases(t *testing.T, addr string) {
	for _, c := range enumCases {
		t.Run(c.name, func(t *testing.T) {
			r := newResolver(t, addr)
			suffixes := c.suffixes
			if suffixes == nil {
				suffixes = []string{"e164.lab"}
			}
			for pass := range 2 { // cold, then cached
				res, err := r.ENUM(context.Background(), c.number, suffixes)
				if pass == 0 {
					t.Logf("ENUM(%s) = %q, %v\n  %s", c.number, res.URI, err, strings.Join(res.Steps, "\n  "))
				}
				if c.wantErr != nil {
					if !errors.Is(err, c.wantErr) {
						t.Fatalf("pass %d: ENUM(%s) = %q, %v; want error %v\n%s", pass, c.number, res.URI, err, c.wantErr, strings.Join(res.Steps, "\n"))
					}
				} else if err != nil || res.URI != c.want {
					t.Fatalf("pass %d: ENUM(%s) = %q, %v; want %q\n%s", pass, c.number, res.URI, err, c.want, strings.Join(res.Steps, "\n"))
				}
				if !containsInOrder(res.Steps, c.steps) {
					t.Fatalf("pass %d: steps\n  %s\ndo not hold, in order,\n  %s", pass, strings.Join(res.Steps, "\n  "), strings.Join(c.steps, "\n  "))
				}
				text := strings.Join(res.Steps, "\n")
				if err != nil {
					text += err.Error()
				}
				if strings.ContainsAny(text, "\r\x00\x0b") || strings.Contains(strings.Join(res.Steps, ""), "\n") || strings.Contains(text, "evil\n") {
					t.Fatalf("pass %d: control characters from DNS in the steps or the error: %q", pass, text)
				}
			}
		})
	}
}

// containsInOrder reports whether every line of want is in got, in order.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestENUM(t *testing.T) {
	for _, s := range []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"LabServer", func(t *testing.T) string { return startLab(t, enumZones).Addr() }},
		{"Knot", func(t *testing.T) string { return testenv.StartKnot(t, enumZones) }},
	} {
		t.Run(s.name, func(t *testing.T) { runENUMCases(t, s.start(t)) })
	}
}

func TestENUMResult(t *testing.T) {
	l := startLab(t, enumZones)
	r := newResolver(t, l.Addr())
	res, err := r.ENUM(context.Background(), "+81 3 1234 5678", []string{"e164.lab"})
	if err != nil {
		t.Fatal(err)
	}
	want := ENUMResult{
		Number: "+81312345678",
		URI:    "sip:bob@b.test",
		Record: `8.7.6.5.4.3.2.1.3.1.8.e164.lab. 60 IN NAPTR 10 100 "u" "E2U+sip" "!^.*$!sip:bob@b.test!" .`,
	}
	if res.Number != want.Number || res.URI != want.URI || res.Record != want.Record {
		t.Errorf("ENUM = %+v\nwant %+v", res, want)
	}
}

func TestENUMErrorsSayWhat(t *testing.T) {
	l := startLab(t, enumZones)
	r := newResolver(t, l.Addr())
	for _, c := range []struct {
		number   string
		suffixes []string
		want     []string
	}{
		{"+81377777777", []string{"e164.lab", "e164.alt."}, []string{"resolver: ENUM +81377777777: nothing under e164.lab, e164.alt: no E2U+sip record"}},
		{"+81300000001", nil, []string{"resolver: ENUM +81300000001 under e164.lab: 1.0.0.0.0.0.0.0.3.1.8.e164.lab NAPTR 10 100: NAPTR regexp", "missing closing )", "no usable E2U+sip record"}},
		{"+81300000008", nil, []string{`result "tel:+81300000008" is not a sip: or sips: URI: no usable E2U+sip record`}},
		{"+81300000014", nil, []string{"nowhere.e164.lab NAPTR: NXDOMAIN: no usable E2U+sip record"}},
		{"+81300000012", nil, []string{`result "sip:x@b.test\r\nVia: evil" is not a SIP URI: byte 0x0d`, `\x0d\x0a`}},
		{"+81300000002", nil, []string{"resolver: ENUM +81300000002 under e164.lab: 3.0.0.0.0.0.0.0.3.1.8.e164.lab NAPTR 10 100 leads back to 2.0.0.0.0.0.0.0.3.1.8.e164.lab: ENUM loop"}},
		{"+81300000010", nil, []string{"resolver: ENUM +81300000010 under e164.lab: more than 5 non-terminal records followed, at hop5.e164.lab NAPTR 10 100: ENUM loop"}},
	} {
		suffixes := c.suffixes
		if suffixes == nil {
			suffixes = []string{"e164.lab"}
		}
		_, err := r.ENUM(context.Background(), c.number, suffixes)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("ENUM(%s): error %v does not say %q", c.number, err, w)
			}
		}
		if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("ENUM(%s): error %q holds CR or LF", c.number, err)
		}
	}
}

func TestENUMBadInput(t *testing.T) {
	r := newResolver(t, "127.0.0.1:1")
	for _, c := range []struct {
		number   string
		suffixes []string
		want     error
	}{
		{"81312345678", []string{"e164.arpa"}, ErrUnsupported},
		{"+81312345678\r\n", []string{"e164.arpa"}, ErrUnsupported},
		{"+81312345678", []string{"bad..suffix"}, ErrUnsupported},
		{"+81312345678", []string{"."}, ErrUnsupported},
		{"+81312345678", nil, ErrENUMNoRecord},
	} {
		_, err := r.ENUM(context.Background(), c.number, c.suffixes)
		if !errors.Is(err, c.want) {
			t.Errorf("ENUM(%q, %q): error %v, want %v", c.number, c.suffixes, err, c.want)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("ENUM(%q): error %q holds CR or LF", c.number, err)
		}
	}
}

// TestENUMDNSFailures: a DNS failure is the resolver's own error, not an
// ENUM verdict, so that the proxy answers 504 and not 404.
func TestENUMDNSFailures(t *testing.T) {
	dead := deadUpstream(t)
	r := newResolver(t, dead, WithTimeout(100*time.Millisecond))
	_, err := r.ENUM(context.Background(), "+81312345678", []string{"e164.lab"})
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrENUMNoRecord) || errors.Is(err, ErrENUMBadRecord) {
		t.Errorf("dead upstream: error %v, want a timeout and no ENUM verdict", err)
	}

	srv := &dns.Server{Net: "udp", Addr: "127.0.0.1:0", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	r = newResolver(t, srv.PacketConn.LocalAddr().String())
	_, err = r.ENUM(context.Background(), "+81312345678", []string{"e164.lab"})
	var le *LookupError
	if !errors.Is(err, ErrServFail) || !errors.As(err, &le) || le.Name != "8.7.6.5.4.3.2.1.3.1.8.e164.lab." || le.Type != "NAPTR" {
		t.Errorf("SERVFAIL: error %v, want a *LookupError for the number's NAPTR", err)
	}

	// A failure under the second suffix (here the lab server refuses a
	// zone it does not serve) is a failure, not "no record".
	l := startLab(t, enumZones)
	r = newResolver(t, l.Addr())
	_, err = r.ENUM(context.Background(), "+81399999999", []string{"e164.lab", "e164.arpa"})
	if !errors.Is(err, ErrRefused) {
		t.Errorf("refused under the second suffix: error %v, want REFUSED", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = newResolver(t, dead)
	if _, err := r.ENUM(ctx, "+81312345678", []string{"e164.lab"}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: error %v", err)
	}
}

func TestENUMUsesTheCache(t *testing.T) {
	l := startLab(t, enumZones)
	r := newResolver(t, l.Addr())
	for _, number := range []string{"+81300000007", "+81300000007", "+81399999999", "+81399999999"} {
		if _, err := r.ENUM(context.Background(), number, []string{"e164.lab"}); err != nil && !errors.Is(err, ErrENUMNoRecord) {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"7.0.0.0.0.0.0.0.3.1.8.e164.lab.", "carrier.e164.lab.", "9.9.9.9.9.9.9.9.3.1.8.e164.lab."} {
		if n := l.count(name, "NAPTR"); n != 1 {
			t.Errorf("%d NAPTR queries for %s, want 1 (the second look-up from the cache)", n, name)
		}
	}
}

func TestENUMRegexpCacheCap(t *testing.T) {
	r := newResolver(t, "127.0.0.1:1", WithMaxEntries(3))
	for i := range 10 {
		field := fmt.Sprintf("!^.*$!sip:%d@b.test!", i)
		for range 2 {
			s, err := r.subst(field)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := s.apply("+1"); got != fmt.Sprintf("sip:%d@b.test", i) {
				t.Fatalf("%s: %q", field, got)
			}
		}
	}
	if _, err := r.subst("!(!x!"); err == nil {
		t.Error("a broken field: no error")
	}
	if _, err := r.subst("!(!x!"); err == nil {
		t.Error("a broken field, from the cache: no error")
	}
	if n := len(r.substs); n > 3 {
		t.Errorf("%d regexp fields cached, cap 3", n)
	}
}

func TestNormalizeE164(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"+81312345678", "+81312345678", true},
		{"+81-3-1234-5678", "+81312345678", true},
		{"+81 (3) 1234.5678", "+81312345678", true},
		{" +1 ", "+1", true},
		{"+-1", "+1", true},
		{"+123456789012345", "+123456789012345", true},
		{"+1234567890123456", "", false}, // 16 digits
		{"81312345678", "", false},       // not global
		{"+", "", false},
		{"+--", "", false},
		{"", "", false},
		{"++1", "", false},
		{"1+1", "", false},
		{"+1a", "", false},
		{"tel:+1", "", false},
		{"+1;phone-context=x", "", false},
		{"+81\t3", "", false},
		{"+８1", "", false}, // a full-width digit
	} {
		got, ok := NormalizeE164(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("NormalizeE164(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestENUMNameRFC6116(t *testing.T) {
	for _, c := range []struct{ number, suffix, want string }{
		{"+81312345678", "e164.arpa", "8.7.6.5.4.3.2.1.3.1.8.e164.arpa."},
		{"+442079460148", "e164.arpa", "8.4.1.0.6.4.9.7.0.2.4.4.e164.arpa."}, // RFC 6116 §2.4
		{"+1", "E164.Lab.", "1.e164.lab."},
		{"+1", ".e164.lab", "1.e164.lab."},
	} {
		if got := ENUMName(c.number, c.suffix); got != c.want {
			t.Errorf("ENUMName(%q, %q) = %q, want %q", c.number, c.suffix, got, c.want)
		}
	}
}

// naptrRewriteCases are regexp fields as DNS carries them (the octets,
// after the zone file's escapes are undone).
var naptrRewriteCases = []struct {
	name, re, aus, want, wantErr string
}{
	{name: "RFC6116_example", re: `!^.*$!sip:info@example.com!`, aus: "+441632960083", want: "sip:info@example.com"},
	{name: "RFC3402_backrefs_nested_groups", re: `!(A(B(C)DE)(F)G)!\1|\2|\3|\4!`, aus: "ABCDEFG", want: "ABCDEFG|BCDE|C|F"},
	{name: "RFC3402_backref_without_group", re: `!(A(B(C)DE)(F)G)!\5!`, aus: "ABCDEFG", wantErr: `\5 but the expression has 4 group(s)`},
	{name: "RFC3402_backref_0_is_not_allowed", re: `!^(.*)$!\0!`, aus: "+1", wantErr: `\0 is no back-reference`},
	{name: "backref", re: `!^\+81(.*)$!sip:\1@b.test!`, aus: "+81312345678", want: "sip:312345678@b.test"},
	{name: "backref_of_a_group_that_did_not_take_part", re: `!^\+(1)?(.*)$!sip:\1x\2@b.test!`, aus: "+81", want: "sip:x81@b.test"},
	{name: "the_result_is_the_replacement_alone", re: `!\+81!sip:x@y.test!`, aus: "+81312345678", want: "sip:x@y.test"},
	{name: "other_delimiter", re: `#^\+(.*)$#sip:\1@b.test#`, aus: "+1", want: "sip:1@b.test"},
	{name: "escaped_delimiter_in_the_ERE", re: `/^\+1\/(.*)$/sip:\1@b.test/`, aus: "+1/2", want: "sip:2@b.test"},
	{name: "escaped_delimiter_that_is_meta", re: `|^a\|b$|x\|y|`, aus: "a|b", want: "x|y"},
	{name: "escaped_delimiter_that_is_a_letter", re: `x^a\xb$xokx`, aus: "axb", want: "ok"},
	{name: "escaped_delimiter_in_the_replacement", re: `!^.*$!sip:a\!b@b.test!`, aus: "+1", want: "sip:a!b@b.test"},
	{name: "backslash_in_the_replacement", re: `!^.*$!a\\b!`, aus: "+1", want: `a\b`},
	{name: "escaped_backslash_before_the_delimiter", re: `!^a\\!x!`, aus: `a\`, want: "x"},
	{name: "i_flag", re: `!^ABC$!sip:x@b.test!i`, aus: "abc", want: "sip:x@b.test"},
	{name: "I_flag", re: `!^ABC$!sip:x@b.test!I`, aus: "abc", want: "sip:x@b.test"},
	{name: "without_i_case_matters", re: `!^ABC$!sip:x@b.test!`, aus: "abc", wantErr: "does not match"},
	{name: "POSIX_leftmost_longest", re: `!(a|ab)!\1!`, aus: "ab", want: "ab"},
	{name: "empty_field", re: ``, aus: "+1", wantErr: "empty"},
	{name: "delimiter_only", re: `!`, aus: "+1", wantErr: "no second delimiter"},
	{name: "two_delimiters", re: `!a!b`, aus: "+1", wantErr: "no closing delimiter"},
	{name: "lone_backslash_escapes_the_last_delimiter", re: `!a!b\!`, aus: "+1", wantErr: "no closing delimiter"},
	{name: "four_delimiters", re: `!a!b!c!`, aus: "+1", wantErr: `flags "c!"`},
	{name: "unknown_flag", re: `!a!b!x`, aus: "+1", wantErr: `flags "x"`},
	{name: "digit_delimiter", re: `1a1b1`, aus: "+1", wantErr: "delimiter '1'"},
	{name: "backslash_delimiter", re: `\a\b\`, aus: "+1", wantErr: `delimiter '\\'`},
	{name: "i_delimiter", re: `iaibi`, aus: "+1", wantErr: "delimiter 'i'"},
	{name: "empty_ERE", re: `!!x!`, aus: "+1", wantErr: "empty regular expression"},
	{name: "ERE_Go_cannot_compile", re: `!^(.*$!x!`, aus: "+1", wantErr: "missing closing )"},
	{name: "ERE_back_reference", re: `!(a)\1!x!`, aus: "aa", wantErr: "invalid escape"},
	{name: "no_match", re: `!^\+1$!x!`, aus: "+2", wantErr: `does not match "+2"`},
	{name: "field_longer_than_DNS_carries", re: "!" + strings.Repeat("a", 300) + "!x!", aus: "a", wantErr: "at most 255"},
	{name: "result_longer_than_1024", re: `!^(.*)$!` + strings.Repeat(`\1`, 20) + `!`, aus: strings.Repeat("9", 60), wantErr: "longer than 1024"},
	{name: "control_characters_are_escaped_in_errors", re: "!^(\r\n!x!", aus: "+1", wantErr: `\x0d\x0a`},
}

func TestNAPTRRewrite(t *testing.T) {
	for _, c := range naptrRewriteCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := NAPTRRewrite(c.re, c.aus)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("NAPTRRewrite(%q, %q) = %q, %v; want an error with %q", c.re, c.aus, got, err, c.wantErr)
				}
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Fatalf("error %q holds CR or LF", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("NAPTRRewrite(%q, %q) = %q, %v; want %q", c.re, c.aus, got, err, c.want)
			}
		})
	}
}

func TestUnescapeString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`!^\\+81(.*)$!sip:\\1@b.test!`, `!^\+81(.*)$!sip:\1@b.test!`},
		{`a\"b`, `a"b`},
		{`\013\010`, "\r\n"},
		{`\255x`, "\xffx"},
		{`\256`, "256"},
		{`\12`, "12"},
		{`trailing\`, `trailing\`},
	} {
		if got := unescapeString(c.in); got != c.want {
			t.Errorf("unescapeString(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIsE2USIP(t *testing.T) {
	for _, c := range []struct {
		service string
		want    bool
	}{
		{"E2U+sip", true},
		{"e2u+SIP", true},
		{"E2U+sip:x", true},
		{"E2U+voice:tel+sip", true},
		{"E2U+sip+voice:tel", true},
		{"E2U+pstn:sip", false},
		{"E2U+mailto", false},
		{"E2U+sips", false},
		{"SIP+D2U", false},
		{"E2U", false},
		{"E2U+", false},
		{"sip", false},
		{"", false},
	} {
		if got := isE2USIP(c.service); got != c.want {
			t.Errorf("isE2USIP(%q) = %v, want %v", c.service, got, c.want)
		}
	}
}

func TestShownEscapesControlCharacters(t *testing.T) {
	if got := shown("a\r\nb\x7f\xffé"); got != `a\x0d\x0ab\x7f\xffé` {
		t.Errorf("shown = %q", got)
	}
	if got := clip(strings.Repeat("x", 1000)); len(got) != maxShown+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("clip of 1000 bytes: %d bytes", len(got))
	}
	if got := shown("plain"); got != "plain" {
		t.Errorf("shown = %q", got)
	}
}

// TestENUMZonesOfDeployLab looks the numbers of the lab's ENUM trees
// (deploy/lab/e164.lab.zone for the loopback tour, deploy/lab/netns/ for
// the namespace lab, whose broken records TestLabNumbers calls) up on
// sipfed's lab server and on Knot serving the same files: the same
// answer from both.
func TestENUMZonesOfDeployLab(t *testing.T) {
	root := testenv.RepoRoot(t)
	for _, c := range []struct {
		file   string
		number string
		uri    string // "": want err
		err    error
	}{
		{"deploy/lab/e164.lab.zone", "+81312345678", "sip:bob@b.test", nil},
		{"deploy/lab/netns/e164.lab.zone", "+81312345678", "sip:dave@b.test", nil},
		{"deploy/lab/netns/e164.lab.zone", "+81300000006", "sip:alice@a.test", nil},
		{"deploy/lab/netns/e164.lab.zone", "+81300000004", "sip:+81300000005@a.test;user=phone", nil},
		{"deploy/lab/netns/e164.lab.zone", "+81300000001", "", ErrENUMBadRecord},
		{"deploy/lab/netns/e164.lab.zone", "+81300000002", "", ErrENUMLoop},
		{"deploy/lab/netns/e164.lab.zone", "+81399999999", "", ErrENUMNoRecord},
	} {
		text, err := os.ReadFile(filepath.Join(root, c.file))
		if err != nil {
			t.Fatal(err)
		}
		zones := map[string]string{"e164.lab": string(text)}
		for name, addr := range map[string]func(t *testing.T) string{
			"LabServer": func(t *testing.T) string { return startLab(t, zones).Addr() },
			"Knot":      func(t *testing.T) string { return testenv.StartKnot(t, zones) },
		} {
			t.Run(name+"/"+filepath.Base(filepath.Dir(c.file))+"/"+c.number, func(t *testing.T) {
				r := newResolver(t, addr(t))
				res, err := r.ENUM(context.Background(), c.number, []string{"e164.lab"})
				if c.uri != "" && (err != nil || res.URI != c.uri) || c.uri == "" && !errors.Is(err, c.err) {
					t.Errorf("ENUM %s = %q, %v; want %q, %v\n%s", c.number, res.URI, err, c.uri, c.err, strings.Join(res.Steps, "\n"))
				}
			})
		}
	}
}

// TestENUMHostileZone: a zone whose owner wants the look-up to cost
// seconds and gigabytes (hundreds of records per name, each with a
// regular expression that expands to megabytes) gets a bad-record
// answer after a bounded number of records, none of them compiled big.
func TestENUMHostileZone(t *testing.T) {
	var z strings.Builder
	z.WriteString("$ORIGIN e164.lab.\n$TTL 60\n@ IN SOA ns.e164.lab. h.e164.lab. 1 3600 600 86400 60\n")
	big := strings.Repeat(".{1000}", 30)
	for i := range 200 {
		fmt.Fprintf(&z, "8.7.6.5.4.3.2.1.3.1.8 IN NAPTR 10 %d \"u\" \"E2U+sip\" \"!^%s(%d)?$!sip:x@b.test!\" .\n", i, big, i)
	}
	l := startLab(t, map[string]string{"e164.lab": z.String()})
	r := newResolver(t, l.Addr())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := r.ENUM(context.Background(), "+81312345678", []string{"e164.lab"})
	runtime.GC()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrENUMBadRecord) {
		t.Fatalf("ENUM = %q, %v; want a bad record", res.URI, err)
	}
	if !strings.Contains(strings.Join(res.Steps, "\n"), "expands to") {
		t.Errorf("steps do not say the expression was too big:\n%s", strings.Join(res.Steps, "\n"))
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Errorf("the heap grew by %d MB", grew>>20)
	}
	t.Logf("%v", err)

	// A repeat that a number needs stays allowed.
	got, err := NAPTRRewrite(`!^\+([0-9]{1,15})$!sip:\1@b.test!`, "+81312345678")
	if err != nil || got != "sip:81312345678@b.test" {
		t.Errorf("NAPTRRewrite with a counted repeat = %q, %v", got, err)
	}
}
