package auth

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// FileSecret returns the nonce secret kept in the file at path, writing
// fresh there (mode 0600) when the file does not exist yet, so that a
// node without Redis keeps its secret across restarts: its nonces stay
// valid and, as the proxy signs its Record-Route with the same secret,
// calls in progress can still be hung up after a restart.
func FileSecret(path string, fresh []byte) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if b = bytes.TrimSpace(b); len(b) >= 16 {
			return b, nil
		}
		return nil, fmt.Errorf("auth: secret file %s: shorter than 16 bytes", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("auth: secret file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Another process created it meanwhile.
		return FileSecret(path, fresh)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: secret file: %w", err)
	}
	if _, err := f.Write(append(append([]byte(nil), fresh...), '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("auth: secret file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("auth: secret file: %w", err)
	}
	return fresh, nil
}
