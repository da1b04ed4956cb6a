package sipcore

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestSanitizeRemovesCRLFAndBounds(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                 "plain",
		"evil\r\nVia: injected": "evil  Via: injected",
		"tab\tand\x00nul\x7f":   "tab and nul ",
	} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Sanitize(strings.Repeat("a", 1000)); len(got) != 256 {
		t.Errorf("Sanitize kept %d bytes, want 256", len(got))
	}
}

// TestRFC3261_8_2_MalformedHeadersKeptFor400 checks that NewParser keeps a
// message whose To, From or Contact does not parse, so it can be answered
// 400 naming the header, where sipgo's parser would drop it silently.
func TestRFC3261_8_2_MalformedHeadersKeptFor400(t *testing.T) {
	base := "OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:b@a.test>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	for name, bad := range map[string]string{
		"To":      "To: <sip:b@a.test",
		"From":    "From: <<<",
		"Contact": "Contact: <sip:x",
	} {
		raw := base
		if name == "Contact" {
			raw = strings.Replace(raw, "Content-Length", bad+"\r\nContent-Length", 1)
		} else {
			raw = strings.Replace(raw, map[string]string{"To": "To: <sip:b@a.test>", "From": "From: <sip:a@a.test>;tag=1"}[name], bad, 1)
		}
		msg, err := NewParser().ParseSIP([]byte(raw))
		if err != nil {
			t.Fatalf("%s: parser dropped the message: %v", name, err)
		}
		err = CheckRequest(msg.(*sip.Request))
		if se := AsStatus(err); err == nil || se.Code != 400 || se.Reason != "Malformed "+name+" header" {
			t.Errorf("%s: %v", name, err)
		}
	}
	msg, err := NewParser().ParseSIP([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRequest(msg.(*sip.Request)); err != nil {
		t.Fatalf("good request: %v", err)
	}
}

func TestResponseCarriesStatusAndHeaders(t *testing.T) {
	msg, _ := NewParser().ParseSIP([]byte("OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:b@a.test>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	res := Response(msg.(*sip.Request), Errorf(423, "Interval Too Brief").With(sip.NewHeader("Min-Expires", "60")))
	if res.StatusCode != 423 || res.GetHeader("Min-Expires").Value() != "60" {
		t.Fatalf("%s", res)
	}
	if Response(msg.(*sip.Request), errString("boom")).StatusCode != 500 {
		t.Fatal("a plain error must be 500")
	}
}

type errString string

func (e errString) Error() string { return string(e) }
