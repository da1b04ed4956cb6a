// Package g711 encodes and decodes ITU-T G.711 µ-law (PCMU) and A-law (PCMA)
// with lookup tables, in 20 ms frames of 160 samples at 8 kHz.
// Payload types and names: https://www.rfc-editor.org/rfc/rfc3551#section-4.5.14
package g711
