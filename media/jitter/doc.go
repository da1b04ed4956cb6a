// Package jitter is the jitter buffer in front of audio playout and
// recording: it puts RTP packets back in sequence order, holds a few back to
// wait for late ones, and marks the ones that never came as lost so that the
// consumer conceals them (https://www.rfc-editor.org/rfc/rfc3550#section-6.4.1).
package jitter
