package deploy_test

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

var (
	sipfedVar = regexp.MustCompile(`\bSIPFED_[A-Z0-9_]+\b`)
	flagWord  = regexp.MustCompile(`^--[a-z][a-z0-9-]*$`)
)

// checkDocs checks every SIPFED_* name, and every flag given to a `sipfed
// serve` or `sipfed user` command, in the deployment files' prose,
// comments and examples (shell lines continued with \ count as one).
func checkDocs(tr tree) []error {
	var errs []error
	valid := map[string]bool{}
	for f := range serveFlags {
		if f != "config" || configFromEnv {
			valid[envName(f)] = true
		}
	}
	userFlags := map[string]bool{}
	for _, m := range regexp.MustCompile(`--[a-z][a-z0-9-]*`).FindAllString(userHelp, -1) {
		userFlags[m] = true
	}
	for _, f := range sortedKeys(tr) {
		lines := strings.Split(tr[f], "\n")
		for i := 0; i < len(lines); i++ {
			at, line := i+1, lines[i]
			for strings.HasSuffix(strings.TrimSpace(line), "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(strings.TrimSpace(line), "\\") + " " + lines[i]
			}
			for _, v := range sipfedVar.FindAllString(line, -1) {
				if !valid[v] {
					errs = append(errs, fmt.Errorf("%s:%d: %s is no variable sipfed serve reads", f, at, v))
				}
			}
			ws := strings.Fields(line)
			for j, w := range ws {
				if path.Base(strings.Trim(w, "`")) != "sipfed" || j+1 >= len(ws) {
					continue
				}
				sub := ws[j+1]
				for _, a := range ws[j+2:] {
					if a == "|" || a == "&&" || a == ";" || strings.HasPrefix(a, "`") {
						break
					}
					flag, _, _ := strings.Cut(strings.Trim(a, "`,.)"), "=")
					_, serveOK := serveFlags[strings.TrimPrefix(flag, "--")]
					switch {
					case flag == "--help" || !flagWord.MatchString(flag):
					case sub == "serve" && !serveOK:
						errs = append(errs, fmt.Errorf("%s:%d: sipfed serve %s: no such flag", f, at, flag))
					case sub == "user" && !userFlags[flag]:
						errs = append(errs, fmt.Errorf("%s:%d: sipfed user %s: no such flag", f, at, flag))
					}
					if strings.Contains(a, "`") {
						break // the end of an inline code span
					}
				}
			}
		}
	}
	return errs
}

// checkAll runs every check on tr and returns the node configurations
// found in it.
func checkAll(tr tree) (map[string][]nodeConfig, []error) {
	nodes := map[string][]nodeConfig{}
	sd, errs := checkSystemd(tr)
	nodes["systemd"] = []nodeConfig{sd}
	img, dn, e := checkDockerfile(tr)
	errs = append(errs, e...)
	nodes["docker"] = []nodeConfig{dn}
	cn, e := checkCompose(tr, img)
	errs = append(errs, e...)
	nodes["compose"] = cn
	kn, e := checkK8s(tr, img)
	errs = append(errs, e...)
	nodes["k8s"] = kn
	errs = append(errs, checkDocs(tr)...)
	return nodes, errs
}
