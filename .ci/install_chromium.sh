#!/usr/bin/env bash
# Install Debian's Chromium (used by tests/test_html_report.py to render the HTML report headless)
# only when no Chromium is on the PATH. Needs root (or sudo) and the Debian package archive.
set -euo pipefail
for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "install_chromium: $(command -v "$name") is already installed"
        exit 0
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install_chromium: chromium is missing and this is not root (no sudo); install the 'chromium' package" >&2
        exit 1
    fi
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
command -v chromium
