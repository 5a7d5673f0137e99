#!/bin/sh
# Installs the Debian packages Aisle needs to build, test and run.
# Quiet no-op when everything is present; apt-get (through sudo when not root) otherwise.
# Called by the Makefile before every build; safe to run by hand.
set -eu

PKGS="build-essential pkg-config
libsqlite3-dev sqlite3
libjansson-dev
zlib1g-dev
libpcre2-dev
libutf8proc-dev
libcriterion-dev
libopenblas-dev libopenblas0-pthread
libmicrohttpd-dev
libcurl4-openssl-dev
clang libclang-rt-14-dev
gnuplot-nox
openmpi-bin libopenmpi-dev
chromium"

# chromium: the web chat's browser test (driven by playwright-core from npm).
# Node.js runs the OpenAI-client and browser tests. It may come from outside
# Debian (nodesource ships npm inside its nodejs package; Debian's separate npm
# package would conflict with it), so it is asked for by command, not package.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
    # dpkg-query prints "install ok installed" only for fully installed packages.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: need root or sudo to install:$missing" >&2
        exit 1
    fi
fi

echo "install-deps: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package index fails with 404s; refresh once and retry.
if ! $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null; then
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
