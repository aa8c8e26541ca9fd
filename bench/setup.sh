#!/usr/bin/env bash
# Installs what bench/run.sh needs. Idempotent: re-running skips what is already there.
#   Debian: nginx-light, haproxy, wrk, valgrind      (apt)
#   crates.io: oha 1.16.0, mcp-proxy 0.6.0            (cargo install --locked, into ~/.cargo/bin)
#   PyPI: bench/requirements.txt                      (venv in bench/run/venv, for JWT minting)
# mcp-proxy is optional: if it does not build, the run reports that peer as skipped.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
OHA_VERSION=1.16.0
MCP_PROXY_VERSION=0.6.0
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$CARGO_BIN:$PATH"
mkdir -p run

need_apt=()
for pair in nginx:nginx-light haproxy:haproxy wrk:wrk valgrind:valgrind taskset:util-linux; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts the packaged services; the bench runs its own instances, never those.

installed_version() { # crate -> version installed by cargo install, or empty
  cargo install --list 2>/dev/null | awk -v c="$1" '$1==c {sub(/^v/,"",$2); sub(/:$/,"",$2); print $2}'
}
if [ "$(installed_version oha)" != "$OHA_VERSION" ]; then
  echo "setup: cargo install oha $OHA_VERSION (about 4 min on 2 cores)"
  cargo install oha --version "$OHA_VERSION" --locked --quiet
fi
if [ "$(installed_version mcp-proxy)" != "$MCP_PROXY_VERSION" ]; then
  echo "setup: cargo install mcp-proxy $MCP_PROXY_VERSION (about 10 min on 2 cores)"
  if ! cargo install mcp-proxy --version "$MCP_PROXY_VERSION" --locked --quiet > run/mcp-proxy-install.log 2>&1; then
    echo "setup: WARNING: mcp-proxy $MCP_PROXY_VERSION did not build (see bench/run/mcp-proxy-install.log);" \
         "the bench skips that peer"
  fi
fi

bash venv.sh

echo "setup: ok — nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///'), $(/usr/sbin/haproxy -v | head -1 | awk '{print "haproxy", $3}')," \
     "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(oha --version), " \
     "mcp-proxy $(installed_version mcp-proxy | grep . || echo 'not installed')" # it has no --version
