#!/usr/bin/env bash
# Screenshots a report.html (or any local HTML file) with headless Chromium, for the docs and for
# the report_screenshot test.
#   screenshot-report.sh REPORT_HTML OUT_PNG [WIDTH,HEIGHT]    (default 1280,2000)
# The browser is $AQ_CHROMIUM if set, else the first of chromium-headless-shell, chromium,
# chromium-browser, google-chrome found on PATH (scripts/install-deps.sh installs the first).
# Exit status 3: no browser found (or $AQ_CHROMIUM is not executable).
set -euo pipefail
if (($# < 2 || $# > 3)); then
  echo "usage: screenshot-report.sh REPORT_HTML OUT_PNG [WIDTH,HEIGHT]" >&2
  exit 2
fi
html=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280,2000}

browser=${AQ_CHROMIUM:-}
if [[ -z $browser ]]; then
  for candidate in chromium-headless-shell chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
      browser=$(command -v "$candidate")
      break
    fi
  done
fi
if [[ -z $browser || ! -x $browser ]]; then
  echo "screenshot-report.sh: no Chromium found${browser:+ (AQ_CHROMIUM=$browser is not executable)} (chromium-headless-shell, chromium, chromium-browser, google-chrome)" >&2
  exit 3
fi

# A throw-away profile, so that nothing is read from or written to the user's own.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
# --no-sandbox: the sandbox cannot start as root or in most containers; the page is a local file.
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$profile" --window-size="$size" --screenshot="$out" "file://$html" >"$profile/browser.log" 2>&1 || true
if [[ ! -s $out ]]; then
  echo "screenshot-report.sh: $browser wrote no screenshot to $out; its last output:" >&2
  tail -n 20 "$profile/browser.log" >&2
  exit 1
fi
echo "$out"
