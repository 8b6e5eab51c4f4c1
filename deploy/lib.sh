# Shared by the deploy/ scripts: process life cycle. Source it; it defines functions only.

# alive PID: true while any thread of the process runs (a zombie waiting to be reaped counts as gone). A
# killed JVM's main thread turns zombie before its other threads have exited and closed its sockets, so every
# thread is looked at, not only the main one.
alive() {
  local task
  for task in /proc/"$1"/task/*/status; do
    [[ -r "$task" ]] && ! grep -q '^State:[[:space:]]*Z' "$task" 2>/dev/null && return 0
  done
  return 1
}

# stop_process PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL; returns once the process is gone.
stop_process() {
  local pid=$1 limit=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((limit * 10))); do
    alive "$pid" || return 0
    sleep 0.1
  done
  echo "process $pid did not stop within ${limit}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  while alive "$pid"; do sleep 0.1; done
}

# pid_from_file FILE PATTERN: print the pid FILE names if that process is alive and its command line holds
# PATTERN (so a recycled pid of another program is not mistaken for ours).
pid_from_file() {
  local file=$1 pattern=$2 pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file")"
  [[ -n "$pid" ]] && alive "$pid" || return 1
  grep -qF "$pattern" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}
