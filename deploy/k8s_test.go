package deploy_test

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// k8sObject is one document of a manifest.
type k8sObject struct {
	file string
	doc  map[string]any
}

func (o k8sObject) kind() string { return fmt.Sprint(o.doc["kind"]) }
func (o k8sObject) name() string { return fmt.Sprint(asMap(o.doc["metadata"])["name"]) }

// loadK8s reads every document of every manifest under k8s/.
func loadK8s(tr tree) ([]k8sObject, []error) {
	var objs []k8sObject
	var errs []error
	for _, f := range sortedKeys(tr) {
		if !strings.HasPrefix(f, "k8s/") || !(strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".yml")) {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(tr[f]))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", f, err))
				break
			}
			if doc == nil {
				continue
			}
			if doc["kind"] == nil || doc["apiVersion"] == nil {
				errs = append(errs, fmt.Errorf("%s: a document without kind or apiVersion", f))
				continue
			}
			objs = append(objs, k8sObject{f, doc})
		}
	}
	return objs, errs
}

// downward is what the smoke run stands in for a pod's downward API.
// (TEST-NET addresses: the smoke run rewrites them to loopback.)
var downward = map[string]string{"metadata.name": "sipfed-0", "status.podIP": "192.0.2.10", "status.hostIP": "192.0.2.1"}

// checkK8s checks each container that runs the sipfed image, and the
// objects around it: its ConfigMap, its probes and ports, the Services
// that select it, its pod's security and shutdown.
func checkK8s(tr tree, img image) ([]nodeConfig, []error) {
	objs, errs := loadK8s(tr)
	fail := func(src, format string, args ...any) { errs = append(errs, fmt.Errorf(src+": "+format, args...)) }
	byKind := map[string]map[string]k8sObject{}
	for _, o := range objs {
		if byKind[o.kind()] == nil {
			byKind[o.kind()] = map[string]k8sObject{}
		}
		byKind[o.kind()][o.name()] = o
		if o.kind() == "Kustomization" {
			for _, r := range asStrings(o.doc["resources"]) {
				if _, ok := tr[path.Join(path.Dir(o.file), r)]; !ok {
					fail(o.file, "resource %s does not exist", r)
				}
			}
		}
	}
	var nodes []nodeConfig
	for _, o := range objs {
		tmpl := asMap(asMap(o.doc["spec"])["template"])
		pod := asMap(tmpl["spec"])
		if pod == nil {
			continue
		}
		podLabels := asMap(asMap(tmpl["metadata"])["labels"])
		replicas, _ := asMap(o.doc["spec"])["replicas"].(int)
		for _, c := range asList(pod["containers"]) {
			c := asMap(c)
			if !strings.HasPrefix(fmt.Sprint(c["image"]), "sipfed") {
				continue
			}
			src := fmt.Sprintf("%s: %s %s, container %v", o.file, o.kind(), o.name(), c["name"])
			n, e := k8sContainer(src, byKind, pod, c, img)
			errs = append(errs, e...)
			nodes = append(nodes, n)
			ss := n.settings
			// Each replica needs its own name and address.
			for _, f := range []string{"node-id", "advertise"} {
				if replicas > 1 && !fromDownward(c, envName(f)) {
					fail(src, "%s: with %d replicas it must come from the downward API (fieldRef), one per pod", envName(f), replicas)
				}
			}
			ports := map[string]string{} // name and number → "port/proto"
			for _, p := range asList(c["ports"]) {
				p := asMap(p)
				proto := strings.ToLower(fmt.Sprint(p["protocol"]))
				if p["protocol"] == nil {
					proto = "tcp"
				}
				v := fmt.Sprintf("%v/%s", p["containerPort"], proto)
				ports[fmt.Sprint(p["containerPort"])+"/"+proto] = v
				if p["name"] != nil {
					ports[fmt.Sprint(p["name"])] = v
				}
			}
			ls, _ := listeners(ss)
			lowest := 65536
			for _, l := range ls {
				k := fmt.Sprintf("%d/%s", l.port, l.proto())
				if _, ok := ports[k]; !ok {
					fail(src, "--listen %s:%s:%d has no containerPort %s", l.transport, l.host, l.port, k)
				}
				lowest = min(lowest, l.port)
			}
			hp, _ := httpPort(ss)
			for _, probe := range []string{"readinessProbe", "livenessProbe"} {
				g := asMap(asMap(c[probe])["httpGet"])
				port := fmt.Sprint(g["port"])
				if v, ok := ports[port]; ok {
					port = strings.TrimSuffix(v, "/tcp")
				}
				if g == nil || g["path"] != "/healthz" || hp == 0 || port != strconv.Itoa(hp) {
					fail(src, "%s: want httpGet /healthz on the --http port (%d)", probe, hp)
				}
			}
			grace := 30 // Kubernetes' default
			if g, ok := pod["terminationGracePeriodSeconds"].(int); ok {
				grace = g
			}
			if drain, err := effDuration(ss, "drain"); err == nil && time.Duration(grace)*time.Second <= drain {
				fail(src, "terminationGracePeriodSeconds %d must be above --drain %v", grace, drain)
			}
			k8sSecurity(src, pod, c, img, lowest, fail)
			res := asMap(c["resources"])
			if asMap(res["requests"])["cpu"] == nil || asMap(res["requests"])["memory"] == nil || asMap(res["limits"])["memory"] == nil {
				fail(src, "resources: want cpu and memory requests and a memory limit (sipfed's soft memory limit is 90 %% of it)")
			}
			if store := effOne(ss, "store"); strings.HasPrefix(store, "redis") {
				u, err := url.Parse(store)
				if err != nil || byKind["Service"][u.Hostname()].doc == nil {
					fail(src, "--store %s: no Service of that name", store)
				}
			}
			// The Services that select these pods reach ports they have.
			for _, s := range byKind["Service"] {
				sel := asMap(asMap(s.doc["spec"])["selector"])
				if len(sel) == 0 || !selects(sel, podLabels) {
					continue
				}
				for _, p := range asList(asMap(s.doc["spec"])["ports"]) {
					p := asMap(p)
					proto := strings.ToLower(fmt.Sprint(p["protocol"]))
					if p["protocol"] == nil {
						proto = "tcp"
					}
					tp := p["targetPort"]
					if tp == nil {
						tp = p["port"]
					}
					v, ok := ports[fmt.Sprint(tp)]
					if !ok {
						v, ok = ports[fmt.Sprintf("%v/%s", tp, proto)]
					}
					if !ok || !strings.HasSuffix(v, "/"+proto) {
						fail(s.file, "Service %s: targetPort %v/%s is no port of %s", s.name(), tp, proto, src)
					}
				}
			}
		}
	}
	if len(nodes) == 0 {
		errs = append(errs, errors.New("k8s: no container runs the sipfed image"))
	}
	return nodes, errs
}

