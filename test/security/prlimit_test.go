package security

import (
	"syscall"
	"unsafe"
)

// prlimitNOFILE sets the open-file limit of a running process (prlimit(2)):
// the server starts with the test's limit and is then lowered, so no shell
// is needed to run it under `ulimit -n`.
func prlimitNOFILE(pid int, lim *syscall.Rlimit) error {
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_NOFILE), uintptr(unsafe.Pointer(lim)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
