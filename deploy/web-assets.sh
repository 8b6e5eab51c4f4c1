#!/usr/bin/env bash
# Vendor the console page's libraries (Leaflet, h3-js) from npm into streams/console/static/vendor/, so the
# page loads nothing from a CDN at run time. Run by `make setup`; the versions are pinned in web/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (Debian: apt-get install -y npm)" >&2; exit 1; }
npm ci --prefix web --no-audit --no-fund --loglevel=error
vendor=streams/console/static/vendor
rm -rf "$vendor"
mkdir -p "$vendor/images"
cp web/node_modules/leaflet/dist/leaflet.js web/node_modules/leaflet/dist/leaflet.css "$vendor/"
cp web/node_modules/leaflet/dist/images/*.png "$vendor/images/"
cp web/node_modules/h3-js/dist/h3-js.umd.js "$vendor/h3-js.umd.js"
cp web/node_modules/leaflet/LICENSE "$vendor/LICENSE.leaflet"
cp web/node_modules/h3-js/LICENSE "$vendor/LICENSE.h3-js"
echo "console assets vendored into $vendor"
