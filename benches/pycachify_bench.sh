#!/bin/sh
# Runs benches/pycachify_bench.py (py-cachify 3.1 on the workloads of benches/peers.rs) in a
# throwaway venv, against the Redis server at $1; further arguments go to the script.
#
#   sh benches/pycachify_bench.sh redis://127.0.0.1:6379 --seconds 1 --rounds 3
#
# Prints the script's JSON on stdout; everything else goes to stderr. When python3, venv or
# pip fail, prints {"error": "..."} instead (and exits 0), so the caller can say why there are no
# figures. PYCACHIFY_VENV=<dir> reuses (or creates and keeps) a venv there instead of a temporary
# one.
set -u
url=${1:?usage: pycachify_bench.sh REDIS_URL [script args...]}
shift
here=$(cd "$(dirname "$0")" && pwd)

fail() {
    printf '{"error": "%s"}\n' "$1"
    exit 0
}

command -v python3 >/dev/null 2>&1 || fail "python3 is not on PATH"
if [ -n "${PYCACHIFY_VENV:-}" ]; then
    venv=$PYCACHIFY_VENV
else
    tmp=$(mktemp -d) || fail "mktemp failed"
    trap 'rm -rf "$tmp"' EXIT INT TERM
    venv=$tmp/venv
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2 || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'py-cachify==3.1.*' redis >&2 \
    || fail "pip install py-cachify==3.1.* redis failed"
"$venv/bin/python" "$here/pycachify_bench.py" "$url" "$@" || fail "pycachify_bench.py failed (see stderr)"
