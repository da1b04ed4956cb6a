//go:build !linux

// Command lab drives sipfed's network-namespace lab, which needs Linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "lab: network namespaces are Linux only")
	os.Exit(1)
}