// selects reports whether a Service selector matches the pod labels.
func selects(sel, labels map[string]any) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func fromDownward(c map[string]any, env string) bool {
	for _, e := range asList(c["env"]) {
		e := asMap(e)
		if e["name"] == env {
			return asMap(asMap(e["valueFrom"])["fieldRef"])["fieldPath"] != nil
		}
	}
	return false
}

// k8sContainer gathers a sipfed container's settings: its args (or the
// image's CMD), env, envFrom, and the --config file from the ConfigMap
// mounted at that path.
func k8sContainer(src string, byKind map[string]map[string]k8sObject, pod, c map[string]any, img image) (nodeConfig, []error) {
	var errs []error
	if cmd := asStrings(c["command"]); cmd != nil && !slices.Equal(cmd, img.entrypoint) {
		errs = append(errs, fmt.Errorf("%s: command %q differs from the image's ENTRYPOINT %q", src, cmd, img.entrypoint))
	}
	argv := img.cmd
	if a, ok := c["args"]; ok {
		argv = asStrings(a)
	}
	var env []kv
	vars := map[string]string{}
	for _, ef := range asList(c["envFrom"]) {
		ref := fmt.Sprint(asMap(asMap(ef)["configMapRef"])["name"])
		cm := asMap(byKind["ConfigMap"][ref].doc["data"])
		if cm == nil {
			errs = append(errs, fmt.Errorf("%s: envFrom %v: no ConfigMap here to check its keys against sipfed's flags", src, ef))
		}
		for _, k := range sortedKeys(cm) {
			env = append(env, kv{k, fmt.Sprint(cm[k])})
			vars[k] = fmt.Sprint(cm[k])
		}
	}
	for _, e := range asList(c["env"]) {
		e := asMap(e)
		name, v := fmt.Sprint(e["name"]), fmt.Sprint(e["value"])
		vf := asMap(e["valueFrom"])
		switch {
		case vf["fieldRef"] != nil:
			fp := fmt.Sprint(asMap(vf["fieldRef"])["fieldPath"])
			var ok bool
			if v, ok = downward[fp]; !ok {
				errs = append(errs, fmt.Errorf("%s: %s: fieldRef %s is not one the check knows", src, name, fp))
			}
		case vf["secretKeyRef"] != nil:
			v = "secret-value-of-" + fmt.Sprint(asMap(vf["secretKeyRef"])["name"])
		case vf["configMapKeyRef"] != nil:
			r := asMap(vf["configMapKeyRef"])
			v = fmt.Sprint(asMap(byKind["ConfigMap"][fmt.Sprint(r["name"])].doc["data"])[fmt.Sprint(r["key"])])
		case e["value"] == nil:
			v = ""
		}
		v = os.Expand(strings.ReplaceAll(v, "$(", "${"), func(k string) string { return vars[k] })
		vars[name] = v
		env = append(env, kv{name, v})
	}
	ss, e := parseArgv(argv, src+": args")
	errs = append(errs, e...)
	es, e := parseEnv(env, src+": env")
	errs = append(errs, e...)
	ss = append(ss, es...)
	if cfg := effOne(ss, "config"); cfg != "" {
		text, where, ok := mountedConfigMapFile(byKind, pod, c, cfg)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: --config %s is no file of a ConfigMap mounted in the container", src, cfg))
		} else {
			cs, e := parseConfig([]byte(text), where)
			errs = append(errs, e...)
			ss = append(ss, cs...)
		}
	}
	n := nodeConfig{name: src, settings: ss}
	sc := asMap(c["securityContext"])
	n.readOnlyCwd = sc["readOnlyRootFilesystem"] == true
	return n, append(errs, checkNode(n)...)
}

