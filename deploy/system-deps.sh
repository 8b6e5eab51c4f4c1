#!/usr/bin/env bash
# Install the Debian packages the local stack needs, when missing: Java 17+ and Maven (the Kafka broker),
# redis-server, prometheus (the server and promtool: the tests prove the alert rules and dashboards on them),
# prometheus-alertmanager (Alertmanager and amtool: the paging test routes a firing rule through it),
# npm (the console page's libraries), chromium and chromium-driver (the console's browser tests).
# As root they are installed; otherwise this says exactly what to install.
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v redis-server >/dev/null || missing+=(redis-server)
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
{ command -v prometheus-alertmanager && command -v amtool; } >/dev/null || missing+=(prometheus-alertmanager)
# The console's page libraries come from npm; its tests drive Debian's Chromium through chromedriver.
command -v npm >/dev/null || missing+=(npm)
{ command -v chromium && command -v chromedriver; } >/dev/null || missing+=(chromium chromium-driver)
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" != 0 ]]; then
  echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
# policy-rc.d 101: installing redis-server or prometheus must not start a system service as a side effect.
policy=/usr/sbin/policy-rc.d
created=""
if [[ ! -e "$policy" ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
trap '[[ -n "$created" ]] && rm -f "$policy"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
