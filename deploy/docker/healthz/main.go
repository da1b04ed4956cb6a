// Command healthz asks sipfed's /healthz whether the node is up, for
// container health checks in images that have no shell, curl or wget
// (the sipfed image is FROM scratch). It exits 0 when the answer is
// 200, 1 otherwise (sipfed answers 503 while it drains).
//
//	healthz [URL]    (default http://127.0.0.1:8080/healthz)
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	url := "http://127.0.0.1:8080/healthz"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if err := check(url); err != nil {
		fmt.Fprintln(os.Stderr, "healthz:", err)
		os.Exit(1)
	}
}

// check GETs url once, never through an HTTP proxy from the environment;
// a health check that hangs is as bad as a failed one.
func check(url string) error {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
