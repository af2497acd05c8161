#!/usr/bin/env bash
# Runs a throw-away single-node Apache Kafka 3.9 broker (KRaft, loopback
# only) for kinfer's integration tests and local demos: fetch the jars from
# Maven Central, start/stop/status a broker living in one directory, and
# create topics, and show a consumer group's committed offsets.  Only the
# bootstrap address (or describe-group's table) goes to stdout; progress and
# errors go to stderr.  Run `ops/kafka.sh help` for the interface.
set -euo pipefail

readonly KAFKA_VERSION=3.9.1
OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly OPS_DIR
KAFKA_HOME="${KINFER_KAFKA_HOME:-}"
if [[ -z "$KAFKA_HOME" ]]; then
    KAFKA_HOME="${HOME:?set HOME or KINFER_KAFKA_HOME}"
    KAFKA_HOME="$KAFKA_HOME/.cache/kinfer/kafka-$KAFKA_VERSION"
fi
readonly KAFKA_HOME
readonly LIBS="$KAFKA_HOME/libs"
readonly LOG4J="$OPS_DIR/kafka/log4j.properties"
readonly START_DEADLINE_S="${KINFER_KAFKA_START_TIMEOUT:-90}"
readonly STOP_DEADLINE_S=30
# Tool JVMs are short-lived: skip the optimising JIT and the parallel GC,
# which only cost start-up time on a small machine.
readonly TOOL_JVM_OPTS=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto
                        -Xmx256m)

usage() {
    cat >&2 <<EOF
usage: ops/kafka.sh COMMAND [ARGS]

  fetch
      Download Kafka $KAFKA_VERSION jars into \$KINFER_KAFKA_HOME/libs
      (default ~/.cache/kinfer/kafka-$KAFKA_VERSION).  Instant when cached.
  start --dir DIR [--port PORT] [--sasl-ssl]
      Start a single-node KRaft broker whose state lives in DIR (created if
      missing).  Picks free loopback ports unless --port is given.  Prints
      "127.0.0.1:PORT" (the PLAINTEXT listener) once the broker answers
      metadata requests.  When DIR's broker already runs, just prints its
      address.
      --sasl-ssl adds a second listener, SASL_SSL with SCRAM-SHA-512, on a
      free port, with a throw-away CA and server certificate made by
      openssl at each start, and a SCRAM user "kinfer" with a random
      password.  It writes (and keeps PLAINTEXT for the tools):
        DIR/sasl-ssl.bootstrap        its 127.0.0.1:PORT
        DIR/tls/ca.pem                the CA clients must trust
        DIR/tls/other-ca.pem          a CA that signed nothing (tests)
        DIR/sasl/password             the user's password (mode 600)
        DIR/sasl/client.properties    the client settings as "key = value"
                                      lines (librdkafka, kinfer --config)
  create-topic (--dir DIR | --bootstrap HOST:PORT) NAME PARTITIONS
  create-topic (--dir DIR | --bootstrap HOST:PORT) NAME:PARTITIONS...
      Create topics (replication factor 1) unless they exist, then wait
      until every partition has a leader.
  stop --dir DIR
      SIGTERM the broker, SIGKILL after ${STOP_DEADLINE_S} s.  Succeeds when
      nothing runs.
  status --dir DIR
      Exit 0 and print the bootstrap address when DIR's broker runs and
      answers, exit 1 otherwise.
  describe-group (--dir DIR | --bootstrap HOST:PORT) GROUP
      Print GROUP's committed offset, the log-end offset and the lag of
      every partition it has committed to or is assigned, sorted, then the
      total lag and the number of active members.  Exit 1 when the group
      does not exist or the broker cannot say.

Environment: KINFER_KAFKA_HOME (jar cache), KINFER_KAFKA_START_TIMEOUT
(seconds, default 90), KINFER_KAFKA_HEAP (default 768m).
EOF
}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found on PATH (run ops/deps.sh)"
}

now_ms() { date +%s%3N; }

# Canonical absolute path of $1 without requiring it to exist: the broker's
# command line embeds it, and later calls find the broker by it.
abspath() {
    realpath -m -- "$1"
}

