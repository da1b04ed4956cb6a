package deploy_test

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}`)

// interpolate applies Compose's ${VAR}, ${VAR-default} and
// ${VAR:-default} with nothing in the environment: the file must work
// as it is.
func interpolate(v any) any {
	switch x := v.(type) {
	case string:
		return composeVar.ReplaceAllString(x, "$3")
	case []any:
		for i := range x {
			x[i] = interpolate(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = interpolate(x[k])
		}
	}
	return v
}

// asMap, asList and asStrings read decoded YAML, nil for another shape.
func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asStrings(v any) []string {
	var out []string
	for _, x := range asList(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// checkCompose checks each service that runs the sipfed image: its
// command and environment, that nodes differ, that SIP ports are
// published as the same number, its health check and its stop grace.
func checkCompose(tr tree, img image) ([]nodeConfig, []error) {
	const file = "compose/compose.yaml"
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(file+": "+format, args...)) }
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(tr[file]), &doc); err != nil {
		fail("%v", err)
		return nil, errs
	}
	interpolate(doc)
	services := asMap(doc["services"])
	var nodes []nodeConfig
	nodeIDs := map[string]string{}
	for _, name := range sortedKeys(services) {
		svc := asMap(services[name])
		build := asMap(svc["build"])
		if !strings.HasPrefix(fmt.Sprint(svc["image"]), "sipfed") && build == nil {
			continue
		}
		src := file + ": " + name
		if build != nil {
			df := path.Join("compose", fmt.Sprint(build["context"]), fmt.Sprint(build["dockerfile"]))
			if path.Clean(df) != "../deploy/docker/Dockerfile" {
				fail("%s: build %s: want the repository root as context and deploy/docker/Dockerfile", name, df)
			}
		}
		if ep := asStrings(svc["entrypoint"]); ep != nil && !slices.Equal(ep, img.entrypoint) {
			fail("%s: entrypoint %q differs from the image's %q", name, ep, img.entrypoint)
		}
		argv := img.cmd
		if c, ok := svc["command"]; ok {
			if s, isStr := c.(string); isStr {
				argv = words(s)
			} else {
				argv = asStrings(c)
			}
		}
		ss, e := parseArgv(argv, src+": command")
		errs = append(errs, e...)
		var env []kv
		switch x := svc["environment"].(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				env = append(env, kv{k, fmt.Sprint(x[k])})
			}
		case []any:
			for _, s := range asStrings(x) {
				k, v, _ := strings.Cut(s, "=")
				env = append(env, kv{k, v})
			}
		}
		es, e := parseEnv(env, src+": environment")
		errs = append(errs, e...)
		ss = append(ss, es...)
		if effOne(ss, "config") != "" {
			fail("%s: --config: the check does not follow files mounted into compose services; give flags and SIPFED_* here", name)
		}
		n := nodeConfig{name: src, settings: ss}
		errs = append(errs, checkNode(n)...)
		nodes = append(nodes, n)

		id := effOne(ss, "node-id")
		if other, dup := nodeIDs[id]; dup || id == "" {
			fail("%s: --node-id %q is not its own (also %s)", name, id, other)
		}
		nodeIDs[id] = name
		// In-dialog requests come back to the advertised host and the
		// listening port: the published port must be the same number.
		published := map[string]bool{}
		for _, p := range asList(svc["ports"]) {
			var hostP, ctrP, proto string
			if m := asMap(p); m != nil {
				hostP, ctrP, proto = fmt.Sprint(m["published"]), fmt.Sprint(m["target"]), fmt.Sprint(m["protocol"])
			} else {
				s, pr, _ := strings.Cut(fmt.Sprint(p), "/")
				f := strings.Split(s, ":")
				ctrP, proto = f[len(f)-1], pr
				if len(f) > 1 {
					hostP = f[len(f)-2]
				}
			}
			if proto == "" || proto == "<nil>" {
				proto = "tcp"
			}
			published[ctrP+"/"+proto] = hostP == ctrP
		}
		ls, _ := listeners(ss)
		for _, l := range ls {
			key := fmt.Sprintf("%d/%s", l.port, l.proto())
			same, ok := published[key]
			if !ok {
				fail("%s: --listen %s:%s:%d is not published", name, l.transport, l.host, l.port)
			} else if !same {
				fail("%s: --listen port %d is published on another host port: Via and Record-Route carry %d", name, l.port, l.port)
			}
		}
		hp, _ := httpPort(ss)
		test := asStrings(asMap(svc["healthcheck"])["test"])
		switch {
		case hp == 0:
			fail("%s: no --http, so no /healthz to check", name)
		case len(test) < 3 || test[0] != "CMD" || !img.files[test[1]] || hostPort(test[2]) != "127.0.0.1:"+strconv.Itoa(hp) || !strings.HasSuffix(test[2], "/healthz"):
			fail("%s: healthcheck %q: want [CMD, a probe in the image, http://127.0.0.1:%d/healthz]", name, test, hp)
		}
		if drain, err := effDuration(ss, "drain"); err == nil {
			if g, err := time.ParseDuration(fmt.Sprint(svc["stop_grace_period"])); err != nil || g <= drain {
				fail("%s: stop_grace_period %v must be above --drain %v (docker's default is 10s)", name, svc["stop_grace_period"], drain)
			}
		}
		// Every TCP connection is a descriptor (as in the unit).
		nofile, _ := strconv.Atoi(fmt.Sprint(asMap(svc["ulimits"])["nofile"]))
		if soft, ok := asMap(asMap(svc["ulimits"])["nofile"])["soft"].(int); ok {
			nofile = soft
		}
		maxConns, _ := strconv.Atoi(effOne(ss, "tcp-max-connections"))
		streams := 0
		for _, l := range ls {
			if l.proto() == "tcp" {
				streams++
			}
		}
		if maxConns <= 0 || nofile < maxConns*streams+1024 {
			fail("%s: ulimits nofile %d must exceed --tcp-max-connections (%d) times %d TCP listeners by 1024", name, nofile, maxConns, streams)
		}
		if store := effOne(ss, "store"); strings.HasPrefix(store, "redis") {
			if u, err := url.Parse(store); err != nil || services[u.Hostname()] == nil {
				fail("%s: --store %s: no service of that name in the file", name, store)
			}
		}
	}
	if len(nodes) < 2 {
		fail("want several sipfed nodes, found %d", len(nodes))
	}
	return nodes, errs
}
