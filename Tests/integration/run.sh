#!/usr/bin/env bash
# Runs the integration suite (pytest) inside a private network namespace, so that every server it
# starts (dicom-bridge, DCMTK's storescp, Orthanc; all bind every interface) and every client share
# a loopback of their own. Outside CI it falls back to running pytest directly when no namespace can
# be made (tests that start servers are then skipped, saying why, unless --allow-host-network is
# given); under CI (CI=true) that is an error (exit 98), and so is any test that cannot run (see
# conftest.py). Exits with pytest's exit code.
#
#   bash Tests/integration/run.sh [pytest arguments]
#   DICOM_BRIDGE_BIN=/path/to/dicom-bridge bash Tests/integration/run.sh -k receive
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
# Tests/integration unless the arguments name test files or folders themselves.
paths=(Tests/integration)
for a in "$@"; do
  case "$a" in -*) ;; *) if [ -e "${a%%::*}" ]; then paths=(); break; fi ;; esac
done
cmd=("$PYTHON" -m pytest "${paths[@]}" -p no:cacheprovider "$@")

if [ "${DICOM_BRIDGE_TEST_NETNS:-}" = 1 ]; then
  exec "${cmd[@]}"                                   # already inside one
fi

# Bring lo up inside the namespace (ip from iproute2; Python's ioctl as a fallback).
inner='
if command -v ip >/dev/null 2>&1; then ip link set lo up
else "$0" -c "import fcntl,socket,struct; s=socket.socket(); r=struct.pack(\"16sH22x\",b\"lo\",0); f=struct.unpack_from(\"16sH\",fcntl.ioctl(s,0x8913,r))[1]; fcntl.ioctl(s,0x8914,struct.pack(\"16sH22x\",b\"lo\",f|1))"
fi || { echo "run.sh: cannot bring up lo in the namespace" >&2; exit 97; }
export DICOM_BRIDGE_TEST_NETNS=1
exec "$@"'

if unshare -n true 2>/dev/null; then
  exec unshare -n -- sh -c "$inner" "$PYTHON" "${cmd[@]}"
elif unshare -r -n true 2>/dev/null; then             # not root: a user namespace as well
  exec unshare -r -n -- sh -c "$inner" "$PYTHON" "${cmd[@]}"
fi
case "${CI:-}" in
  true|1|yes)
    echo "run.sh: CI=true but no private network namespace can be made here (unshare -n failed):" \
         "the integration tests start servers and must run in one; refusing to run a suite that would skip them" >&2
    exit 98 ;;
esac
echo "run.sh: cannot create a private network namespace (unshare -n); running pytest directly," \
     "tests that start servers will be skipped (pass --allow-host-network to run them anyway)" >&2
exec "${cmd[@]}"
