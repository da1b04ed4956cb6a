package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/sipfed/sipfed/internal/testenv"
)

// TestREADMEConfigurationMatchesHelp checks that the table of `sipfed
// serve` in the README's configuration reference lists exactly the flags
// that `sipfed serve --help` prints, each row's SIPFED_ variables (if it
// shows any) matching its flags.
func TestREADMEConfigurationMatchesHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d\n%s", code, stderr)
	}
	helpFlag := regexp.MustCompile(`^  --([a-z0-9][a-z0-9-]*)`)
	inHelp := map[string]bool{}
	for _, l := range strings.Split(stdout, "\n") {
		if m := helpFlag.FindStringSubmatch(l); m != nil {
			inHelp[m[1]] = true
		}
	}
	if len(inHelp) == 0 {
		t.Fatalf("no flags in serve --help:\n%s", stdout)
	}

	path := filepath.Join(testenv.RepoRoot(t), "README.md")
	rows := readmeTable(t, path, "## Configuration reference", "### `sipfed serve`")
	if len(rows) == 0 {
		t.Fatalf("%s: no table under \"## Configuration reference\", \"### `sipfed serve`\"", path)
	}
	cellFlag := regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`)
	envVar := regexp.MustCompile(`SIPFED_[A-Z0-9_]+`)
	inREADME := map[string]bool{}
	for _, row := range rows {
		cells := strings.Split(strings.Trim(row, "| "), "|")
		flags := map[string]bool{}
		for _, m := range cellFlag.FindAllStringSubmatch(cells[0], -1) {
			flags[envName(m[1])] = true
			if inREADME[m[1]] {
				t.Errorf("README lists --%s twice", m[1])
			}
			inREADME[m[1]] = true
		}
		if len(flags) == 0 {
			t.Errorf("README row names no flag in its first column: %s", row)
		}
		for _, v := range envVar.FindAllString(row, -1) {
			if !flags[v] {
				t.Errorf("README row shows %s, which is not the variable of its flags: %s", v, row)
			}
		}
	}
	if missing := difference(inHelp, inREADME); len(missing) > 0 {
		t.Errorf("README's configuration reference lacks serve flags %s (see sipfed serve --help)", missing)
	}
	if extra := difference(inREADME, inHelp); len(extra) > 0 {
		t.Errorf("README's configuration reference lists flags serve does not have: %s", extra)
	}
}

// readmeTable returns the table rows, header and separator left out, of
// the first table after heading, then subheading, before the next heading.
func readmeTable(t *testing.T, path, heading, subheading string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []string
	state := 0 // 0: before heading, 1: before subheading, 2: in the section
	header := true
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case state == 0 && l == heading:
			state = 1
		case state == 1 && l == subheading:
			state = 2
		case state == 1 && strings.HasPrefix(l, "## "):
			return nil
		case state == 2 && strings.HasPrefix(l, "#"):
			return rows
		case state == 2 && strings.HasPrefix(l, "|"):
			if header {
				header = false
				continue
			}
			if strings.Trim(l, "|-: ") == "" {
				continue
			}
			rows = append(rows, l)
		case state == 2 && len(rows) > 0:
			return rows
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// difference returns the flags in a but not in b, sorted, with dashes.
func difference(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, "--"+k)
		}
	}
	sort.Strings(out)
	return out
}

// TestReadmeTable checks the README parser on a small document.
func TestReadmeTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	writeFile(t, path, "# x\n## Configuration reference\n| flag |\n|---|\n| `--other` |\n### `sipfed serve`\n\ntext\n\n| flag | default |\n|---|---|\n| `--a` / `--b` | 1 |\n| `--c X` | 2 |\n\nmore\n| `--d` |\n### next\n")
	rows := readmeTable(t, path, "## Configuration reference", "### `sipfed serve`")
	if strings.Join(rows, "\n") != "| `--a` / `--b` | 1 |\n| `--c X` | 2 |" {
		t.Errorf("rows %q", rows)
	}
}
