package testenv

import (
	"bufio"
	"strconv"
	"strings"
)

// SIPpCounts reads the "Successful call" and "Failed call" counters
// (cumulative column) from the final screen SIPp prints.
func SIPpCounts(out string) (ok, failed int) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.FieldsFunc(line, func(r rune) bool { return r == '|' || r == ' ' })
		if len(f) < 3 {
			continue
		}
		n, _ := strconv.Atoi(f[len(f)-1])
		switch {
		case strings.Contains(line, "Successful call"):
			ok = n
		case strings.Contains(line, "Failed call"):
			failed = n
		}
	}
	return ok, failed
}
