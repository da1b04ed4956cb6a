package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ssUser is the first process name in ss's users:(("name",pid=…)).
var ssUser = regexp.MustCompile(`users:\(\("([^"]+)"`)

// nsName is a lab namespace: the prefix, a dash, the host (or sw).
var nsName = regexp.MustCompile(`^([a-z][a-z0-9]{0,7})-([a-z0-9]+)$`)

// namespaces returns the lab's namespaces (every one named PREFIX-…).
func namespaces(prefix string) ([]string, error) {
	all, err := allNamespaces()
	var nss []string
	for _, ns := range all {
		if m := nsName.FindStringSubmatch(ns); m != nil && m[1] == prefix {
			nss = append(nss, ns)
		}
	}
	return nss, err
}

// allNamespaces lists /var/run/netns, where ip netns keeps them.
func allNamespaces() ([]string, error) {
	es, err := os.ReadDir("/var/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var nss []string
	for _, e := range es {
		nss = append(nss, e.Name())
	}
	return nss, err
}

// nsPids returns the processes in namespace ns.
func nsPids(ns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil && n != os.Getpid() {
			pids = append(pids, n)
		}
	}
	return pids
}

func readMarker(prefix string) (marker, error) {
	var m marker
	b, err := os.ReadFile(markerPath(prefix))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

// Down removes the lab prefix, whole or half built: it kills every process
// in its namespaces, deletes the namespaces (with them the veth pairs and
// the bridge), the /etc/netns folders, the marker and, if the lab made it,
// its folder. Removing a lab that is not there is no error.
func Down(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("lab: prefix %q", prefix)
	}
	nss, err := namespaces(prefix)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		n := 0
		for _, ns := range nss {
			for _, pid := range nsPids(ns) {
				syscall.Kill(pid, syscall.SIGKILL)
				n++
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("lab %s: %d processes survive SIGKILL", prefix, n))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ns := range nss {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", ns, err, strings.TrimSpace(string(out))))
		}
	}
	etc, _ := filepath.Glob(filepath.Join("/etc/netns", prefix+"-*"))
	for _, d := range etc {
		if nsName.MatchString(filepath.Base(d)) {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if m, err := readMarker(prefix); err == nil {
		if m.OwnDir && strings.HasPrefix(m.Dir, StateDir+"/") {
			os.RemoveAll(m.Dir)
		}
		os.Remove(markerPath(prefix))
	}
	return errors.Join(errs...)
}

// Labs returns the prefixes of the labs on this machine: those with a
// marker and those with namespaces.
func Labs() []string {
	seen := map[string]bool{}
	ms, _ := filepath.Glob(filepath.Join(StateDir, "*.json"))
	for _, m := range ms {
		p := strings.TrimSuffix(filepath.Base(m), ".json")
		if prefixRE.MatchString(p) {
			seen[p] = true
		}
	}
	nss, _ := allNamespaces()
	for _, ns := range nss {
		// Only the lab's shape: PREFIX-sw is the switch every lab has.
		if m := nsName.FindStringSubmatch(ns); m != nil && m[2] == "sw" {
			seen[m[1]] = true
		}
	}
	var ps []string
	for p := range seen {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Sweep removes the labs whose maker died without removing them (a test
// binary killed by its timeout): not detached, and its process is gone.
func Sweep() {
	for _, p := range Labs() {
		m, err := readMarker(p)
		if err == nil && !m.Detached && !alive(m.PID) {
			Down(p)
		}
	}
}

// Status writes every host of the lab prefix: namespace, address, the
// processes in it and the sockets they listen on.
func Status(w io.Writer, prefix string) error {
	nss, err := namespaces(prefix)
	if err != nil {
		return err
	}
	if len(nss) == 0 {
		return fmt.Errorf("lab %s: no namespaces", prefix)
	}
	m, merr := readMarker(prefix)
	switch {
	case merr != nil:
		fmt.Fprintf(w, "lab %s: no marker (%v): half built? `down %s` removes it\n", prefix, merr, prefix)
	default:
		state := "its maker runs"
		switch {
		case m.Detached:
			state = "detached"
		case !alive(m.PID):
			state = "its maker is gone: stale"
		}
		fmt.Fprintf(w, "lab %s: files in %s, made %s by pid %d (%s), subnet %s\n", prefix, m.Dir, m.Created.Format(time.RFC3339), m.PID, state, Subnet)
	}
	sort.Slice(nss, func(i, j int) bool {
		a, b := strings.TrimPrefix(nss[i], prefix+"-"), strings.TrimPrefix(nss[j], prefix+"-")
		return hostOrder(a) < hostOrder(b)
	})
	for _, ns := range nss {
		host := strings.TrimPrefix(ns, prefix+"-")
		if host == "sw" {
			out, _ := exec.Command("ip", "-n", ns, "-br", "link", "show", "master", "br0").Output()
			fmt.Fprintf(w, "\nswitch  %-15s bridge br0, %d ports\n", ns, len(strings.Split(strings.TrimSpace(string(out)), "\n")))
			continue
		}
		addr := "-"
		if out, err := exec.Command("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0").Output(); err == nil {
			if f := strings.Fields(string(out)); len(f) >= 4 {
				addr = f[3]
			}
		}
		link := "up"
		if out, _ := exec.Command("ip", "-n", ns, "-br", "link", "show", "dev", "eth0").Output(); !strings.Contains(string(out), "UP") {
			link = "DOWN (unplugged)"
		}
		fmt.Fprintf(w, "\n%-7s %-15s %-15s link %s\n", host, ns, addr, link)
		pids := nsPids(ns)
		if len(pids) == 0 {
			fmt.Fprintf(w, "  (no processes)\n")
		}
		for _, pid := range pids {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			args := strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " ")
			if len(args) > 110 {
				args = args[:110] + "…"
			}
			fmt.Fprintf(w, "  pid %-7d %s\n", pid, args)
		}
		out, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-lntupH").Output()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) >= 5 {
				proc := ""
				if m := ssUser.FindStringSubmatch(line); m != nil {
					proc = m[1]
				}
				fmt.Fprintf(w, "  listen %-4s %-22s %s\n", f[0], f[4], proc)
			}
		}
	}
	return nil
}
