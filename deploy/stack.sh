#!/usr/bin/env bash
# The local stack for development and `make demo`: Redis, the Kafka broker, and the pipeline's topics.
#
#   deploy/stack.sh up | down | status
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"

case "${1:-}" in
  up)
    "$here/redis/redis.sh" start
    "$here/kafka/kafka.sh" start
    "$python" -m streams create-topics
    ;;
  down)
    # Stop both even if one fails, then report.
    status=0
    "$here/kafka/kafka.sh" stop || status=$?
    "$here/redis/redis.sh" stop || status=$?
    exit "$status"
    ;;
  status)
    status=0
    "$here/kafka/kafka.sh" status || status=$?
    "$here/redis/redis.sh" status || status=$?
    exit "$status"
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
