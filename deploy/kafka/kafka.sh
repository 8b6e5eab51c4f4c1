#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM) on loopback, from the
# official jars that deploy/kafka/pom.xml resolves through Maven. No Docker, no tarball.
#
#   deploy/kafka/kafka.sh start | stop | status | fetch
#
# Environment: KAFKA_DATA_DIR (default var/kafka), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_HEAP (512m), KAFKA_START_TIMEOUT seconds (90).
# Encrypted listeners, besides the plaintext one (the tests of encryption in transit use them):
# KAFKA_SSL_PORT and KAFKA_SASL_SSL_PORT open an SSL and a SASL_SSL (PLAIN) listener with the PEM files of
# KAFKA_TLS_DIR: ca.pem (trusted for client certificates) and broker.pem (the private key, PKCS#8, then
# the certificate chain); KAFKA_SASL_USERS="user:password,..." are the SASL users.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data_dir="${KAFKA_DATA_DIR:-$root/var/kafka}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
heap="${KAFKA_HEAP:-512m}"
start_timeout="${KAFKA_START_TIMEOUT:-90}"
libs="$here/target/libs"
pid_file="$data_dir/kafka.pid"
log_file="$data_dir/server.log"
props="$data_dir/server.properties"

say() { echo "kafka: $*" >&2; }
# shellcheck source=../lib.sh
source "$here/../lib.sh"

fetch() {
  if compgen -G "$libs/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null || { say "Maven (mvn) is required to fetch the broker jars: apt-get install maven"; exit 1; }
  command -v java >/dev/null || { say "Java 17+ is required to run the broker: apt-get install openjdk-17-jre-headless"; exit 1; }
  say "fetching the broker jars through Maven into $libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The broker's pid, when the pid file names a live broker of this data dir.
running_pid() { pid_from_file "$pid_file" "$props"; }

tls_dir="${KAFKA_TLS_DIR:-}"
ssl_port="${KAFKA_SSL_PORT:-}"
sasl_ssl_port="${KAFKA_SASL_SSL_PORT:-}"

tls_listeners() {
  if [[ -n "$ssl_port" ]]; then printf ',SSL://127.0.0.1:%s' "$ssl_port"; fi
  if [[ -n "$sasl_ssl_port" ]]; then printf ',SASL_SSL://127.0.0.1:%s' "$sasl_ssl_port"; fi
}

tls_config() {
  local users="" pair pairs
  IFS=',' read -ra pairs <<<"${KAFKA_SASL_USERS:-}"
  for pair in "${pairs[@]}"; do users+=" user_${pair%%:*}=\"${pair#*:}\""; done
  cat <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$tls_dir/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
ssl.client.auth=requested
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;
EOF
}

write_config() {
  mkdir -p "$data_dir/logs"
  cat >"$props" <<EOF
# Written by deploy/kafka/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port$(tls_listeners)
advertised.listeners=PLAINTEXT://127.0.0.1:$port$(tls_listeners)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data_dir/logs
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
default.replication.factor=1
min.insync.replicas=1
# A local broker serves one client group at a time: rebalance at once instead of waiting 3 s.
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=134217728
num.network.threads=2
num.io.threads=4
EOF
  if [[ -n "$tls_dir" ]]; then tls_config >>"$props"; fi
  cat >"$data_dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$log_file
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
}

# exec: the broker's pid is the pid this script records, so stop signals the JVM itself.
exec_java() {
  exec java -Xms128m "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "-Dlog4j.configuration=file:$data_dir/log4j.properties" -cp "$libs/*" "$@"
}
java_cmd() { (exec_java "$@"); }
export -f exec_java

format_storage() {
  # Storage is formatted once; a stale or foreign meta.properties is reset with the data it describes.
  local meta="$data_dir/logs/meta.properties"
  if [[ -f "$meta" ]] && grep -q "^node.id=1$" "$meta" && grep -q "^cluster.id=" "$meta"; then
    return 0
  fi
  rm -rf "$data_dir/logs"
  mkdir -p "$data_dir/logs"
  local cluster_id
  cluster_id="$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  say "formatting KRaft storage in $data_dir/logs (cluster $cluster_id)"
  java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$props" >>"$data_dir/format.log" 2>&1 \
    || { say "formatting failed:"; tail -n 20 "$data_dir/format.log" >&2; exit 1; }
}

start() {
  fetch
  local pid
  if pid="$(running_pid)"; then
    say "already running (pid $pid) on 127.0.0.1:$port"
    return 0
  fi
  rm -f "$pid_file"
  if port_open "$port" || port_open "$controller_port"; then
    say "port $port or $controller_port is taken by another process; set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
    exit 1
  fi
  write_config
  format_storage
  : >"$log_file"
  # setsid: the broker outlives this shell and is not hit by a Ctrl-C meant for make.
  export data_dir heap libs
  setsid nohup bash -c 'exec_java kafka.Kafka "$0"' "$props" >"$data_dir/stdout.log" 2>&1 </dev/null &
  local launched=$!
  echo "$launched" >"$pid_file"
  local waited=0
  until port_open "$port" && grep -q "Kafka Server started" "$log_file" 2>/dev/null; do
    # Liveness by pid alone: until exec, the child's command line is still this script's.
    if ! alive "$launched"; then
      say "the broker exited during start-up; last lines of its logs:"
      tail -n 30 "$log_file" "$data_dir/stdout.log" >&2 || true
      rm -f "$pid_file"
      exit 1
    fi
    if ((waited >= start_timeout * 10)); then
      say "the broker did not answer within ${start_timeout}s; stopping it"
      tail -n 30 "$log_file" >&2 || true
      stop
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  say "started (pid $(cat "$pid_file")) on 127.0.0.1:$port, data in $data_dir"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pid_file"
    say "not running"
    return 0
  fi
  stop_process "$pid" 30
  rm -f "$pid_file"
  say "stopped"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    say "running (pid $pid) on 127.0.0.1:$port"
  else
    say "not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
