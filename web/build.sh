#!/usr/bin/env bash
# Bundles the browser SIP stacks of the web phone (bridge/webphone) with esbuild:
#   jssip/lib/JsSIP.js -> bridge/webphone/assets/vendor/jssip.js  (global JsSIP)
#   sip.js             -> bridge/webphone/assets/vendor/sipjs.js  (global SIP)
# Runs `npm ci` only when node_modules is missing or older than package-lock.json,
# and bundles only when an output is missing or older than the lockfile or this
# script, so a second run does nothing. Needs Node.js and npm.
set -euo pipefail
cd "$(dirname "$0")"
out=../bridge/webphone/assets/vendor
outs=("$out/jssip.js" "$out/sipjs.js")

fresh() { # every output exists and is newer than the lockfile and this script
  local f
  for f in "${outs[@]}"; do
    [ -s "$f" ] && [ "$f" -nt package-lock.json ] && [ "$f" -nt build.sh ] || return 1
  done
}
if fresh; then exit 0; fi

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "web: Node.js and npm are needed to build the web phone (apt-get install nodejs npm)" >&2
  exit 1
fi

# npm ci writes node_modules/.package-lock.json: older than the lockfile means stale.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
   || [ ! -x node_modules/.bin/esbuild ]; then
  echo "web: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi

mkdir -p "$out"
bundle() { # entry global output: write to a temporary file, then rename, so a failed
  # build never leaves half a bundle for go:embed to pick up.
  local tmp="$3.tmp.$$"
  node_modules/.bin/esbuild "$1" --bundle --format=iife --global-name="$2" --minify \
    --platform=browser --legal-comments=eof --log-level=warning --outfile="$tmp"
  mv -f "$tmp" "$3"
}
bundle node_modules/jssip/lib/JsSIP.js JsSIP "$out/jssip.js"
bundle node_modules/sip.js/lib/index.js SIP "$out/sipjs.js"
echo "web: built $(cd "$out" && ls jssip.js sipjs.js | tr '\n' ' ')"
