#!/usr/bin/env bash
# Install the Debian packages that the real-component tests use, when we can
# (root and apt present). Without them those tests skip, or fail under
# CARDPERSO_REQUIRE_ALL=1. Already-installed packages cost nothing.
set -uo pipefail

# With arguments, only those packages (``make demo`` needs only tesseract-ocr).
if [ $# -gt 0 ]; then
  PKGS=("$@")
else
  PKGS=(pcscd libpcsclite-dev vsmartcard-vpcd opensc softhsm2 poppler-utils
        fonts-urw-base35 tesseract-ocr chromium)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-system-deps: not root or no apt; missing: ${missing[*]}" >&2
  [ "${CARDPERSO_REQUIRE_ALL:-0}" = "1" ] && exit 1
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "install-system-deps: apt-get install failed" >&2
  [ "${CARDPERSO_REQUIRE_ALL:-0}" = "1" ] && exit 1
fi
exit 0
