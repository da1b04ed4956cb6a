package file

import "errors"

var (
	// ErrNotWAV is returned for a file that is not RIFF/WAVE.
	ErrNotWAV = errors.New("file: not a RIFF WAVE file")
	// ErrWAVFormat is returned for WAV data other than 16-bit PCM, 1 or 2
	// channels, at a supported rate.
	ErrWAVFormat = errors.New("file: unsupported WAV format")
)
