#!/usr/bin/env bash
# Debian's Chromium and its WebDriver for the browser tests (tests/test_browser.py: Selenium drives a
# headless Chromium through JupyterLab, the presentation mode and the HTML report).
#
# Where both are already on PATH nothing happens. Where neither root nor apt-get is available, it
# says so and the browser tests skip with that reason.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-browser: chromium + chromium-driver missing and installing them needs root + apt-get"; exit 0
fi
echo "installing chromium + chromium-driver from Debian…"
apt-get update -qq
# fonts-dejavu-core: a font for the screenshots (a bare image renders text as boxes)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-dejavu-core >/dev/null
