#!/usr/bin/env bash
# `make demo`: bring up the local stack, run a worker, stream pings through it, show the results, and
# stop everything it started, also when interrupted or when a step fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="$root/.venv/bin/python"
log_dir="$root/var/demo"
# shellcheck source=lib.sh
source "$here/lib.sh"
mkdir -p "$log_dir"
worker_pid=""

cleanup() {
  local status=$?
  if [[ -n "$worker_pid" ]] && alive "$worker_pid"; then
    echo "== stopping the worker"
    stop_process "$worker_pid" 30
  fi
  echo "== stopping the local stack"
  "$here/stack.sh" down || true
  if [[ $status -ne 0 ]]; then
    echo "demo failed (exit $status); worker log: $log_dir/worker.log" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting the local stack (Redis, Kafka broker, topics)"
"$here/stack.sh" up

# A throw-away signing secret for this demo's driver tokens; real deployments set their own.
export WHATSUP_TOKEN_SECRET="${WHATSUP_TOKEN_SECRET:-$("$python" -c 'import secrets; print(secrets.token_hex(32))')}"

# Throw-away WhatsApp secrets, and a service-to-service key the conversation agent reads the dispatcher
# API with (appended to any keys set above); real deployments set their own.
new_secret() { "$python" -c 'import secrets; print(secrets.token_hex(16))'; }
export WHATSUP_PHONE_HASH_KEY="${WHATSUP_PHONE_HASH_KEY:-$(new_secret)}"
export WHATSUP_WHATSAPP_APP_SECRET="${WHATSUP_WHATSAPP_APP_SECRET:-$(new_secret)}"
export WHATSUP_WHATSAPP_VERIFY_TOKEN="${WHATSUP_WHATSAPP_VERIFY_TOKEN:-$(new_secret)}"
export WHATSUP_API_KEYS="${WHATSUP_API_KEYS:+$WHATSUP_API_KEYS,}$(new_secret):internal"

echo "== starting a worker (log: var/demo/worker.log)"
"$python" -m streams worker >"$log_dir/worker.log" 2>&1 &
worker_pid=$!
healthy=""
for _ in $(seq 1 300); do
  if ! alive "$worker_pid"; then
    tail -n 40 "$log_dir/worker.log" >&2
    exit 1
  fi
  if "$python" - <<'PY'

import sys, httpx
from streams.settings import get_settings
s = get_settings()
try:
    answer = httpx.get(f"http://127.0.0.1:{s.web_port}/health", timeout=1)
except httpx.HTTPError:
    sys.exit(1)
if answer.status_code != 200:
    sys.exit(1)
print("worker healthy:", answer.text)
PY
  then healthy=1; break; fi
  sleep 0.2
done
[[ -n "$healthy" ]] || { echo "the worker did not become healthy" >&2; exit 1; }

echo "== the pipeline at work"
"$python" -m streams demo
