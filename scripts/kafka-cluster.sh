# shellcheck shell=bash disable=SC2154
# (SC2154: brokers_wanted, lib, version and timeout_secs are set by scripts/kafka, which sources this.)
# The three-broker mode of scripts/kafka (KAFKA_BROKERS=3), sourced by it: one KRaft controller
# (node 0) and three brokers (nodes 1, 2, 3) on 127.0.0.1, each its own JVM and process group,
# with replication factor 3 and min.insync.replicas=2 for every topic created without settings
# and for the internal topics (consumer offsets, transaction state), as in Kafka's own
# transactions_test.py. The controller runs apart so that killing brokers never loses the
# metadata quorum: what the fault tests take away is brokers, leaders and coordinators.
#
#   KAFKA_BROKERS=3 scripts/kafka start [N]   start the cluster (or broker N); prints the bootstrap list
#   KAFKA_BROKERS=3 scripts/kafka stop [N]    stop the cluster (or broker N, a clean shutdown)
#   KAFKA_BROKERS=3 scripts/kafka kill N      kill -9 broker N (its data is kept)
#   KAFKA_BROKERS=3 scripts/kafka status      the bootstrap list and exit 0 if every broker answers
#   KAFKA_BROKERS=3 scripts/kafka reset       stop everything and delete the cluster's home
#   KAFKA_BROKERS=3 scripts/kafka leader TOPIC PARTITION   the node id of the partition's leader
#   KAFKA_BROKERS=3 scripts/kafka coordinator group|txn ID the node id of the group or transaction
#                                                         coordinator
#   KAFKA_BROKERS=3 scripts/kafka wait-isr [SECS]  wait until no partition is under-replicated
#
# Ports: broker N on KAFKA_PORT + N - 1 (default 9100, 9101, 9102), the controller on
# KAFKA_PORT + 10 (9110). Home: KAFKA_HOME_DIR (default <repo>/target/kafka-cluster-<port>), one
# directory per node (node-0 .. node-3) with its config, data, pid file and logs.
# Heap per JVM: KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m; the controller -Xmx256m), so the four
# JVMs fit beside the tests on a small machine.

cluster_size="$brokers_wanted"
cluster_base="${KAFKA_PORT:-9100}"
cluster_home="${KAFKA_HOME_DIR:-$repo/target/kafka-cluster-$cluster_base}"
cluster_cport=$((cluster_base + 10))

node_port() { if (($1 == 0)); then echo "$cluster_cport"; else echo $((cluster_base + $1 - 1)); fi; }
node_home() { echo "$cluster_home/node-$1"; }

bootstrap_list() {
  local n list=""
  for n in $(seq 1 "$cluster_size"); do list+="${list:+,}127.0.0.1:$(node_port "$n")"; done
  echo "$list"
}

node_pid() {
  local f
  f="$(node_home "$1")/broker.pid"
  [[ -f "$f" ]] || return 1
  local pid
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

check_node() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > cluster_size)); then
    die "broker '$1': give a node id from 1 to $cluster_size"
  fi
}

cluster_voters() { echo "0@127.0.0.1:$cluster_cport"; }

write_node_config() {
  local n="$1" h
  h="$(node_home "$n")"
  mkdir -p "$h/data"
  {
    echo "node.id=$n"
    echo "controller.quorum.voters=$(cluster_voters)"
    echo "controller.listener.names=CONTROLLER"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "log.dirs=$h/data"
    if ((n == 0)); then
      echo "process.roles=controller"
      echo "listeners=CONTROLLER://127.0.0.1:$cluster_cport"
    else
      cat <<EOF
process.roles=broker
listeners=PLAINTEXT://127.0.0.1:$(node_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$n")
inter.broker.listener.name=PLAINTEXT
EOF
    fi
    cat <<EOF
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$cluster_size
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=$cluster_size
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$cluster_size
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=$cluster_size
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
transaction.remove.expired.transaction.cleanup.interval.ms=60000
# A killed broker is fenced (and leaves every ISR) within 6 s, not the default 9.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
log.retention.ms=-1
log.segment.bytes=268435456
EOF
  } >"$h/server.properties"
  home="$h" logfile="$h/broker.log" write_log_config
}

