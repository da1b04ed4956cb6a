// Package location defines the location service of a domain: the bindings
// from an address-of-record to the contact addresses of its devices
// (RFC 3261 §10, §16.5), and the Store interface that keeps them.
//
// Implementations live in location/memory and location/redis; both must
// pass the conformance suite in location/storetest.
package location

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Sentinel errors returned by every Store. Callers map them to SIP status
// codes: ErrStaleCSeq → 400 (RFC 3261 §10.3 step 7), ErrTooManyContacts →
// 403, ErrUnavailable → 503 with Retry-After.
var (
	ErrStaleCSeq       = errors.New("location: CSeq not higher than the binding's for the same Call-ID")
	ErrTooManyContacts = errors.New("location: too many contacts for this address-of-record")
	ErrUnavailable     = errors.New("location: store unavailable")
)

// Binding is one registered contact of an address-of-record.
type Binding struct {
	// AOR is the canonical address-of-record, "user@domain" (domain lower-case).
	AOR string `json:"aor"`
	// Contact is the contact URI exactly as registered, without header
	// parameters (q, expires, +sip.instance, reg-id).
	Contact string `json:"contact"`
	// InstanceID is the +sip.instance value (RFC 5626), without quotes and angle brackets.
	InstanceID string `json:"instance,omitempty"`
	// RegID is the reg-id parameter (RFC 5626); 0 when absent.
	RegID int `json:"reg_id,omitempty"`
	// Q is the contact's preference in thousandths (q=0.5 → 500); 1000 when absent.
	Q int `json:"q"`
	// Expires is the absolute time at which the binding ends.
	Expires time.Time `json:"expires"`
	// CallID and CSeq are those of the REGISTER that last touched the binding.
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Path holds the Path header values of the REGISTER (RFC 3327), in order.
	Path []string `json:"path,omitempty"`
	// Received is the source address "ip:port" the REGISTER came from and
	// Transport its transport ("udp", "tcp", "tls", "ws", "wss"): the flow
	// that reaches a device behind NAT (RFC 3581, RFC 5626).
	Received  string `json:"received,omitempty"`
	Transport string `json:"transport,omitempty"`
	// NAT is set when the device must be reached over the flow it
	// registered from (Received, Transport) rather than at its Contact:
	// it registered over a connection, or from behind a NAT.
	NAT bool `json:"nat,omitempty"`
	// NodeID names the sipfed node that accepted the registration.
	NodeID string `json:"node,omitempty"`
	// UserAgent is the User-Agent header of the REGISTER.
	UserAgent string `json:"ua,omitempty"`
}

// Key identifies the device a binding belongs to: its instance and reg-id
// when it sent +sip.instance (RFC 5626 §6), its contact URI otherwise.
func (b *Binding) Key() string {
	if b.InstanceID != "" {
		return "i:" + b.InstanceID + ";" + strconv.Itoa(b.RegID)
	}
	return "c:" + b.Contact
}

// Update is one REGISTER's change to an address-of-record, applied
// atomically by Store.Update: either all of it takes effect or, when it
// fails, none of it.
type Update struct {
	// CallID and CSeq of the REGISTER. For every binding the update touches
	// (by Set, Remove or RemoveAll) that already exists with the same
	// Call-ID, a CSeq that is not higher aborts the whole update with
	// ErrStaleCSeq (RFC 3261 §10.3 steps 6 and 7). The store records them
	// in every binding it sets, whatever Binding.CallID and Binding.CSeq say.
	CallID string
	CSeq   uint32
	// Now is the time the update is made at; bindings whose Expires is not
	// after Now are treated as absent, and a Set binding that is already
	// expired acts as a removal. Bindings set by one update count as more
	// recently updated than those set at an earlier Now.
	Now time.Time
	// RemoveAll removes every binding of the AOR (Contact: *, Expires: 0)
	// before Set is applied.
	RemoveAll bool
	// Set adds or refreshes bindings, keyed by Binding.Key; Remove removes
	// the bindings with these keys (expires=0). A key both set and removed
	// is removed. The store sets Binding.AOR to the updated AOR and keeps
	// Expires at millisecond precision.
	Set    []Binding
	Remove []string
	// MaxContacts bounds the bindings the AOR may hold after the update;
	// 0 means no bound. An update that would leave more than MaxContacts
	// bindings, and more than the AOR held before, fails with
	// ErrTooManyContacts; so refreshing, or replacing one device by another,
	// still works when a lowered bound is already exceeded.
	MaxContacts int
}

// Store keeps bindings. Every method is safe for concurrent use.
type Store interface {
	// Update applies u to aor and returns the bindings current afterwards,
	// in Lookup order.
	Update(ctx context.Context, aor string, u Update) ([]Binding, error)
	// Lookup returns aor's current (unexpired) bindings, highest q first
	// and, among equal q, the most recently updated first. An unknown AOR
	// has no bindings and is not an error.
	Lookup(ctx context.Context, aor string) ([]Binding, error)
	// Close releases the store's resources.
	Close() error
}
