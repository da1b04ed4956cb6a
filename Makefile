# sipfed — make run runs the demo (two domains, DNS, phones, a call) on embedded defaults; make test runs every test.
GO      ?= go
BIN     := bin/sipfed
PKGS    := ./...
export GOFLAGS ?= -buildvcs=false

.PHONY: all build run test test-unit deps vet bench fuzz clean web

all: build

# -buildvcs=auto: `sipfed --version` names the commit it was built from.
build: web
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/sipfed

# One domain (a.example) on 127.0.0.1:5060 UDP+TCP, memory store, users in ./users.txt.
run: build
	./$(BIN) demo

deps:
	./scripts/deps.sh

# The browser phone's JsSIP and SIP.js bundles (bridge/webphone/assets/vendor),
# embedded by the next Go build: npm ci from web/package-lock.json when
# node_modules is missing or stale, then esbuild; nothing when up to date.
WEB_VENDOR := bridge/webphone/assets/vendor
web:
	./web/build.sh

STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

vet: $(STATICCHECK)
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Every test: unit, conformance, integration and interop (SIPp, baresip, Redis, DNS).
# Set CI=1 (or SIPFED_INTEROP=1) to make a missing tool fail instead of skip.
test: deps web vet
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	# A count, not a duration: Go 1.26's fuzz coordinator can fail a
	# duration-bounded run with "context deadline exceeded" (go.dev/issue/75804).
	$(GO) test -run '^$$' -fuzz '^FuzzRequestPath$$' -fuzztime 300000x ./registrar

# Every fuzz target for FUZZTIME each (the request path, digest, SDP,
# WAV, zone files, DNS answers); findings land in testdata/fuzz. A run
# that ends with "context deadline exceeded" and writes no input there is
# Go 1.26's coordinator race (go.dev/issue/75804), not a finding; FUZZTIME
# may be a count (FUZZTIME=2000000x) to avoid it.
FUZZTIME ?= 2m
FUZZ_TARGETS := registrar:FuzzRequestPath registrar:FuzzRegister auth:FuzzParseAuthorization media/sdp:FuzzParseOffer \
	media/file:FuzzParseWAV resolver:FuzzZoneParse resolver:FuzzNAPTR resolver:FuzzAnswer resolver:FuzzNAPTRRewrite server:FuzzFromHost
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) ./$$pkg; done

test-unit:
	$(GO) test -count=1 -short $(PKGS)

# Go benchmarks, then sipfed and Kamailio 5.6 side by side in one sitting
# (scripts/bench-kamailio.sh → go run ./test/bench -mode compare):
# REGISTER with digest auth (memory), a call through one proxy with proxy
# auth, REGISTER with bindings in Redis; same SIPp scenarios and rates,
# alternating at every rate, up to where both have failed or the top rate.
# Tables and p99 charts (SVG) go to $(BENCH_OUT)/results.md. Then sipfed
# alone: calls through two federated proxies, REGISTER over three nodes
# on a Redis Cluster, one phone echoing calls,
# Redis memory per binding at a million bindings, and the 5-minute soak at
# 10,000 REGISTER/s (heap and goroutines every 10 s, docs/bench/soak.svg).
# BENCH_QUICK=1: 2 short rates per workload, a check that it all works.
BENCH_RATES ?= 2000,4000,8000,12000,16000,20000,24000,28000
BENCH_CALL_RATES ?= 500,1000,2000,3000,4000,4500,5000,5500,6000
BENCH_OUT ?= bench-results
ifneq ($(filter 1 yes true,$(BENCH_QUICK)),)
BENCH_FLAGS := -quick
BENCH_GO_FLAGS := -benchtime 100ms
BENCH_REDIS_BINDINGS := 100000
else
BENCH_FLAGS := -rates $(BENCH_RATES) -call-rates $(BENCH_CALL_RATES)
BENCH_GO_FLAGS :=
BENCH_REDIS_BINDINGS := 1000000
endif
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem $(BENCH_GO_FLAGS) $(PKGS)
	./scripts/bench-kamailio.sh $(BENCH_FLAGS) -out $(BENCH_OUT)
	$(GO) run ./test/bench -mode call2 $(BENCH_FLAGS)
	$(GO) run ./test/bench -mode cluster $(BENCH_FLAGS)
	$(GO) run ./test/bench -mode phone $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench RedisMemory -benchtime 1x ./location/redis -redis-bindings $(BENCH_REDIS_BINDINGS)
	$(GO) run ./test/bench -mode soak $(BENCH_FLAGS) -out $(BENCH_OUT)

# Also the generated web phone bundles (not web/node_modules: `make web` reuses it).
clean:
	rm -rf bin
	rm -f $(WEB_VENDOR)/jssip.js $(WEB_VENDOR)/sipjs.js $(WEB_VENDOR)/*.tmp.*
