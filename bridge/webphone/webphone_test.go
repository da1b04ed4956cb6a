package webphone

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, mod func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestConfigJSON(t *testing.T) {
	both := Config{Domain: "a.test", WSPort: 8080, WSSPort: 8443}
	for _, tc := range []struct {
		name string
		cfg  Config
		host string
		tls  bool
		want string
	}{
		{"host with port", both, "a.test:9000", false, "ws://a.test:8080"},
		{"host without port", both, "a.test", false, "ws://a.test:8080"},
		{"ipv4", both, "127.0.0.1:9000", false, "ws://127.0.0.1:8080"},
		{"ipv6 with port", both, "[::1]:9000", false, "ws://[::1]:8080"},
		{"ipv6 without port", both, "[::1]", false, "ws://[::1]:8080"},
		{"tls prefers wss", both, "a.test:9443", true, "wss://a.test:8443"},
		{"tls without wss listener", Config{WSPort: 8080}, "a.test", true, "ws://a.test:8080"},
		{"only wss", Config{WSSPort: 8443}, "a.test", false, "wss://a.test:8443"},
		{"no listener", Config{}, "a.test", false, ""},
		{"explicit url", Config{WSPort: 8080, WSURL: "wss://sip.a.test/ws"}, "b.test", false, "wss://sip.a.test/ws"},
		{"bad host", both, "a.test/evil", false, ""},
		{"bad ipv6", both, "[zz::1]:80", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(t, Handler(tc.cfg), "/phone/config.json", func(r *http.Request) {
				r.Host = tc.host
				if tc.tls {
					r.TLS = &tls.ConnectionState{}
				}
			})
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got struct{ Domain, WS string }
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if got.WS != tc.want || got.Domain != tc.cfg.Domain {
				t.Errorf("got %+v, want ws %q domain %q", got, tc.want, tc.cfg.Domain)
			}
		})
	}
}

func TestPage(t *testing.T) {
	h := Handler(Config{Domain: "a.test", WSPort: 8080})
	for _, p := range []string{"/phone/", "/phone/index.html"} {
		rec := get(t, h, p, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d", p, rec.Code)
		}
		body := rec.Body.String()
		if Built() {
			if !strings.Contains(body, `src="vendor/jssip.js"`) || !strings.Contains(body, `src="phone.js"`) {
				t.Errorf("%s: the phone page does not load its scripts:\n%s", p, body)
			}
		} else if !strings.Contains(body, "The web phone is not built") || !strings.Contains(body, "make web") {
			t.Errorf("%s: no not-built notice:\n%s", p, body)
		}
		hd := rec.Header()
		if ct := hd.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", p, ct)
		}
		if hd.Get("Cache-Control") != "no-cache" || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, hd)
		}
		csp := hd.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "ws:", "wss:", "blob:"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", p, csp, want)
			}
		}
	}
}

func TestNotBuiltMessage(t *testing.T) {
	if !strings.Contains(notBuiltPage, "The web phone is not built: run <code>make web</code> (needs Node.js and npm) and rebuild sipfed.") {
		t.Errorf("not-built page: %s", notBuiltPage)
	}
}

func TestContentTypes(t *testing.T) {
	h := Handler(Config{})
	for p, want := range map[string]string{
		"/phone/phone.js":        "text/javascript; charset=utf-8",
		"/phone/stats.js":        "text/javascript; charset=utf-8",
		"/phone/sipjs-phone.js":  "text/javascript; charset=utf-8",
		"/phone/phone.css":       "text/css; charset=utf-8",
		"/phone/sipjs.html":      "text/html; charset=utf-8",
		"/phone/vendor/jssip.js": "text/javascript; charset=utf-8",
	} {
		rec := get(t, h, p, nil)
		if p == "/phone/vendor/jssip.js" && !Built() {
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s without the bundle: status %d", p, rec.Code)
			}
			continue
		}
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s: status %d, %d bytes", p, rec.Code, rec.Body.Len())
		}
		if ct := rec.Header().Get("Content-Type"); ct != want {
			t.Errorf("%s: Content-Type %q, want %q", p, ct, want)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", p)
		}
	}
}

func TestNotFound(t *testing.T) {
	h := Handler(Config{})
	for _, p := range []string{
		"/phone/../../etc/passwd",
		"/phone/..%2f..%2fetc%2fpasswd",
		"/phone/vendor/../../webphone.go",
		"/phone/vendor/README.md",
		"/phone/assets/index.html",
		"/phone//etc/passwd",
		"/phone/nothing.js",
		"/other/",
	} {
		rec := get(t, h, p, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, rec.Code)
		}
		if strings.Contains(rec.Body.String(), "root:") || strings.Contains(rec.Body.String(), "package webphone") {
			t.Errorf("%s escaped: %s", p, rec.Body)
		}
	}
	// Through a server and a mux, as sipfed mounts it.
	mux := http.NewServeMux()
	mux.Handle("/phone/", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, p := range []string{"/phone/../../etc/passwd", "/phone/%2e%2e/%2e%2e/etc/passwd"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.URL.Opaque = p // sent as is, not cleaned by the client
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(b), "root:") || strings.Contains(string(b), "package webphone") {
			t.Errorf("%s escaped: %s", p, b)
		}
	}
}

func TestMethodAndRedirect(t *testing.T) {
	h := Handler(Config{})
	req := httptest.NewRequest(http.MethodPost, "/phone/", strings.NewReader("x"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
	if rec := get(t, h, "/phone", nil); rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/phone/" {
		t.Errorf("/phone: status %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
	req = httptest.NewRequest(http.MethodHead, "/phone/phone.js", nil)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: status %d, %d bytes, Content-Length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}