cmd_fetch() {
    local marker="$LIBS/.complete-$KAFKA_VERSION"
    [[ -f "$marker" ]] && return 0
    need mvn
    need java
    log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS"
    local tmp="$KAFKA_HOME/libs.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    # Copy into a private directory and rename it into place, so that two
    # concurrent fetches or an interrupted one never leave a half-filled
    # libs/ behind a completion marker.
    if ! mvn -q -B -Dstyle.color=never -f "$OPS_DIR/kafka/pom.xml" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
        cat "$KAFKA_HOME/mvn.log" >&2
        rm -rf "$tmp"
        die "mvn could not resolve Kafka $KAFKA_VERSION (network? ~/.m2?)"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] ||
        { rm -rf "$tmp"; die "no kafka_2.13-$KAFKA_VERSION.jar after mvn"; }
    touch "$tmp/.complete-$KAFKA_VERSION"
    if [[ -f "$marker" ]]; then
        rm -rf "$tmp"        # another fetch won the race
        return 0
    fi
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS" 2>/dev/null || { rm -rf "$tmp"; [[ -f "$marker" ]]; }
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars"
}

# --- option parsing shared by the subcommands ------------------------------

OPT_DIR=""
OPT_PORT=""
OPT_BOOTSTRAP=""
OPT_SASL_SSL=0
ARGS=()

parse_opts() {
    ARGS=()
    while (($#)); do
        case "$1" in
        --dir) [[ $# -ge 2 ]] || die "--dir needs a value"
            OPT_DIR="$(abspath "$2")"; shift 2 ;;
        --dir=*) OPT_DIR="$(abspath "${1#--dir=}")"; shift ;;
        --port) [[ $# -ge 2 ]] || die "--port needs a value"
            OPT_PORT="$2"; shift 2 ;;
        --port=*) OPT_PORT="${1#--port=}"; shift ;;
        --bootstrap) [[ $# -ge 2 ]] || die "--bootstrap needs a value"
            OPT_BOOTSTRAP="$2"; shift 2 ;;
        --bootstrap=*) OPT_BOOTSTRAP="${1#--bootstrap=}"; shift ;;
        --sasl-ssl) OPT_SASL_SSL=1; shift ;;
        --) shift; ARGS+=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option '$1'" ;;
        *) ARGS+=("$1"); shift ;;
        esac
    done
    if [[ -n "$OPT_PORT" ]]; then
        if ! [[ "$OPT_PORT" =~ ^[1-9][0-9]{0,4}$ ]] ||
            ((OPT_PORT > 65535)); then
            die "--port must be a TCP port number, not '$OPT_PORT'"
        fi
    fi
}

require_dir() { [[ -n "$OPT_DIR" ]] || die "$1 needs --dir DIR"; }

# --- broker process helpers --------------------------------------------------

# Prints the PID of DIR's broker when one is alive, else fails.  A PID is
# only believed when its command line names this DIR's server.properties, so
# a recycled PID is never signalled.  Without a usable pid file (start died
# between launching and writing it) the process table is searched for a
# broker of this DIR.
broker_pid() {
    local dir="$1" pid=""
    if [[ -f "$dir/kafka.pid" ]]; then
        pid="$(<"$dir/kafka.pid")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && is_broker_of "$pid" "$dir"; then
            printf '%s\n' "$pid"
            return 0
        fi
    fi
    local f p
    while IFS= read -r f; do
        p="${f#/proc/}"
        p="${p%/cmdline}"
        if is_broker_of "$p" "$dir"; then
            printf '%s\n' "$p"
            return 0
        fi
    done < <(grep -alsF "$dir/server.properties" /proc/[0-9]*/cmdline || true)
    return 1
}

is_broker_of() {
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" kafka.Kafka $2/server.properties"* ]]
}

# True when the broker at $1 answers a metadata request.
answers() {
    kcat -b "$1" -L -m 2 >/dev/null 2>&1
}

# A free loopback TCP port that differs from $1 (if given).  The port may be
# taken by someone else before the broker binds it; start then fails with
# the log tail and the caller can retry.
free_port() {
    local avoid="${1:-0}" port
    if command -v python3 >/dev/null 2>&1; then
        port="$(python3 -c '
import socket, sys
avoid = int(sys.argv[1])
held = []
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    p = s.getsockname()[1]
    if p != avoid:
        print(p)
        break
' "$avoid")" || die "python3 could not find a free port"
        printf '%s\n' "$port"
        return 0
    fi
    local tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 40000))
        ((port == avoid)) && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "no free loopback port found"
}

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() {
    local dir="$1"
    if [[ -f "$dir/kafka.log" ]]; then
        log "last lines of $dir/kafka.log:"
        tail -n 40 "$dir/kafka.log" >&2 || true
    fi
}