format_cluster_once() {
  local idfile="$cluster_home/cluster.id" n pids=() failed=0
  if [[ ! -f "$idfile" ]]; then
    mkdir -p "$cluster_home"
    home="$cluster_home" java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$idfile.new"
    [[ -s "$idfile.new" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
    mv "$idfile.new" "$idfile"
  fi
  for n in $(seq 0 "$cluster_size"); do
    local h
    h="$(node_home "$n")"
    [[ -f "$h/data/meta.properties" ]] && continue
    log "formatting node $n in $h/data (cluster $(cat "$idfile"))"
    home="$h" java_cmd kafka.tools.StorageTool format -t "$(cat "$idfile")" \
      -c "$h/server.properties" >>"$h/format.log" 2>&1 &
    pids+=("$!")
  done
  for n in "${pids[@]}"; do wait "$n" || failed=1; done
  ((failed == 0)) || die "formatting failed; see $cluster_home/node-*/format.log"
}

# Starts node N's JVM in its own process group and waits until it says it started.
start_node() {
  local n="$1" h port heap
  h="$(node_home "$n")"
  port="$(node_port "$n")"
  if node_pid "$n" >/dev/null && port_open "$port"; then return; fi
  port_open "$port" && die "port $port (node $n) is in use by another process; set KAFKA_PORT"
  heap="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
  if ((n == 0)); then heap="${KAFKA_HEAP_OPTS:--Xms64m -Xmx256m}"; fi
  : >"$h/broker.log"
  # shellcheck disable=SC2086
  setsid java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$h/log4j2.properties" \
    -cp "$lib/*" kafka.Kafka "$h/server.properties" >>"$h/stdout.log" 2>&1 </dev/null &
  echo $! >"$h/broker.pid"
}

wait_node() {
  local n="$1" h port waited=0
  h="$(node_home "$n")"
  port="$(node_port "$n")"
  until port_open "$port" && grep -q "Kafka Server started" "$h/broker.log" 2>/dev/null; do
    if ! node_pid "$n" >/dev/null; then
      tail -n 30 "$h/stdout.log" "$h/broker.log" >&2 || true
      die "node $n exited during start-up; see $h/broker.log"
    fi
    ((waited < timeout_secs * 5)) || die "node $n did not answer on 127.0.0.1:$port within ${timeout_secs}s; see $h/broker.log"
    sleep 0.2
    waited=$((waited + 1))
  done
}

signal_node() {
  local n="$1" sig="$2" pid
  pid="$(node_pid "$n")" || { rm -f "$(node_home "$n")/broker.pid"; return 0; }
  kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
  local tries=150
  [[ "$sig" == KILL ]] && tries=50
  for _ in $(seq 1 "$tries"); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    log "node $n did not stop; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(node_home "$n")/broker.pid"
}

cluster_start() {
  local n
  if (($# == 1)); then
    check_node "$1"
    start_node "$1"
    wait_node "$1"
    log "broker $1 is up on 127.0.0.1:$(node_port "$1")"
    bootstrap_list
    return
  fi
  resolve_jars
  for n in $(seq 0 "$cluster_size"); do write_node_config "$n"; done
  format_cluster_once
  log "starting Kafka $version: controller on 127.0.0.1:$cluster_cport, brokers on $(bootstrap_list) (logs: $cluster_home/node-*/broker.log)"
  for n in $(seq 0 "$cluster_size"); do start_node "$n"; done
  for n in $(seq 0 "$cluster_size"); do wait_node "$n"; done
  log "cluster is up"
  bootstrap_list
}

cluster_stop() {
  local n
  if (($# == 1)); then
    check_node "$1"
    log "stopping broker $1"
    signal_node "$1" TERM
    return
  fi
  for n in $(seq "$cluster_size" -1 1); do signal_node "$n" TERM & done
  wait
  signal_node 0 TERM
  log "stopped"
}

cluster_status() {
  local n ok=0
  for n in $(seq 0 "$cluster_size"); do
    if ! node_pid "$n" >/dev/null || ! port_open "$(node_port "$n")"; then
      log "node $n is not running (port $(node_port "$n"))"
      ok=1
    fi
  done
  ((ok == 0)) && bootstrap_list
  return "$ok"
}

# Runs a Kafka tool against the cluster; its log goes to tools.log.
cluster_tool() {
  resolve_tools
  local main="$1"
  shift
  home="$cluster_home" tool_cmd "$main" --bootstrap-server "$(bootstrap_list)" "$@"
}

cluster_leader() {
  (($# == 2)) || die "usage: KAFKA_BROKERS=3 scripts/kafka leader TOPIC PARTITION"
  local out leader
  out="$(cluster_tool org.apache.kafka.tools.TopicCommand --describe --topic "$1" 2>&1)" \
    || die "could not describe topic $1: $out"
  leader="$(awk -v p="$2" '$3 == "Partition:" && $4 == p { for (i = 1; i < NF; i++) if ($i == "Leader:") print $(i + 1) }' \
    <<<"$out")"
  [[ -n "$leader" ]] || die "no partition $2 of topic $1: $out"
  echo "$leader"
}

cluster_coordinator() {
  (($# == 2)) || die "usage: KAFKA_BROKERS=3 scripts/kafka coordinator group|txn ID"
  local out id
  case "$1" in
    group)
      out="$(cluster_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --describe \
        --state --group "$2" 2>&1)" || die "could not describe group $2: $out"
      # GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS
      id="$(sed -n 's/.*127\.0\.0\.1:[0-9]* *(\([0-9]*\)).*/\1/p' <<<"$out" | head -n 1)" ;;
    txn)
      out="$(cluster_tool org.apache.kafka.tools.TransactionsCommand describe \
        --transactional-id "$2" 2>&1)" || die "could not describe transactional id $2: $out"
      # CoordinatorId  TransactionalId  ProducerId ...
      id="$(awk 'NR == 2 { print $1 }' <<<"$out")" ;;
    *) die "coordinator: say group or txn, not '$1'" ;;
  esac
  [[ "$id" =~ ^[0-9]+$ ]] || die "could not find the coordinator of $1 $2 in: $out"
  echo "$id"
}

cluster_wait_isr() {
  local secs="${1:-120}" start out
  start="$(date +%s)"
  while true; do
    out="$(cluster_tool org.apache.kafka.tools.TopicCommand --describe \
      --under-replicated-partitions 2>&1)" && [[ -z "$out" ]] && return 0
    (($(date +%s) - start < secs)) || die "partitions still under-replicated after ${secs}s: $out"
    sleep 1
  done
}

cluster_main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    start) cluster_start "$@" ;;
    stop) cluster_stop "$@" ;;
    kill)
      (($# == 1)) || die "usage: KAFKA_BROKERS=3 scripts/kafka kill N"
      check_node "$1"
      log "killing broker $1 with SIGKILL"
      signal_node "$1" KILL
      ;;
    status) cluster_status ;;
    reset)
      cluster_stop
      rm -rf "$cluster_home"
      log "removed $cluster_home"
      ;;
    leader) cluster_leader "$@" ;;
    coordinator) cluster_coordinator "$@" ;;
    wait-isr) cluster_wait_isr "$@" ;;
    *)
      echo "usage: KAFKA_BROKERS=3 scripts/kafka start [N]|stop [N]|kill N|status|reset" >&2
      echo "       KAFKA_BROKERS=3 scripts/kafka leader TOPIC PARTITION | coordinator group|txn ID | wait-isr [SECS]" >&2
      exit 2
      ;;
  esac
}
