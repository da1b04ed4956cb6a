#!/usr/bin/env bash
# Measures sipfed and Kamailio 5.6 (Debian's package) side by side in one
# sitting: REGISTER with digest auth (memory), a call through one proxy with
# proxy auth, and REGISTER with bindings in Redis (db_redis). Both get the
# same SIPp scenarios, users and rates, alternately at every rate; results
# go to bench-results/ (results.md, results.json, one SVG per workload).
# `make bench` runs it; see test/bench/compare.go for the method.
#
#   scripts/bench-kamailio.sh [go run ./test/bench flags...]
#   e.g. scripts/bench-kamailio.sh -quick
#        scripts/bench-kamailio.sh -workloads register -rates 1000,2000 -seconds 5
#
# Environment (optional, for older callers): RATES (REGISTER rates),
# CALL_RATES, SECONDS per rate (BENCH_SECONDS works too), KAMAILIO_CHILDREN.
#
# It installs kamailio and kamailio-redis-modules with apt-get when missing
# (as root, without starting the service); everything else (Kamailio's
# config from deploy/kamailio/*.cfg.tmpl, its db_text users, redis-server,
# SIPp) is started and stopped by the Go driver, on loopback only, every
# SIPp run bounded in count and time.
set -euo pipefail

# bash imports SECONDS from the environment and then counts up from it, so
# read it first thing; printenv sees it only when it was really passed in.
secs=$(printenv SECONDS || true)
secs=${BENCH_SECONDS:-${secs:-}}

cd "$(dirname "$0")/.."

log() { echo "bench-kamailio: $*" >&2; }

modules=/usr/lib/x86_64-linux-gnu/kamailio/modules
if command -v dpkg-architecture >/dev/null 2>&1; then
  modules=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/kamailio/modules
fi
need=()
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
[ -e "$modules/db_redis.so" ] || need+=(kamailio-redis-modules)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing ${need[*]}; run as root or: apt-get install ${need[*]}"
    exit 1
  fi
  log "installing ${need[*]}"
  # Keep the packages' postinst from starting the services: a policy-rc.d
  # that denies everything, only if the machine has none of its own (and
  # then removed again).
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  rc=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } || rc=$?
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" -ne 0 ]; then exit "$rc"; fi
fi
if ! kamailio -v 2>/dev/null | grep -q 'kamailio 5\.'; then
  log "warning: not Kamailio 5.x: $(kamailio -v 2>&1 | head -1)"
fi
command -v go >/dev/null 2>&1 || { log "go missing"; exit 1; }

args=()
[ -n "${RATES:-}" ] && args+=(-rates "$RATES")
[ -n "${CALL_RATES:-}" ] && args+=(-call-rates "$CALL_RATES")
[ -n "$secs" ] && args+=(-seconds "$secs")
[ -n "${KAMAILIO_CHILDREN:-}" ] && args+=(-kamailio-children "$KAMAILIO_CHILDREN")
exec go run ./test/bench -mode compare "${args[@]}" "$@"
