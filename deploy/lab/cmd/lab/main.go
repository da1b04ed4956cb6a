//go:build linux

// Command lab brings sipfed's network-namespace lab up, shows it and takes
// it down (deploy/lab/README.md):
//
//	go run ./deploy/lab/cmd/lab up [-prefix P] [-phones N] [-sipfed BIN] [-kamailio BIN] [-log-level L]
//	go run ./deploy/lab/cmd/lab status [PREFIX]
//	go run ./deploy/lab/cmd/lab down [PREFIX | -all]
//
// A lab brought up here outlives the command; its files (logs, users,
// Kamailio's configuration) are in /run/sipfed-lab/PREFIX until down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sipfed/sipfed/deploy/lab"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

const usage = `usage: lab up [-prefix P] [-phones N] [-sipfed BIN] [-kamailio BIN] [-log-level L]
       lab status [PREFIX]
       lab down [PREFIX | -all]`

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "up":
		return up(args[1:])
	case "status":
		p, err := one(args[1:])
		if err != nil {
			return err
		}
		return lab.Status(os.Stdout, p)
	case "down":
		if len(args) == 2 && args[1] == "-all" {
			for _, p := range lab.Labs() {
				fmt.Println("down", p)
				if err := lab.Down(p); err != nil {
					return err
				}
			}
			return nil
		}
		p, err := one(args[1:])
		if err != nil {
			return err
		}
		return lab.Down(p)
	}
	return errors.New(usage)
}

// one returns the prefix given, or the only lab there is.
func one(args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	if len(args) > 1 {
		return "", errors.New(usage)
	}
	labs := lab.Labs()
	switch len(labs) {
	case 0:
		return "", errors.New("no lab here")
	case 1:
		return labs[0], nil
	}
	return "", fmt.Errorf("several labs (%s): name one", strings.Join(labs, ", "))
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "name prefix of the lab (default: sfl and 4 random hex digits)")
	phones := fs.Int("phones", 4, "phone hosts p1…pN")
	sipfed := fs.String("sipfed", "", "the sipfed binary (default: built from this tree into the lab's folder)")
	kam := fs.String("kamailio", "", `the kamailio binary (default: kamailio in PATH or /usr/sbin); "none": no kam.test`)
	level := fs.String("log-level", "info", "the nodes' --log-level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *kam {
	case "none":
		*kam = ""
	case "":
		if p, err := exec.LookPath("kamailio"); err == nil {
			*kam = p
		} else if _, err := os.Stat("/usr/sbin/kamailio"); err == nil {
			*kam = "/usr/sbin/kamailio"
		} else {
			fmt.Fprintln(os.Stderr, "lab: kamailio not found: no kam.test (apt-get install kamailio)")
		}
	}
	if *prefix == "" {
		*prefix = lab.NewPrefix()
	}
	if *sipfed == "" {
		// Into the lab's folder, which down removes.
		*sipfed = filepath.Join(lab.StateDir, *prefix, "sipfed")
		root, err := lab.SourceRoot()
		if err != nil {
			return err
		}
		build := exec.Command("go", "build", "-o", *sipfed, "./cmd/sipfed")
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building sipfed: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Sipfed: *sipfed, Kamailio: *kam, Prefix: *prefix, Phones: *phones, LogLevel: *level, Detach: true,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		return err
	}
	if err := lab.Status(os.Stdout, l.Prefix); err != nil {
		return err
	}
	fmt.Printf("\nlab %s is up; users: ", l.Prefix)
	for _, u := range []string{"alice@a.test", "bob@a.test", "carol@a.test", "dave@b.test", "erin@kam.test", "frank@kam.test"} {
		fmt.Printf("%s (%s) ", u, lab.DefaultUsers[u])
	}
	fmt.Printf("\nrun a phone: echo bob-pw | ip netns exec %s-p1 %s phone --aor bob@a.test --password-stdin --listen 10.77.0.101:5060 answer\n", l.Prefix, *sipfed)
	fmt.Printf("logs: %s/logs; down: go run ./deploy/lab/cmd/lab down %s\n", l.Dir, l.Prefix)
	return nil
}
