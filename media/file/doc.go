// Package file reads and writes the media files of sipfed's phone: WAV (PCM16,
// played at 8 kHz mono, resampled from 16, 44.1 or 48 kHz), Ogg/Opus
// (RFC 7845) and IVF (VP8) as packets, a tone generator, and a recorder that
// writes received G.711 through the jitter buffer with losses concealed.
package file
