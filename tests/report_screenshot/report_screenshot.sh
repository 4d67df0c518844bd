#!/usr/bin/env bash
# Renders the synthetic report.html in headless Chromium and checks that the screenshot is not
# blank (and that a blank page's screenshot fails the same check). Without a browser the test is
# skipped (exit 77), except under CI (CI set), where it fails.
#   report_screenshot.sh WRITE_SAMPLE_REPORT PNG_NOT_BLANK WORK_DIR
set -euo pipefail
writer=$1
checker=$2
work=$3
here=$(cd "$(dirname "$0")" && pwd)

rm -rf "$work"
mkdir -p "$work"
"$writer" "$work/report"

status=0
"$here/../../scripts/screenshot-report.sh" "$work/report/report.html" "$work/report.png" || status=$?
if ((status == 3)); then
  if [[ -n ${CI:-} ]]; then
    echo "report_screenshot: no Chromium found, and CI is set: install chromium-headless-shell" >&2
    exit 1
  fi
  echo "report_screenshot: no Chromium found; skipped (install chromium-headless-shell)"
  exit 77
fi
((status == 0)) || exit "$status"
"$checker" "$work/report.png" 1280 2000

# The checker is not vacuous: a blank page's screenshot must fail it.
printf '<!DOCTYPE html>\n<html><body></body></html>\n' >"$work/blank.html"
"$here/../../scripts/screenshot-report.sh" "$work/blank.html" "$work/blank.png"
if "$checker" "$work/blank.png" 1280 2000 2>/dev/null; then
  echo "report_screenshot: a blank page passed the not-blank check" >&2
  exit 1
fi
echo "report_screenshot: a blank page is refused, as it should be"
