// Package resolver finds the SIP servers of a domain the way a mail server
// finds an MX: NAPTR, then SRV, then A/AAAA, as RFC 3263 §4 says
// (https://www.rfc-editor.org/rfc/rfc3263#section-4), with the weighted
// order of RFC 2782 (https://www.rfc-editor.org/rfc/rfc2782), a cache that
// honours record TTLs and negative answers (RFC 2308,
// https://www.rfc-editor.org/rfc/rfc2308), and failover order for callers.
// It also maps telephone numbers to SIP URIs through ENUM (RFC 6116,
// https://www.rfc-editor.org/rfc/rfc6116, with the DDDS rules of RFC 3402
// and RFC 3403 and the E2U+sip service of RFC 3764), and holds LabServer,
// a small authoritative DNS server for labs and tests.
package resolver
