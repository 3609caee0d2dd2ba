#!/bin/sh
# Installs the system programs framehub and its tests use, where this machine lets us:
# Debian/Ubuntu packages through apt-get, as root or through sudo. Missing rights are not an
# error here; the programs that need a package say so when they start.
set -eu
missing=""
# Arguments: command:package pairs, e.g. mosquitto:mosquitto chromium:chromium
for pair in "$@"; do
    command=${pair%%:*}
    package=${pair#*:}
    command -v "$command" >/dev/null 2>&1 || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "framehub: please install:$missing" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "framehub: please install (as root):$missing" >&2
    exit 0
fi
echo "framehub: installing$missing" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