# A Kafka cluster id: 16 random bytes in URL-safe base64 without padding,
# the format kafka.tools.StorageTool random-uuid prints (saves one JVM).
cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        # Kafka rejects ids starting with '-' (they look like options).
        [[ "$id" != -* && ${#id} -eq 22 ]] && break
    done
    printf '%s\n' "$id"
}

# Writes DIR/server.properties; a fourth argument, a port, adds the
# SASL_SSL listener (make_tls first).
write_properties() {
    local dir="$1" port="$2" cport="$3" sport="${4:-}"
    local listeners="PLAINTEXT://127.0.0.1:$port"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    [[ -z "$sport" ]] || {
        listeners="$listeners,SASL_SSL://127.0.0.1:$sport"
        protocols="$protocols,SASL_SSL:SASL_SSL"
    }
    cat >"$dir/server.properties.tmp" <<EOF
# Written by ops/kafka.sh: single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data

# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Tests create their topics explicitly; a typo must fail, not create one.
auto.create.topics.enable=false
num.partitions=1

# Test speed-ups.
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
num.io.threads=2
num.network.threads=2
# After a crash the dead incarnation stays registered until its session
# expires (default 9 s); a shorter session makes restarts after SIGKILL
# quick while still allowing eight missed heartbeats.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
EOF
    if [[ -n "$sport" ]]; then
        # PEM keystore (Kafka >= 2.7): key and chain in one file, the key
        # unencrypted, so no ssl.key.password and no keytool.
        cat >>"$dir/server.properties.tmp" <<EOF

# --sasl-ssl: SCRAM-SHA-512 over TLS; the certificate is made per start.
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/server.keystore.pem
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
    org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
    fi
    mv "$dir/server.properties.tmp" "$dir/server.properties"
}

# The PLAINTEXT listener's port in properties file $1 (empty if none).
plain_port() {
    prop "$1" advertised.listeners |
        sed -n 's|.*PLAINTEXT://[^,]*:\([0-9][0-9]*\).*|\1|p'
}

# The SASL_SSL listener's port in properties file $1 (empty if none).
sasl_port() {
    prop "$1" advertised.listeners |
        sed -n 's|.*SASL_SSL://[^,]*:\([0-9][0-9]*\).*|\1|p'
}

# A fresh throw-away CA and a server certificate for 127.0.0.1/localhost
# signed by it, in DIR/tls (ECDSA P-256: quick to make).  Clients trust
# DIR/tls/ca.pem; DIR/tls/other-ca.pem signed nothing (for tests of a
# failing handshake).
make_tls() {
    local tls="$1/tls"
    need openssl
    rm -rf "$tls"
    mkdir -p "$tls"
    chmod 700 "$tls"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    {
        openssl req -x509 "${ec[@]}" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
            -days 30 -subj "/CN=kinfer throw-away test CA" &&
        openssl req "${ec[@]}" -keyout "$tls/server.key" \
            -out "$tls/server.csr" -subj "/CN=localhost" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' \
            >"$tls/server.ext" &&
        openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" \
            -CAkey "$tls/ca.key" -CAcreateserial -days 30 \
            -extfile "$tls/server.ext" -out "$tls/server.pem" &&
        (umask 077 && cat "$tls/server.key" "$tls/server.pem" \
            >"$tls/server.keystore.pem") &&
        openssl req -x509 "${ec[@]}" -keyout "$tls/other-ca.key" \
            -out "$tls/other-ca.pem" -days 30 -subj "/CN=kinfer unrelated CA"
    } >"$tls/openssl.log" 2>&1 ||
        { cat "$tls/openssl.log" >&2; die "openssl could not make a test CA"; }
}

# The SCRAM user's password, made once per DIR (the credential lives in the
# broker's metadata, so it must survive restarts).
sasl_password() {
    local sasl="$1/sasl"
    mkdir -p "$sasl"
    chmod 700 "$sasl"
    if [[ ! -s "$sasl/password" ]]; then
        (umask 077 && openssl rand -hex 16 >"$sasl/password.tmp") ||
            die "openssl could not make a password"
        mv "$sasl/password.tmp" "$sasl/password"
    fi
    cat "$sasl/password"
}

# Client settings for the SASL_SSL listener at $2, as "key = value" lines
# that kinfer's --config and librdkafka-based tools read.
write_client_properties() {
    local dir="$1" sbootstrap="$2" pw
    pw="$(sasl_password "$dir")"
    (umask 077 && cat >"$dir/sasl/client.properties.tmp" <<EOF
# Written by ops/kafka.sh start --sasl-ssl (throw-away test credentials).
brokers = $sbootstrap
security.protocol = SASL_SSL
sasl.mechanisms = SCRAM-SHA-512
sasl.username = kinfer
sasl.password = $pw
ssl.ca.location = $dir/tls/ca.pem
EOF
    ) && mv "$dir/sasl/client.properties.tmp" "$dir/sasl/client.properties"
}

# Make sure the SCRAM user exists when the broker was formatted before
# --sasl-ssl was first used (a fresh DIR gets it at format time).
ensure_scram_user() {
    local dir="$1" bootstrap="$2" pw
    [[ -f "$dir/sasl/scram-created" ]] && return 0
    pw="$(sasl_password "$dir")"
    log "adding SCRAM user kinfer through $bootstrap"
    java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" \
        -Dlog4j.configuration="file:$LOG4J" kafka.admin.ConfigCommand \
        --bootstrap-server "$bootstrap" --alter --entity-type users \
        --entity-name kinfer \
        --add-config "SCRAM-SHA-512=[iterations=4096,password=$pw]" \
        >"$dir/scram.log" 2>&1 ||
        { cat "$dir/scram.log" >&2; die "could not add the SCRAM user"; }
    touch "$dir/sasl/scram-created"
}

# Reads KEY=VALUE $2 from properties file $1.
prop() {
    sed -n "s/^$2=//p" "$1" | tail -n 1
}

# Waits until DIR's broker answers at $2.  Fails (with the log tail) when
# the process dies or the deadline passes.
wait_ready() {
    local dir="$1" bootstrap="$2" pid="$3"
    local deadline=$(($(now_ms) + START_DEADLINE_S * 1000))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail "$dir"
            die "broker in $dir exited during start-up"
        fi
        # Cheap check first: run kcat only once the listener accepts
        # connections.
        if ! port_is_free "${bootstrap##*:}" && answers "$bootstrap"; then
            return 0
        fi
        if (($(now_ms) > deadline)); then
            log_tail "$dir"
            die "broker in $dir not ready after ${START_DEADLINE_S} s"
        fi
        sleep 0.2
    done
}

cmd_start() {
    parse_opts "$@"
    require_dir start
    ((${#ARGS[@]} == 0)) || die "start: unexpected argument '${ARGS[0]}'"
    need java
    need kcat
    local dir="$OPT_DIR" pid bootstrap
    mkdir -p "$dir"
    # Serialise starts of one DIR: two brokers on one data directory would
    # fight over its lock and ports.  The lock dies with this process.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$dir/.start.lock"
        flock -w "$((START_DEADLINE_S + 30))" 9 ||
            die "another start of $dir holds $dir/.start.lock"
    fi

    if pid="$(broker_pid "$dir")"; then
        bootstrap="$(cat "$dir/bootstrap" 2>/dev/null || true)"
        if [[ -z "$bootstrap" ]]; then
            bootstrap="127.0.0.1:$(plain_port "$dir/server.properties")"
        fi
        if ((OPT_SASL_SSL)) &&
            [[ -z "$(sasl_port "$dir/server.properties")" ]]; then
            die "broker in $dir runs without --sasl-ssl; stop it first"
        fi
        if [[ -n "$OPT_PORT" && "${bootstrap##*:}" != "$OPT_PORT" ]]; then
            log "warning: broker in $dir already runs on $bootstrap," \
                "not port $OPT_PORT"
        fi
        # It may still be starting (a concurrent start): wait for it.
        wait_ready "$dir" "$bootstrap" "$pid"
        printf '%s\n' "$bootstrap" >"$dir/bootstrap"
        printf '%s\n' "$pid" >"$dir/kafka.pid"
        printf '%s\n' "$bootstrap"
        return 0
    fi
    rm -f "$dir/kafka.pid" "$dir/bootstrap"

    cmd_fetch

    # Ports: --port wins; otherwise reuse the last run's ports when free
    # (clients that remember the address keep working), else fresh ones.
    local port="$OPT_PORT" cport=""
    if [[ -f "$dir/server.properties" ]]; then
        local old cold
        old="$(plain_port "$dir/server.properties")"
        cold="$(prop "$dir/server.properties" controller.quorum.voters)"
        cold="${cold##*:}"
        if [[ -z "$port" && "$old" =~ ^[0-9]+$ ]] && port_is_free "$old"; then
            port="$old"
        fi
        if [[ "$cold" =~ ^[0-9]+$ && "$cold" != "$port" ]] &&
            port_is_free "$cold"; then
            cport="$cold"
        fi
    fi
    [[ -n "$port" ]] || port="$(free_port)"
    [[ -n "$cport" ]] || cport="$(free_port "$port")"
    port_is_free "$port" || die "port $port on 127.0.0.1 is already in use"
    bootstrap="127.0.0.1:$port"

    local sport="" scram=()
    rm -f "$dir/sasl-ssl.bootstrap"
    if ((OPT_SASL_SSL)); then
        [[ -f "$dir/server.properties" ]] &&
            sport="$(sasl_port "$dir/server.properties")"
        if [[ ! "$sport" =~ ^[0-9]+$ ]] || ! port_is_free "$sport" ||
            [[ "$sport" == "$port" || "$sport" == "$cport" ]]; then
            sport="$(free_port "$port")"
            [[ "$sport" != "$cport" ]] || sport="$(free_port "$cport")"
        fi
        make_tls "$dir"
        write_client_properties "$dir" "127.0.0.1:$sport"
        scram=(--add-scram
               "SCRAM-SHA-512=[name=kinfer,password=$(sasl_password "$dir")]")
    fi
    write_properties "$dir" "$port" "$cport" "$sport"
    mkdir -p "$dir/data"
    if [[ ! -f "$dir/data/meta.properties" ]]; then
        log "formatting storage in $dir/data"
        if ! java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" \
            -Dlog4j.configuration="file:$LOG4J" kafka.tools.StorageTool \
            format -t "$(cluster_id)" -c "$dir/server.properties" \
            "${scram[@]}" --ignore-formatted >"$dir/format.log" 2>&1; then
            cat "$dir/format.log" >&2
            die "formatting $dir/data failed"
        fi
        ((${#scram[@]} == 0)) || touch "$dir/sasl/scram-created"
    fi

    log "starting Kafka $KAFKA_VERSION in $dir on $bootstrap"
    local t0
    t0="$(now_ms)"
    # setsid: the broker gets its own session and process group, so it
    # survives the caller's terminal and stop can signal the whole group.
    # The inner shell writes its own PID before exec'ing java, so the pid
    # file names the JVM whether or not setsid had to fork.
    # shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
    setsid bash -c 'echo $$ >"$1/kafka.pid"; shift; exec "$@"' _ "$dir" \
        java -Xmx"${KINFER_KAFKA_HEAP:-768m}" -Xms128m -XX:+UseSerialGC \
        -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J" \
        -Dkafka.logs.dir="$dir" \
        -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        </dev/null >"$dir/kafka.log" 2>&1 9>&- &
    disown "$!"   # no "Killed" job notice if the broker dies early
    local deadline=$(($(now_ms) + 5000))
    while [[ ! -s "$dir/kafka.pid" ]]; do
        if (($(now_ms) > deadline)); then
            log_tail "$dir"
            die "could not launch the broker (no $dir/kafka.pid after 5 s)"
        fi
        sleep 0.05
    done
    pid="$(<"$dir/kafka.pid")"
    printf '%s\n' "$bootstrap" >"$dir/bootstrap"

    if ! (wait_ready "$dir" "$bootstrap" "$pid"); then
        # Leave nothing behind: a half-started broker holds the ports.
        stop_broker "$dir" >/dev/null 2>&1 || true
        exit 1
    fi
    if [[ -n "$sport" ]]; then
        ensure_scram_user "$dir" "$bootstrap"
        printf '127.0.0.1:%s\n' "$sport" >"$dir/sasl-ssl.bootstrap"
        log "SASL_SSL (SCRAM-SHA-512) listener on 127.0.0.1:$sport;" \
            "client settings in $dir/sasl/client.properties"
    fi
    log "broker ready on $bootstrap in $(( $(now_ms) - t0 )) ms (pid $pid)"
    printf '%s\n' "$bootstrap"
}

stop_broker() {
    local dir="$1" pid
    if ! pid="$(broker_pid "$dir")"; then
        rm -f "$dir/kafka.pid" "$dir/bootstrap"
        return 0
    fi
    log "stopping broker $pid in $dir"
    # The JVM leads its own process group (setsid); signal the group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(($(now_ms) + STOP_DEADLINE_S * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        if (($(now_ms) > deadline)); then
            log "broker $pid ignored SIGTERM for ${STOP_DEADLINE_S} s; SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null ||
                kill -KILL "$pid" 2>/dev/null || true
            local kdeadline=$(($(now_ms) + 5000))
            while kill -0 "$pid" 2>/dev/null; do
                (($(now_ms) < kdeadline)) || die "pid $pid survived SIGKILL"
                sleep 0.1
            done
            break
        fi
        sleep 0.1
    done
    rm -f "$dir/kafka.pid" "$dir/bootstrap"
}

cmd_stop() {
    parse_opts "$@"
    require_dir stop
    ((${#ARGS[@]} == 0)) || die "stop: unexpected argument '${ARGS[0]}'"
    stop_broker "$OPT_DIR"
}

cmd_status() {
    parse_opts "$@"
    require_dir status
    need kcat
    local pid bootstrap
    pid="$(broker_pid "$OPT_DIR")" || return 1
    bootstrap="$(cat "$OPT_DIR/bootstrap" 2>/dev/null)" || return 1
    answers "$bootstrap" || return 1
    printf '%s\n' "$bootstrap"
}

# Partition count of topic $2 as the broker at $1 sees it, printed only
# when every partition has a leader; fails while the topic is unknown or
# any partition is leaderless.
topic_partitions() {
    local out
    out="$(kcat -b "$1" -L -t "$2" -m 2 2>/dev/null)" || return 1
    # kcat prints '  topic "T" with N partitions:' and then one line per
    # partition, '    partition P, leader L, ...', with an error appended
    # when something is wrong.
    awk -v t="  topic \"$2\" with " '
        index($0, t) == 1 { in_topic = 1; next }
        /^  topic / { in_topic = 0 }
        in_topic && $1 == "partition" {
            if ($4 == "-1," || $0 ~ /, Broker: /) bad = 1
            n++
        }
        END { if (n == 0 || bad) exit 1; print n }' <<<"$out"
}

cmd_create_topic() {
    parse_opts "$@"
    need java
    need kcat
    local bootstrap="$OPT_BOOTSTRAP"
    if [[ -z "$bootstrap" ]]; then
        [[ -n "$OPT_DIR" ]] ||
            die "create-topic needs --dir DIR or --bootstrap HOST:PORT"
        bootstrap="$(cat "$OPT_DIR/bootstrap" 2>/dev/null)" ||
            die "no broker address in $OPT_DIR/bootstrap (start it first)"
    fi
    local specs=()
    if ((${#ARGS[@]} == 2)) && [[ "${ARGS[0]}" != *:* ]]; then
        specs=("${ARGS[0]}:${ARGS[1]}")
    else
        specs=("${ARGS[@]}")
    fi
    ((${#specs[@]} > 0)) ||
        die "create-topic: name topics: NAME PARTITIONS or NAME:PARTITIONS..."
    local spec name parts
    for spec in "${specs[@]}"; do
        name="${spec%:*}"
        parts="${spec##*:}"
        [[ "$spec" == *:* && -n "$name" && "$parts" =~ ^[1-9][0-9]*$ ]] ||
            die "create-topic: bad topic spec '$spec' (want NAME:PARTITIONS)"
        [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] ||
            die "create-topic: bad topic name '$name'"
    done
    cmd_fetch
    # Fail in seconds, not after the admin client's 60 s timeout.
    answers "$bootstrap" || die "no Kafka broker answers at $bootstrap"

    # TopicCommand takes one topic per JVM: run up to four side by side
    # and collect every status.
    local pids=() logs=() rcs=() i=0 failed=0
    for spec in "${specs[@]}"; do
        name="${spec%:*}"
        parts="${spec##*:}"
        if ((i >= 4)); then
            rcs[i - 4]=0
            wait "${pids[i - 4]}" || rcs[i - 4]=$?
        fi
        logs[i]="$(mktemp "${TMPDIR:-/tmp}/kinfer-topic.XXXXXX")"
        java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" \
            -Dlog4j.configuration="file:$LOG4J" \
            org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "$bootstrap" \
            --create --if-not-exists --topic "$name" --partitions "$parts" \
            --replication-factor 1 </dev/null >"${logs[i]}" 2>&1 &
        pids[i]=$!
        i=$((i + 1))
    done
    for ((i = 0; i < ${#specs[@]}; i++)); do
        if [[ -z "${rcs[i]:-}" ]]; then
            rcs[i]=0
            wait "${pids[i]}" || rcs[i]=$?
        fi
        if ((rcs[i] != 0)); then
            log "creating topic '${specs[i]%:*}' failed:"
            cat "${logs[i]}" >&2
            failed=1
        fi
        rm -f "${logs[i]}"
    done
    ((failed == 0)) || exit 1

    # The controller has committed the topics; wait until the broker's
    # metadata shows a leader for every partition so callers can produce at
    # once.
    local deadline=$(($(now_ms) + 30000))
    for spec in "${specs[@]}"; do
        name="${spec%:*}"
        parts="${spec##*:}"
        local have=""
        until have="$(topic_partitions "$bootstrap" "$name")"; do
            (($(now_ms) < deadline)) ||
                die "topic '$name' has no leader for all partitions after 30 s"
            sleep 0.1
        done
        [[ "$have" == "$parts" ]] ||
            die "topic '$name' already exists with $have partitions, not $parts"
        log "topic $name ready ($parts partitions)"
    done
}

# The broker address from --bootstrap, else from --dir's bootstrap file;
# $1 names the subcommand for the error message.
bootstrap_of() {
    if [[ -n "$OPT_BOOTSTRAP" ]]; then
        printf '%s\n' "$OPT_BOOTSTRAP"
        return 0
    fi
    [[ -n "$OPT_DIR" ]] || die "$1 needs --dir DIR or --bootstrap HOST:PORT"
    cat "$OPT_DIR/bootstrap" 2>/dev/null ||
        die "no broker address in $OPT_DIR/bootstrap (start it first)"
}

cmd_describe_group() {
    parse_opts "$@"
    ((${#ARGS[@]} == 1)) || die "describe-group: name one GROUP"
    local group="${ARGS[0]}" bootstrap out
    need java
    need kcat
    bootstrap="$(bootstrap_of describe-group)"
    cmd_fetch
    # Fail in seconds, not after the admin client's timeout.
    answers "$bootstrap" || die "no Kafka broker answers at $bootstrap"
    # ConsumerGroupCommand exits 0 even when it fails: it then prints
    # "Error: ..." on stdout, which is what is checked below.  Its stderr
    # only says "has no active members", which the member count shows.
    out="$(java "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" \
        -Dlog4j.configuration="file:$LOG4J" \
        org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
        --bootstrap-server "$bootstrap" --describe --group "$group" \
        </dev/null 2>/dev/null)" ||
        die "ConsumerGroupCommand failed for group '$group'"
    if grep -q '^Error:' <<<"$out"; then
        die "${out#*Error: }"
    fi
    if ! grep -q '^GROUP  *TOPIC  *PARTITION ' <<<"$out"; then
        # An empty group that never committed prints no table at all.
        [[ -z "${out//[[:space:]]/}" ]] ||
            die "unexpected ConsumerGroupCommand output: $out"
        echo "group $group has no committed offsets and no members"
        return 0
    fi
    # Columns: GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG
    # CONSUMER-ID HOST CLIENT-ID; "-" where there is no committed offset
    # or no member.
    awk '$1 != "GROUP" && NF >= 6 && $3 ~ /^[0-9]+$/' <<<"$out" |
        sort -b -k2,2 -k3,3n | awk '
        BEGIN {
            printf "%-24s %9s %14s %14s %6s\n", "TOPIC", "PARTITION",
                "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
        }
        {
            printf "%-24s %9s %14s %14s %6s\n", $2, $3, $4, $5, $6
            if ($6 ~ /^[0-9]+$/) lag += $6; else unknown++
            if (NF >= 7 && $7 != "-") members[$7] = 1
        }
        END {
            for (m in members) n++
            printf "total lag %d", lag
            if (unknown)
                printf " (+ %d partitions without a committed offset)",
                    unknown
            printf "; active members %d\n", n
        }'
}

main() {
    (($#)) || { usage; exit 2; }
    local cmd="$1"
    shift
    case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    create-topic|create-topics) cmd_create_topic "$@" ;;
    describe-group) cmd_describe_group "$@" ;;
    help|-h|--help) usage ;;
    *) usage; exit 2 ;;
    esac
}

main "$@"
