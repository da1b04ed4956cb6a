package dtmf

import (
	"testing"
	"time"
)

// TestRFC4733EventPayload checks the layout of section 2.3: event, E bit,
// volume, duration.
func TestRFC4733EventPayload(t *testing.T) {
	b := Event{Code: 11, End: true, Volume: 10, Duration: 800}.Marshal(nil)
	want := []byte{11, 0x80 | 10, 0x03, 0x20}
	if string(b) != string(want) {
		t.Fatalf("marshal = %x, want %x", b, want)
	}
	var e Event
	if err := e.Unmarshal(b); err != nil || e.Code != 11 || !e.End || e.Volume != 10 || e.Duration != 800 {
		t.Fatalf("unmarshal = %+v, %v", e, err)
	}
	if err := e.Unmarshal(b[:3]); err != ErrShort {
		t.Fatalf("short payload: %v", err)
	}
}

func TestCodes(t *testing.T) {
	for i, d := range "0123456789*#ABCD" {
		c, err := Code(d)
		if err != nil || int(c) != i || Digit(c) != d {
			t.Errorf("digit %q: code %d, %v", d, c, err)
		}
	}
	if c, _ := Code('b'); c != 13 {
		t.Errorf("Code('b') = %d", c)
	}
	if _, err := Code('x'); err == nil {
		t.Error("Code('x') accepted")
	}
	if Digit(16) != 0 {
		t.Error("Digit(16) != 0")
	}
}

// TestRFC4733EndRedundancy checks section 2.5.1.4: three end packets with the
// final duration, the marker only on the first packet.
func TestRFC4733EndRedundancy(t *testing.T) {
	ps, err := Packets('5', 100*time.Millisecond, 8000, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4+EndRepeats {
		t.Fatalf("%d packets, want %d", len(ps), 4+EndRepeats)
	}
	for i, p := range ps {
		if p.Marker != (i == 0) {
			t.Errorf("packet %d marker %v", i, p.Marker)
		}
		if i < 4 && (p.Event.End || p.Event.Duration != uint16(160*(i+1))) {
			t.Errorf("packet %d = %+v", i, p.Event)
		}
		if i >= 4 && (!p.Event.End || p.Event.Duration != 800) {
			t.Errorf("end packet %d = %+v", i, p.Event)
		}
	}
	if _, err := Packets('5', 10*time.Millisecond, 8000, 20*time.Millisecond); err == nil {
		t.Error("duration shorter than interval accepted")
	}
	if _, err := Packets('5', 10*time.Second, 8000, 20*time.Millisecond); err == nil {
		t.Error("duration overflowing 16 bits accepted")
	}
}

func TestReceiver(t *testing.T) {
	var r Receiver
	var got []rune
	feed := func(ts uint32, e Event) {
		d, err := r.Receive(ts, e.Marshal(nil))
		if err != nil {
			t.Fatal(err)
		}
		if d != 0 {
			got = append(got, d)
		}
	}
	// '1' with all three end packets.
	for _, p := range mustPackets(t, '1') {
		feed(1000, p.Event)
	}
	// '2' whose end packets are all lost, then '3' complete, then a late
	// packet of '2'.
	ps2 := mustPackets(t, '2')
	for _, p := range ps2[:len(ps2)-EndRepeats] {
		feed(3000, p.Event)
	}
	for _, p := range mustPackets(t, '3') {
		feed(5000, p.Event)
	}
	feed(3000, ps2[len(ps2)-1].Event)
	if string(got) != "123" {
		t.Fatalf("digits %q, want \"123\"", string(got))
	}
}

func mustPackets(t *testing.T, d rune) []Packet {
	t.Helper()
	ps, err := Packets(d, 100*time.Millisecond, 8000, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}
