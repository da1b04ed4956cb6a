#!/usr/bin/env bash
# Measures Kamailio 5.6 (Debian's package) as a registrar with digest auth,
# with the same SIPp scenario, rates, users and result format as `make bench`
# uses for sipfed, so both can be compared in one run on one machine.
#
#   scripts/bench-kamailio.sh [PORT]
#
# Environment: RATES (default 250,500,1000,1500,2000,3000,4000,5000),
# SECONDS per rate (default 5; BENCH_SECONDS works too), KAMAILIO_CHILDREN
# (default 8, the Debian package's default). PORT defaults to a free one.
#
# It installs kamailio with apt-get when missing (without starting the
# service), writes deploy/kamailio/kamailio.cfg.tmpl filled in and a db_text
# subscriber table of u0001..u2000@a.test (password pw-uNNNN, stored as HA1)
# into a temp dir, starts kamailio on udp:127.0.0.1:PORT, checks that a wrong
# password is refused, then runs `go run ./test/bench -target ...`. Kamailio
# is stopped and the temp dir removed on exit. Loopback only; every SIPp run
# is bounded by the bench driver.
set -euo pipefail

# bash imports SECONDS from the environment and then counts up from it, so
# read it first thing; printenv sees it only when it was really passed in.
secs=$(printenv SECONDS || true)
secs=${BENCH_SECONDS:-${secs:-5}}
rates=${RATES:-250,500,1000,1500,2000,3000,4000,5000}
children=${KAMAILIO_CHILDREN:-8}
users=2000 # must match test/bench/main.go

cd "$(dirname "$0")/.."
root=$PWD

log() { echo "bench-kamailio: $*" >&2; }

if ! command -v kamailio >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    log "kamailio missing; run as root or: apt-get install kamailio"
    exit 1
  fi
  log "installing kamailio"
  # Keep the package's postinst from starting the service: a policy-rc.d
  # that denies everything, only if the machine has none of its own.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  rc=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends kamailio; } || rc=$?
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" -ne 0 ]; then exit "$rc"; fi
fi
if ! kamailio -v 2>/dev/null | grep -q 'kamailio 5\.'; then
  log "warning: not Kamailio 5.x: $(kamailio -v 2>&1 | head -1)"
fi
for t in sipp go python3; do
  command -v "$t" >/dev/null 2>&1 || { log "$t missing (scripts/deps.sh installs sipp)"; exit 1; }
done

free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=${1:-$(free_udp_port)}

work=$(mktemp -d /tmp/bench-kamailio.XXXXXX)
kpid=
cleanup() {
  if [ -n "$kpid" ] && kill -0 "$kpid" 2>/dev/null; then
    kill -TERM "$kpid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$kpid" 2>/dev/null || true
    wait "$kpid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# db_text: one file per table, first line the column definitions; the
# version table tells auth_db which schema version the subscriber table is
# (7 in 5.6, as in /usr/share/kamailio/dbtext/kamailio/version).
mkdir -p "$work/db" "$work/run"
python3 - "$work/db" "$users" <<'PY'
import hashlib, os, sys
d, n = sys.argv[1], int(sys.argv[2])
with open(os.path.join(d, "version"), "w") as f:
    f.write("table_name(string) table_version(int)\nsubscriber:7\n")
with open(os.path.join(d, "subscriber"), "w") as f:
    f.write("id(int,auto) username(string) domain(string) password(string,null) ha1(string) ha1b(string)\n")
    for i in range(1, n + 1):
        u = "u%04d" % i
        ha1 = hashlib.md5(f"{u}:a.test:pw-{u}".encode()).hexdigest()
        ha1b = hashlib.md5(f"{u}@a.test:a.test:pw-{u}".encode()).hexdigest()
        # The plaintext column stays empty (hence ",null" above, unlike the
        # packaged schema): only the HA1 is stored.
        f.write(f"{i}:{u}:a.test::{ha1}:{ha1b}\n")
PY

secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
sed -e "s|@PORT@|$port|g" -e "s|@DBDIR@|$work/db|g" -e "s|@CHILDREN@|$children|g" \
  -e "s|@SECRET@|$secret|g" deploy/kamailio/kamailio.cfg.tmpl >"$work/kamailio.cfg"
kamailio -c -f "$work/kamailio.cfg" >"$work/check.log" 2>&1 || {
  cat "$work/check.log" >&2
  exit 1
}

# -DD: stay in the foreground (the children are still forked); -E: log to
# stderr; 64 MB shared memory, 8 MB private per process (the defaults).
kamailio -f "$work/kamailio.cfg" -DD -E -Y "$work/run" -m 64 -M 8 >"$work/kamailio.log" 2>&1 &
kpid=$!

# Ready when it answers OPTIONS.
ready=
for _ in $(seq 50); do
  if ! kill -0 "$kpid" 2>/dev/null; then break; fi
  if python3 - "$port" <<'PY'; then ready=1; break; fi
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
lp = s.getsockname()[1]
s.settimeout(0.2)
msg = (f"OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-ping{lp}\r\n"
       f"Max-Forwards: 70\r\nFrom: <sip:ping@a.test>;tag={lp}\r\nTo: <sip:a.test>\r\n"
       f"Call-ID: ping-{lp}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
try:
    sys.exit(0 if s.recv(65535).startswith(b"SIP/2.0 200") else 1)
except socket.timeout:
    sys.exit(1)
PY
  sleep 0.1
done
if [ -z "$ready" ]; then
  log "kamailio did not answer OPTIONS on 127.0.0.1:$port"
  cat "$work/kamailio.log" >&2
  exit 1
fi
log "kamailio $(kamailio -v | sed -n 's/^version: kamailio \([^ ]*\).*/\1/p') on udp:127.0.0.1:$port, children=$children, pid $kpid"

# The baseline must do real auth: 20 REGISTERs with wrong passwords must
# all fail (the answer to the credentials is a 401 again, not the 200 the
# scenario expects), and 20 with the right ones must all succeed.
auth_check() { # inf-file expect-ok expect-failed
  local out ok failed
  out=$(cd "$work" && timeout 60 sipp "127.0.0.1:$port" -sf "$root/test/interop/testdata/register.xml" \
    -inf "$1" -i 127.0.0.1 -p "$(free_udp_port)" -m 20 -r 20 -rp 1000 -timeout 30s \
    -recv_timeout 3000 -nostdin 2>&1) || true
  ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $NF); print $NF}' <<<"$out")
  failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $NF); print $NF}' <<<"$out")
  if [ "${ok:-}" != "$2" ] || [ "${failed:-}" != "$3" ]; then
    log "auth check with $(basename "$1"): want $2 ok/$3 failed, got ${ok:-?} ok/${failed:-?} failed"
    printf '%s\n' "$out" | tail -40 >&2
    exit 1
  fi
}
{ echo SEQUENTIAL; for i in $(seq 1 20); do printf 'u%04d;pw-u%04d;a.test\n' "$i" "$i"; done; } >"$work/good.csv"
{ echo SEQUENTIAL; for i in $(seq 1 20); do printf 'u%04d;wrong-u%04d;a.test\n' "$i" "$i"; done; } >"$work/bad.csv"
auth_check "$work/bad.csv" 0 20
auth_check "$work/good.csv" 20 0
log "auth check passed: wrong passwords refused, right ones accepted"

go run ./test/bench -target "127.0.0.1:$port" -label kamailio -proc kamailio -rates "$rates" -seconds "$secs"

if ! kill -0 "$kpid" 2>/dev/null; then
  log "kamailio exited during the run"
  cat "$work/kamailio.log" >&2
  exit 1
fi
