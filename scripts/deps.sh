#!/usr/bin/env bash
# Installs the Debian packages sipfed's tests and demos use, when missing.
# Idempotent: does nothing when every tool is already there.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have sipp         || need+=(sip-tester)
have redis-server || need+=(redis-server)
have baresip      || need+=(baresip)
have linphonec    || need+=(linphone-cli)
have sipsak       || need+=(sipsak)
have tshark       || need+=(tshark)
have knotd        || need+=(knot)
have kdig         || need+=(knot-dnsutils)
have unbound      || need+=(unbound)
have dig          || need+=(dnsutils)
have svwar        || need+=(sipvicious)
have iptables     || need+=(iptables)
have chromium     || need+=(chromium)
have node         || need+=(nodejs)
have npm          || need+=(npm)
have systemd-analyze || need+=(systemd)
have kamailio     || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "deps: installing ${need[*]}"
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
