#!/usr/bin/env bash
# Debian's redis-server on a loopback port, for idempotency claims and the shared send rate limit.
#
#   deploy/redis/redis.sh start | stop | status | install
#
# Environment: REDIS_DATA_DIR (default var/redis), REDIS_PORT (6390; not 6379, so a system Redis is left alone).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data_dir="${REDIS_DATA_DIR:-$root/var/redis}"
port="${REDIS_PORT:-6390}"
pid_file="$data_dir/redis.pid"

say() { echo "redis: $*" >&2; }
# shellcheck source=../lib.sh
source "$here/../lib.sh"

install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  bash "$here/../system-deps.sh"
}

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

running_pid() { pid_from_file "$pid_file" "redis-server"; }

start() {
  install
  local pid
  if pid="$(running_pid)" && ping; then
    say "already running (pid $pid) on 127.0.0.1:$port"
    return 0
  fi
  rm -f "$pid_file"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "port $port is taken by another process; set REDIS_PORT"
    exit 1
  fi
  mkdir -p "$data_dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$data_dir" --daemonize yes --pidfile "$pid_file" \
    --logfile "$data_dir/redis.log" --appendonly yes --save "" --protected-mode yes
  for _ in $(seq 1 100); do
    ping && { say "started (pid $(cat "$pid_file")) on 127.0.0.1:$port"; return 0; }
    sleep 0.1
  done
  say "redis did not answer within 10s:"
  tail -n 20 "$data_dir/redis.log" >&2 || true
  exit 1
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pid_file"
    say "not running"
    return 0
  fi
  stop_process "$pid" 10
  rm -f "$pid_file"
  say "stopped"
}

status() {
  local pid
  if pid="$(running_pid)" && ping; then say "running (pid $pid) on 127.0.0.1:$port"; else say "not running"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  install) install ;;
  *) echo "usage: $0 start|stop|status|install" >&2; exit 2 ;;
esac
