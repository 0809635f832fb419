#!/bin/sh
# Installs everything `make test` and `make demo` need on a fresh Debian machine (as root).
# Idempotent: a stamp file per step makes the second run cheap.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
stamps="$here/.deps"
mkdir -p "$stamps"

# The apt packages, as the positional parameters (POSIX sh has no arrays). rpm, rpm2cpio
# and cpio build and unpack `make rpm`'s packages, logrotate runs their snippet, and
# the shell scripts are checked with shellcheck, the systemd files iscsi-ha setup
# writes with systemd-analyze verify.
set -- tgt libiscsi-bin drbd-utils kmod iproute2 iputils-arping util-linux \
    rpm rpm2cpio cpio logrotate shellcheck systemd
if [ ! -e "$stamps/apt" ] || ! dpkg -s "$@" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    touch "$stamps/apt"
fi

# The dom0 Pythons: 2.7 (XenServer 7.x, XCP-ng 8.2), 3.6 (XCP-ng 8.3) and a current 3.x.
pip_install() {
    python=$1; stamp=$2; shift 2
    [ -e "$stamps/$stamp" ] && return 0
    "$python" -m pip install -q --disable-pip-version-check "$@"
    touch "$stamps/$stamp"
}
# shellcheck source-path=SCRIPTDIR source=pythons.sh
. "$here/tests/pythons.sh"
# Old pips choose wheels their Python cannot run; the last pip for each comes first.
pip_install "$PY27" pip-upgrade-py27 "pip==20.3.4"
pip_install "$PY36" pip-upgrade-py36 "pip==21.3.1"
# XenAPI 2.14 is the last py2.py3 release: the fence-peer handler needs it on every dom0 Python.
pip_install "$PY27" pip-py27-xenapi "pytest==4.6.11" "jinja2<3" "markupsafe<2" six \
    "XenAPI==2.14"
pip_install "$PY36" pip-py36-xenapi "pytest==7.0.1" "jinja2<3.1" six "XenAPI==2.14"
pip_install "$PY3" pip-py3 pytest "jinja2" six XenAPI
# The hostile-input tests: hypothesis 4.57.1 and 6.31.6 are the last for 2.7 and 3.6.
pip_install "$PY27" pip-py27-hypothesis "hypothesis==4.57.1"
pip_install "$PY36" pip-py36-hypothesis "hypothesis==6.31.6"
pip_install "$PY3" pip-py3-hypothesis hypothesis
