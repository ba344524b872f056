#!/usr/bin/env bash
# One entry point for newcomers and CI (see README):
#   ./dev.sh serve   install the service into .venv and run it on its embedded defaults
#   ./dev.sh test    install everything the tests need (Debian packages included) and run them
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the test suite needs: coturn (TURN tests) and Chromium (the web pages are
# tested in a real browser; never `playwright install`, it downloads a browser), with a CJK
# font so that Chinese pages render (and screenshot) as text, not boxes; libatomic1 for the
# node driver inside the playwright wheel.
TEST_APT_PACKAGES=(python3-venv coturn chromium fonts-wqy-microhei libatomic1)

VENV=.venv
PYTHON=${PYTHON:-python3}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "dev.sh: please install: ${missing[*]}" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "dev.sh: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$1"
}

case "${1:-}" in
    serve)
        shift
        if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
        venv .
        exec "$VENV/bin/mediation" serve "$@"
        ;;
    test)
        shift
        apt_install "${TEST_APT_PACKAGES[@]}"
        venv ".[test]"
        "$VENV/bin/ruff" check .
        "$VENV/bin/mypy" signaling storage media recorder
        status=0
        "$VENV/bin/python" -m pytest -q "$@" || status=$?
        # The browser tests save every page state they pass through: CI keeps this folder.
        shots=$(find artifacts/screenshots -name '*.png' 2>/dev/null | wc -l)
        echo "screenshots of the page states visited: $shots in artifacts/screenshots/"
        exit "$status"
        ;;
    *)
        echo "usage: ./dev.sh serve [--port N] | ./dev.sh test [pytest args]" >&2
        exit 2
        ;;
esac
