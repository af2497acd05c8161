#!/usr/bin/env bash
# Makes sure the images that ops/Dockerfile and docker-compose.yml name
# exist on the local container engine.  A public image (debian:12,
# debian:12-slim, apache/kafka:3.9.1, prom/prometheus) is used as is when
# the engine has it or can pull it; otherwise a local stand-in is built:
#
#   kinfer-local/debian:12       Debian 12 minbase made by mmdebstrap from
#                                Debian's archive (build and runtime base)
#   kinfer-local/kafka:3.9.1     Kafka 3.9.1 from the Maven jars ops/kafka.sh
#                                fetches, a single-node KRaft broker with
#                                ops/kafka.sh's settings, configured by the
#                                same KAFKA_* variables as apache/kafka
#   kinfer-local/prometheus:2    Debian's prometheus package
#
# Prints the image names to use as NAME=VALUE lines on stdout (compose
# variables: KINFER_BASE_IMAGE, KINFER_RUNTIME_IMAGE, KAFKA_IMAGE,
# PROMETHEUS_IMAGE), progress on stderr, and the sizes of the images at the
# end.  Idempotent: an image already present is not built again (unless
# --rebuild).  `ops/images.sh --help` for the options.
set -euo pipefail

OPS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly OPS_DIR
readonly KAFKA_VERSION=3.9.1
readonly LOCAL_BASE=kinfer-local/debian:12
readonly LOCAL_KAFKA=kinfer-local/kafka:$KAFKA_VERSION
readonly LOCAL_PROMETHEUS=kinfer-local/prometheus:2
readonly STAND_IN_LABEL=org.kinfer.stand-in
# The public defaults (docker-compose.yml and ops/Dockerfile name the same).
readonly PUBLIC_BASE=debian:12
readonly PUBLIC_RUNTIME=debian:12-slim
readonly PUBLIC_KAFKA=apache/kafka:$KAFKA_VERSION
readonly PUBLIC_PROMETHEUS=prom/prometheus:v2.53.4
readonly DEBIAN_MIRROR="${KINFER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly DEBIAN_SECURITY="${KINFER_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
readonly PULL_TIMEOUT_S="${KINFER_PULL_TIMEOUT:-120}"

usage() {
    cat >&2 <<EOF
usage: ops/images.sh [--no-pull] [--rebuild] [--record FILE] [--env-file FILE]
                     [base] [kafka] [prometheus]

Resolves each image (all three kinds by default) to the public name when
the engine has it or can pull it, else to a local stand-in, built here
when missing.  The names wanted come from the environment, defaults in
brackets: KINFER_BASE_IMAGE [$PUBLIC_BASE], KINFER_RUNTIME_IMAGE
[$PUBLIC_RUNTIME], KAFKA_IMAGE [$PUBLIC_KAFKA], PROMETHEUS_IMAGE
[$PUBLIC_PROMETHEUS].  A wanted name other than the public default must
exist or be pullable (no stand-in replaces it).

  --no-pull        do not try to pull missing public images
  --rebuild        rebuild the stand-ins even when present
  --record FILE    append the name of every image this run built to FILE
  --env-file FILE  also write the NAME=VALUE lines to FILE (compose
                   --env-file format)

Needs a running engine (docker info), and for the stand-ins mmdebstrap
(base), ops/kafka.sh's jar fetch (maven, java) and network access to
Debian's archive and Maven Central.
EOF
}

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

NO_PULL=0
REBUILD=0
RECORD=""
ENV_FILE=""
KINDS=()
while (($#)); do
    case "$1" in
    --no-pull) NO_PULL=1; shift ;;
    --rebuild) REBUILD=1; shift ;;
    --record) [[ $# -ge 2 ]] || die "--record needs a file"
        RECORD="$2"; shift 2 ;;
    --env-file) [[ $# -ge 2 ]] || die "--env-file needs a file"
        ENV_FILE="$2"; shift 2 ;;
    base|kafka|prometheus) KINDS+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument '$1'" ;;
    esac
done
((${#KINDS[@]})) || KINDS=(base kafka prometheus)
REBUILD_BASE=0
[[ " ${KINDS[*]} " == *" base "* ]] && REBUILD_BASE=1

command -v docker >/dev/null 2>&1 || die "docker CLI not found on PATH"
docker info >/dev/null 2>&1 ||
    die "no container engine answers (docker info); start dockerd first" \
        "(docs/containers.md)"

now_s() { date +%s; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

record() {
    [[ -z "$RECORD" ]] || printf '%s\n' "$1" >>"$RECORD"
}

# True when the engine has image $1 or could pull it now.
present_or_pulled() {
    have_image "$1" && return 0
    ((NO_PULL)) && return 1
    # Each name is tried once per run (the callers run in subshells, so
    # the memory is a file).
    grep -qxF -- "$1" "$WORK/unpullable" 2>/dev/null && return 1
    log "pulling $1"
    if timeout "$PULL_TIMEOUT_S" docker pull -q "$1" >/dev/null 2>"$WORK/pull.err"
    then
        return 0
    fi
    log "cannot pull $1: $(tail -n 1 "$WORK/pull.err")"
    printf '%s\n' "$1" >>"$WORK/unpullable"
    return 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kinfer-images.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# --- base: Debian 12 from Debian's archive ------------------------------------

build_local_base() {
    # --rebuild remakes the base only when "base" was asked for (or no kind
    # was named): a service stand-in reuses the base it finds.
    # (The callers run in subshells: this run's memory is in files.)
    if have_image "$LOCAL_BASE" &&
        { ! ((REBUILD && REBUILD_BASE)) || [[ -f "$WORK/base-built" ]]; }; then
        [[ -f "$WORK/base-noted" ]] || log "$LOCAL_BASE present"
        touch "$WORK/base-noted"
        return 0
    fi
    command -v mmdebstrap >/dev/null 2>&1 ||
        die "mmdebstrap not found (apt-get install mmdebstrap) to build" \
            "$LOCAL_BASE"
    log "building $LOCAL_BASE with mmdebstrap (minbase bookworm)"
    local t0
    t0="$(now_s)"
    # Like debian:12-slim: no manual pages, info or translations (also in
    # every image built on it: the dpkg options stay in /etc/dpkg), no
    # recommended packages, no package lists left behind.
    if ! mmdebstrap --variant=minbase --quiet \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --aptopt='APT::Install-Recommends "false"' \
        --aptopt='APT::Install-Suggests "false"' \
        bookworm - \
        "deb $DEBIAN_MIRROR bookworm main" \
        "deb $DEBIAN_MIRROR bookworm-updates main" \
        "deb $DEBIAN_SECURITY bookworm-security main" \
        2>"$WORK/mmdebstrap.log" |
        docker import --change 'CMD ["bash"]' \
            --change "LABEL $STAND_IN_LABEL=debian-12-minbase" \
            - "$LOCAL_BASE" >/dev/null; then
        tail -n 30 "$WORK/mmdebstrap.log" >&2
        die "could not build $LOCAL_BASE (mmdebstrap or docker import failed)"
    fi
    record "$LOCAL_BASE"
    touch "$WORK/base-noted" "$WORK/base-built"
    log "built $LOCAL_BASE in $(($(now_s) - t0)) s"
}

# Resolves a base image: the wanted name $1 (public default $2) when present
# or pullable, else the local Debian.  Prints the name.
resolve_base() {
    local want="$1" public="$2"
    if present_or_pulled "$want"; then
        printf '%s\n' "$want"
        return 0
    fi
    [[ "$want" == "$public" ]] ||
        die "image $want is neither present nor pullable"
    build_local_base
    printf '%s\n' "$LOCAL_BASE"
}

# --- kafka: Apache Kafka from the Maven jars ------------------------------------

# The stand-in's start script: ops/kafka.sh's single-node KRaft settings,
# overridden by apache/kafka's KAFKA_* variables (KAFKA_FOO_BAR sets
# foo.bar; '__' stands for '_' and '___' for '-'), storage formatted with
# CLUSTER_ID on first start.
write_kafka_entrypoint() {
    cat >"$1" <<'EOF'
#!/bin/bash
# Start script of the kinfer-local Kafka stand-in (built by ops/images.sh):
# a single-node KRaft broker+controller.  Defaults follow ops/kafka.sh; the
# apache/kafka image's variables override them: KAFKA_FOO_BAR=v sets
# foo.bar=v ('__' is '_', '___' is '-'); CLUSTER_ID names the cluster when
# the storage is formatted (first start); KAFKA_HEAP_OPTS and KAFKA_OPTS
# reach the JVM.
set -euo pipefail
conf=/etc/kafka/server.properties
declare -A props=(
    [process.roles]=broker,controller
    [node.id]=1
    [controller.quorum.voters]=1@localhost:9093
    [controller.listener.names]=CONTROLLER
    # PLAINTEXT for the other containers, HOST for the host's published
    # port (the compose file advertises the host's address on it).
    [listeners]=PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:29092
    [advertised.listeners]="PLAINTEXT://$(hostname):9092,HOST://127.0.0.1:29092"
    [listener.security.protocol.map]=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT
    [inter.broker.listener.name]=PLAINTEXT
    [log.dirs]=/var/lib/kafka/data
    [offsets.topic.replication.factor]=1
    [transaction.state.log.replication.factor]=1
    [transaction.state.log.min.isr]=1
    [default.replication.factor]=1
    [min.insync.replicas]=1
    [auto.create.topics.enable]=false
    [num.partitions]=1
    [group.initial.rebalance.delay.ms]=0
    [offsets.topic.num.partitions]=1
    [transaction.state.log.num.partitions]=1
    [num.io.threads]=2
    [num.network.threads]=2
    [broker.heartbeat.interval.ms]=500
    [broker.session.timeout.ms]=4000
)
while IFS= read -r var; do
    case "$var" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|\
    KAFKA_GC_LOG_OPTS|KAFKA_JMX_OPTS|KAFKA_DEBUG|KAFKA_VERSION|KAFKA_TOOL_OPTS)
        continue ;;
    KAFKA_?*) ;;
    *) continue ;;
    esac
    name="${var#KAFKA_}"
    name="${name,,}"
    name="${name//___/-}"
    name="${name//__/$'\001'}"
    name="${name//_/.}"
    name="${name//$'\001'/_}"
    props[$name]="${!var}"
done < <(compgen -e)
{
    echo "# Written by the kinfer-local Kafka stand-in at start."
    for key in "${!props[@]}"; do
        printf '%s=%s\n' "$key" "${props[$key]}"
    done | sort
} >"$conf"

logdir="${props[log.dirs]%%,*}"
mkdir -p "$logdir"
if [[ ! -f "$logdir/meta.properties" ]]; then
    id="${CLUSTER_ID:-}"
    while [[ -z "$id" || "$id" == -* ]]; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    echo "formatting $logdir for cluster $id" >&2
    /opt/kafka/bin/kafka-storage.sh format -t "$id" -c "$conf" \
        --ignore-formatted >&2
fi
# shellcheck disable=SC2086 # the *_OPTS are word lists
exec java ${KAFKA_HEAP_OPTS:--Xmx768m -Xms128m} \
    ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -Djava.awt.headless=true} \
    ${KAFKA_OPTS:-} \
    -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
    -Dkafka.logs.dir=/tmp \
    -cp '/opt/kafka/libs/*' kafka.Kafka "$conf"
EOF
}

# The tools the compose file and the container test use, under the names
# and paths apache/kafka ships them (/opt/kafka/bin/NAME.sh).
write_kafka_tools() {
    local bin="$1"
    cat >"$bin/kafka-run-class.sh" <<'EOF'
#!/bin/bash
# kinfer-local Kafka stand-in: runs a Kafka class with a small client JVM.
# shellcheck disable=SC2086
exec java ${KAFKA_TOOL_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto -Xmx256m} \
    -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
    -cp '/opt/kafka/libs/*' "$@"
EOF
    local pair name class
    for pair in \
        kafka-topics:org.apache.kafka.tools.TopicCommand \
        kafka-consumer-groups:org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
        kafka-broker-api-versions:kafka.admin.BrokerApiVersionsCommand \
        kafka-storage:kafka.tools.StorageTool \
        kafka-get-offsets:org.apache.kafka.tools.GetOffsetShell \
        kafka-console-consumer:org.apache.kafka.tools.consumer.ConsoleConsumer \
        kafka-console-producer:kafka.tools.ConsoleProducer; do
        name="${pair%%:*}"
        class="${pair#*:}"
        printf '#!/bin/bash\nexec /opt/kafka/bin/kafka-run-class.sh %s "$@"\n' \
            "$class" >"$bin/$name.sh"
    done
    chmod 755 "$bin"/*.sh
}

build_local_kafka() {
    local base="$1"
    if have_image "$LOCAL_KAFKA" && ((!REBUILD)); then
        log "$LOCAL_KAFKA present"
        return 0
    fi
    log "fetching the Kafka $KAFKA_VERSION jars (ops/kafka.sh fetch)"
    bash "$OPS_DIR/kafka.sh" fetch
    local cache="${KINFER_KAFKA_HOME:-${HOME:?}/.cache/kinfer/kafka-$KAFKA_VERSION}"
    [[ -f "$cache/libs/.complete-$KAFKA_VERSION" ]] ||
        die "no complete jar set in $cache/libs after ops/kafka.sh fetch"
    local ctx="$WORK/kafka"
    mkdir -p "$ctx/opt/bin" "$ctx/opt/config"
    cp -a "$cache/libs" "$ctx/opt/libs"
    rm -f "$ctx/opt/libs/.complete-$KAFKA_VERSION"
    cp "$OPS_DIR/kafka/log4j.properties" "$ctx/opt/config/"
    write_kafka_entrypoint "$ctx/opt/bin/kafka-entrypoint.sh"
    write_kafka_tools "$ctx/opt/bin"
    # One apt layer and one copy: vfs stores every layer in full.  The man
    # directory must exist for the JRE's update-alternatives (the base
    # leaves manual pages out).  appuser, uid 1000, as in apache/kafka.
    cat >"$ctx/Dockerfile" <<EOF
ARG BASE_IMAGE
FROM \${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN mkdir -p /usr/share/man/man1 \\
    && apt-get update \\
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \\
    && useradd --system --uid 1000 --user-group --home-dir /opt/kafka \\
        --no-create-home --shell /usr/sbin/nologin appuser \\
    && mkdir -p /var/lib/kafka/data /etc/kafka \\
    && chown appuser:appuser /var/lib/kafka/data /etc/kafka
COPY opt /opt/kafka
ENV PATH=/opt/kafka/bin:\$PATH
LABEL $STAND_IN_LABEL=kafka-$KAFKA_VERSION-maven-jars
USER appuser
WORKDIR /opt/kafka
EXPOSE 9092 9093 29092
ENTRYPOINT ["/opt/kafka/bin/kafka-entrypoint.sh"]
EOF
    log "building $LOCAL_KAFKA on $base"
    local t0
    t0="$(now_s)"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" \
        -t "$LOCAL_KAFKA" "$ctx" >"$WORK/kafka-build.log" 2>&1 || {
        tail -n 40 "$WORK/kafka-build.log" >&2
        die "could not build $LOCAL_KAFKA"
    }
    record "$LOCAL_KAFKA"
    log "built $LOCAL_KAFKA in $(($(now_s) - t0)) s"
}

# --- prometheus: Debian's package -------------------------------------------------

build_local_prometheus() {
    local base="$1"
    if have_image "$LOCAL_PROMETHEUS" && ((!REBUILD)); then
        log "$LOCAL_PROMETHEUS present"
        return 0
    fi
    local ctx="$WORK/prometheus"
    mkdir -p "$ctx"
    # Laid out like prom/prometheus: config in /etc/prometheus/prometheus.yml,
    # data in /prometheus, user nobody.  The stand-in serves the HTTP API and
    # scrapes; the JavaScript libraries of the web UI (218 MB of
    # /usr/share/javascript) are left out.
    cat >"$ctx/Dockerfile" <<EOF
ARG BASE_IMAGE
FROM \${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \\
    && apt-get install -y --no-install-recommends prometheus \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \\
        /usr/share/javascript /usr/share/nodejs \\
    && mkdir -p /prometheus && chown nobody:nogroup /prometheus
LABEL $STAND_IN_LABEL=prometheus-debian-package
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", \\
     "--storage.tsdb.path=/prometheus"]
EOF
    log "building $LOCAL_PROMETHEUS on $base"
    local t0
    t0="$(now_s)"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" \
        -t "$LOCAL_PROMETHEUS" "$ctx" >"$WORK/prom-build.log" 2>&1 || {
        tail -n 40 "$WORK/prom-build.log" >&2
        die "could not build $LOCAL_PROMETHEUS"
    }
    record "$LOCAL_PROMETHEUS"
    log "built $LOCAL_PROMETHEUS in $(($(now_s) - t0)) s"
}

# A service image: the wanted name $2 (public default $3) when present or
# pullable, else the stand-in built by function $4 on the resolved base.
resolve_service() {
    local want="$1" public="$2" builder="$3" local_name="$4"
    if present_or_pulled "$want"; then
        printf '%s\n' "$want"
        return 0
    fi
    [[ "$want" == "$public" ]] ||
        die "image $want is neither present nor pullable"
    "$builder" "$(resolve_base "${KINFER_BASE_IMAGE:-$PUBLIC_BASE}" \
        "$PUBLIC_BASE")"
    printf '%s\n' "$local_name"
}

# --- main --------------------------------------------------------------------------

LINES=()
NAMES=()
for kind in "${KINDS[@]}"; do
    case "$kind" in
    base)
        b="$(resolve_base "${KINFER_BASE_IMAGE:-$PUBLIC_BASE}" "$PUBLIC_BASE")"
        r="$(resolve_base "${KINFER_RUNTIME_IMAGE:-$PUBLIC_RUNTIME}" \
            "$PUBLIC_RUNTIME")"
        LINES+=("KINFER_BASE_IMAGE=$b" "KINFER_RUNTIME_IMAGE=$r")
        NAMES+=("$b" "$r") ;;
    kafka)
        k="$(resolve_service "${KAFKA_IMAGE:-$PUBLIC_KAFKA}" "$PUBLIC_KAFKA" \
            build_local_kafka "$LOCAL_KAFKA")"
        LINES+=("KAFKA_IMAGE=$k")
        NAMES+=("$k") ;;
    prometheus)
        p="$(resolve_service "${PROMETHEUS_IMAGE:-$PUBLIC_PROMETHEUS}" \
            "$PUBLIC_PROMETHEUS" build_local_prometheus "$LOCAL_PROMETHEUS")"
        LINES+=("PROMETHEUS_IMAGE=$p")
        NAMES+=("$p") ;;
    esac
done

printf '%s\n' "${LINES[@]}"
if [[ -n "$ENV_FILE" ]]; then
    printf '%s\n' "${LINES[@]}" >"$ENV_FILE"
fi
log "images (docker image ls):"
printf '%s\n' "${NAMES[@]}" | sort -u | while IFS= read -r name; do
    docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' "$name"
done >&2
