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
sink_pid=""
sender_pid=""
sandbox_pid=""
console_pid=""
ingest_pid=""

cleanup() {
  local status=$?
  if [[ -n "$console_pid" ]] && alive "$console_pid"; then
    echo "== stopping the dispatcher console"
    stop_process "$console_pid" 10
  fi
  if [[ -n "$sender_pid" ]] && alive "$sender_pid"; then
    echo "== stopping the WhatsApp sender"
    stop_process "$sender_pid" 30
  fi
  if [[ -n "$sandbox_pid" ]] && alive "$sandbox_pid"; then
    echo "== stopping the WhatsApp sandboxes"
    stop_process "$sandbox_pid" 10
  fi
  if [[ -n "$ingest_pid" ]] && alive "$ingest_pid"; then
    echo "== stopping the ingest process"
    stop_process "$ingest_pid" 30
  fi
  if [[ -n "$worker_pid" ]] && alive "$worker_pid"; then
    echo "== stopping the worker"
    stop_process "$worker_pid" 30
  fi
  if [[ -n "$sink_pid" ]] && alive "$sink_pid"; then
    echo "== stopping the ClickHouse sink"
    stop_process "$sink_pid" 30
  fi
  echo "== stopping the local stack"
  "$here/stack.sh" down || true
  if [[ $status -ne 0 ]]; then
    echo "demo failed (exit $status); logs: $log_dir/worker.log, $log_dir/sink.log" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting the local stack (Redis, Kafka broker, topics)"
"$here/stack.sh" up

# A throw-away signing secret for this demo's driver tokens; real deployments set their own.
export WHATSUP_TOKEN_SECRET="${WHATSUP_TOKEN_SECRET:-$("$python" -c 'import secrets; print(secrets.token_hex(32))')}"

# Throw-away API keys for the delivery events and dispatcher API: one key per role.
if [[ -z "${WHATSUP_API_KEYS:-}" ]]; then
  key() { "$python" -c 'import secrets; print(secrets.token_hex(16))'; }
  export WHATSUP_API_KEYS="$(key):ingest,$(key):dispatcher,$(key):partner"
fi

# wait_healthy PID URL NAME: wait until URL answers 200 while PID lives.
wait_healthy() {
  local pid=$1 url=$2 name=$3
  for _ in $(seq 1 300); do
    alive "$pid" || { tail -n 40 "$log_dir/$name.log" >&2; return 1; }
    if "$python" -c "import httpx, sys; sys.exit(httpx.get('$url', timeout=1).status_code != 200)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "the $name did not become healthy" >&2
  return 1
}

# Without real Meta credentials the sender talks to the local sandboxes, with throw-away credentials that the
# sandbox, the sender and the worker's webhook (status callbacks are signed with the app secret) all share.
if [[ -z "${WHATSUP_WHATSAPP_TOKEN:-}" ]]; then
  secret() { "$python" -c 'import secrets; print(secrets.token_hex(24))'; }
  export WHATSUP_WHATSAPP_TOKEN="$(secret)" WHATSUP_WHATSAPP_APP_SECRET="$(secret)"
  export WHATSUP_WHATSAPP_PHONE_NUMBER_ID="${WHATSUP_WHATSAPP_PHONE_NUMBER_ID:-100000000000001}"
  export WHATSUP_WHATSAPP_API_URL="http://127.0.0.1:${WHATSUP_SANDBOX_META_PORT:-6070}"
  # The Twilio sandbox as the fallback route, so the demo can show the breaker sending through it.
  if [[ -z "${WHATSUP_TWILIO_ACCOUNT_SID:-}" ]]; then
    export WHATSUP_TWILIO_ACCOUNT_SID="AC$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
    export WHATSUP_TWILIO_AUTH_TOKEN="$(secret)" WHATSUP_TWILIO_FROM="+15550001111"
    export WHATSUP_TWILIO_API_URL="http://127.0.0.1:${WHATSUP_SANDBOX_TWILIO_PORT:-6071}"
    export WHATSUP_TWILIO_STATUS_CALLBACK_URL="http://127.0.0.1:${WHATSUP_WEB_PORT:-6066}/webhooks/twilio"
  fi
  # The drivers' chat assistant: the sandbox's language model, unless a real key is set (a real key needs
  # WHATSUP_CONVERSATION_LLM_ENABLED=1 too; it is off by default everywhere else).
  if [[ -z "${WHATSUP_LLM_API_KEY:-}" ]]; then
    export WHATSUP_CONVERSATION_LLM_ENABLED=1 WHATSUP_LLM_API_KEY="$(secret)"
    export WHATSUP_LLM_BASE_URL="http://127.0.0.1:${WHATSUP_SANDBOX_LLM_PORT:-6073}/api/v1"
  fi
  echo "== no WhatsApp credentials: starting the Meta, Twilio and LLM sandboxes (log: var/demo/sandbox.log)"
  "$python" -m streams sandbox >"$log_dir/sandbox.log" 2>&1 &
  sandbox_pid=$!
  wait_healthy "$sandbox_pid" "$WHATSUP_WHATSAPP_API_URL/health" sandbox
fi

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
wait_healthy "$worker_pid" "http://127.0.0.1:${WHATSUP_WEB_PORT:-6066}/health" worker
echo "worker healthy"

echo "== starting an ingest process, which also answers customers' tracking links (log: var/demo/ingest.log)"
"$python" -m streams ingest >"$log_dir/ingest.log" 2>&1 &
ingest_pid=$!
wait_healthy "$ingest_pid" "http://127.0.0.1:${WHATSUP_INGEST_PORT:-6065}/health" ingest

echo "== starting the ClickHouse sink (embedded chDB; log: var/demo/sink.log)"
"$python" -m streams sink >"$log_dir/sink.log" 2>&1 &
sink_pid=$!
wait_healthy "$sink_pid" "http://127.0.0.1:${WHATSUP_SINK_PORT:-6067}/health" sink

echo "== starting the WhatsApp sender (log: var/demo/sender.log)"
"$python" -m streams sender >"$log_dir/sender.log" 2>&1 &
sender_pid=$!
wait_healthy "$sender_pid" "http://127.0.0.1:${WHATSUP_SENDER_METRICS_PORT:-6068}/health" sender

echo "== starting the dispatcher console (log: var/demo/console.log)"
"$python" -m streams console >"$log_dir/console.log" 2>&1 &
console_pid=$!
wait_healthy "$console_pid" "http://127.0.0.1:${WHATSUP_CONSOLE_PORT:-6069}/health" console

echo "== the pipeline at work"
"$python" -m demos

# The process layout the specified fleet runs on, with its own processes, topics and embedded ClickHouse:
# two stateless ingest processes sharing a port, a worker and a sink, under a short burst of a delivery
# fleet's traffic, checked for anything lost or doubled (the full size is `make bench`, suite fleet).
echo "== a burst of fleet load: two ingest processes, a worker and a sink (var/bench/fleet-quick-*)"
"$python" -m benches --quick --only fleet
# The same burst with the workers split by role: the clean stage in one process, the agents downstream of
# it in another, each role a consumer group of its own (the side-by-side run is `make bench`, suite
# fleet-split).
echo "== the same burst, workers split by role: a clean worker and a deliveries worker (var/bench/fleet-split-*)"
"$python" -m benches --quick --only fleet-split
# The chaos soak, shortened: the same layout with a sender, while a worker is SIGKILLed, the broker restarted,
# the sink and Redis stopped and Meta answers 500, each once, on a broker and Redis of its own (the full soak
# is `make soak`: ten minutes at 1,000 pings/s).
echo "== the chaos soak, shortened: one fault of each kind under a small fleet (var/bench/soak-*)"
"$python" -m benches --quick --only soak
