// Package codec groups the audio codecs sipfed implements itself: G.711
// (subpackage g711) and RFC 4733 telephone events (subpackage dtmf). Opus
// and video are passed through untouched; nothing here transcodes them.
package codec
