package auth

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFileSecretSurvivesRestart: the first call writes the secret (0600),
// the next returns it unchanged, whatever fresh secret it is offered.
func TestFileSecretSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.txt.secret")
	first, err := FileSecret(path, []byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := FileSecret(path, []byte("another-fresh-secret-xx"))
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != "0123456789abcdef0123" || string(again) != string(first) {
		t.Fatalf("first %q, again %q", first, again)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode().Perm(), err)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FileSecret(path, []byte("0123456789abcdef0123")); err == nil {
		t.Fatal("a secret shorter than 16 bytes was accepted")
	}
}
