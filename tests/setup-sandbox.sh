#!/usr/bin/env bash
# Debian's bubblewrap, the sandbox model-written code is graded in (helpers/tasks/sandbox.py).
#
# Where bwrap is on PATH nothing happens. Where root or apt-get is missing, it says so: the lab then uses a
# locked-down container where Docker answers, and else records such answers as "not graded".
set -euo pipefail
if command -v bwrap >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-sandbox: bubblewrap missing and installing it needs root + apt-get (sudo apt install bubblewrap)"; exit 0
fi
echo "installing bubblewrap from Debian…"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