// mountedConfigMapFile finds the ConfigMap entry a container sees at file.
func mountedConfigMapFile(byKind map[string]map[string]k8sObject, pod, c map[string]any, file string) (text, where string, ok bool) {
	vols := map[string]map[string]any{}
	for _, v := range asList(pod["volumes"]) {
		vols[fmt.Sprint(asMap(v)["name"])] = asMap(v)
	}
	for _, m := range asList(c["volumeMounts"]) {
		m := asMap(m)
		mp := fmt.Sprint(m["mountPath"])
		rel, err := filepath.Rel(mp, file)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		cmv := asMap(vols[fmt.Sprint(m["name"])]["configMap"])
		if cmv == nil {
			continue
		}
		cm := byKind["ConfigMap"][fmt.Sprint(cmv["name"])]
		data := asMap(cm.doc["data"])
		key := rel
		if items := asList(cmv["items"]); items != nil {
			key = ""
			for _, it := range items {
				if fmt.Sprint(asMap(it)["path"]) == rel {
					key = fmt.Sprint(asMap(it)["key"])
				}
			}
		}
		if s, found := data[key].(string); found {
			return s, fmt.Sprintf("%s: ConfigMap %s, %s", cm.file, cm.name(), key), true
		}
	}
	return "", "", false
}

// k8sSecurity checks the pod runs as the image's non-root user without
// privileges, and can bind its lowest SIP port.
func k8sSecurity(src string, pod, c map[string]any, img image, lowest int, fail func(string, string, ...any)) {
	psc, csc := asMap(pod["securityContext"]), asMap(c["securityContext"])
	get := func(k string) any {
		if v, ok := csc[k]; ok {
			return v
		}
		return psc[k]
	}
	if get("runAsNonRoot") != true {
		fail(src, "securityContext: want runAsNonRoot: true")
	}
	if uid, ok := get("runAsUser").(int); ok && (uid == 0 || uid != img.uid) {
		fail(src, "runAsUser %d: want the image's USER %d", uid, img.uid)
	}
	if csc["allowPrivilegeEscalation"] != false {
		fail(src, "securityContext: want allowPrivilegeEscalation: false")
	}
	if !slices.Contains(asStrings(asMap(csc["capabilities"])["drop"]), "ALL") {
		fail(src, "securityContext: want capabilities: {drop: [ALL]}")
	}
	if lowest >= 1024 {
		return
	}
	if pod["hostNetwork"] == true {
		fail(src, "hostNetwork with --listen port %d: a non-root process cannot bind it in the host's network namespace; use ports from 1024 up (published in SRV)", lowest)
		return
	}
	for _, s := range asList(psc["sysctls"]) {
		s := asMap(s)
		if s["name"] == "net.ipv4.ip_unprivileged_port_start" {
			if v, err := strconv.Atoi(fmt.Sprint(s["value"])); err == nil && v <= lowest {
				return
			}
		}
	}
	fail(src, "--listen port %d is below 1024: a non-root pod needs the sysctl net.ipv4.ip_unprivileged_port_start <= %d", lowest, lowest)
}
