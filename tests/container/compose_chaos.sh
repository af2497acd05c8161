#!/usr/bin/env bash
# The container test (ctest label "container"): builds the images
# (ops/images.sh stand-ins where the public ones cannot be pulled, the kinfer
# image from ops/Dockerfile), runs docker-compose.yml with three workers and
# Prometheus (profile observe), and while the host sends 20,000 requests
# through the broker's published port: SIGKILLs one worker, scales to five,
# then to two.  Checks that every request is answered right
# (kinfer-produce --await), prints the duplicates and the failover time,
# then stops the workers with SIGTERM and checks that each exited 0 within
# its shutdown budget, that the group's committed offsets equal the end
# offsets, and that Prometheus saw every replica at every scale.  Cleans up
# containers, networks, volumes and the images it built, and the engine
# when it started one.
#
# usage: compose_chaos.sh --produce PATH [--source-dir DIR] [--work-dir DIR]
#
# Runs only when KINFER_CONTAINER_TEST=1 (ops/test.sh's container stage sets
# it; the ordinary ctest runs skip it, exit 77).  Needs root to start an
# engine when none answers; without one it is skipped with the reason.
#
# Environment: KINFER_CT_REQUESTS (20000), KINFER_CT_RATE (requests/s, 200),
# KINFER_CT_KEEP_IMAGES=1 (keep the images for the next run).
set -euo pipefail

readonly SKIP=77
readonly SHUTDOWN_BUDGET_MS=11500   # --drain-timeout 10 s + 1.5 s
readonly STOP_SLACK_MS=1500         # docker's own signal and reap time
readonly GRACE_S=20                 # stop_grace_period in docker-compose.yml
readonly REQUESTS="${KINFER_CT_REQUESTS:-20000}"
readonly RATE="${KINFER_CT_RATE:-200}"
readonly PARTITIONS=6

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PRODUCE=""
WORK=""
while (($#)); do
    case "$1" in
    --produce) PRODUCE="$2"; shift 2 ;;
    --source-dir) ROOT="$(cd "$2" && pwd)"; shift 2 ;;
    --work-dir) WORK="$2"; shift 2 ;;
    *) echo "compose_chaos.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

T0_MS=""
now_ms() { date +%s%3N; }
say() {
    local t=""
    [[ -z "$T0_MS" ]] || t="$(awk -v d="$(($(now_ms) - T0_MS))" \
        'BEGIN { printf "[%6.1f s] ", d / 1000 }')"
    printf '%s%s\n' "$t" "$*"
}
fail() { say "FAIL: $*" >&2; exit 1; }
skip() { say "SKIPPED: $*"; exit "$SKIP"; }

if [[ "${KINFER_CONTAINER_TEST:-0}" != 1 ]]; then
    skip "the container test runs in ops/test.sh's container stage" \
        "(or set KINFER_CONTAINER_TEST=1)"
fi
[[ -x "$PRODUCE" ]] || fail "--produce must name the built kinfer-produce"
T0_MS="$(now_ms)"

# --- the engine -------------------------------------------------------------

# Docker, Compose v1 and mmdebstrap from Debian when missing (root only).
install_tools() {
    local pkgs=() pkg
    if ! command -v docker >/dev/null 2>&1 ||
        { ! docker info >/dev/null 2>&1 &&
          ! command -v dockerd >/dev/null 2>&1; }; then
        pkgs+=(docker.io)
    fi
    command -v docker-compose >/dev/null 2>&1 || {
        docker compose version >/dev/null 2>&1 || pkgs+=(docker-compose)
    }
    command -v mmdebstrap >/dev/null 2>&1 || pkgs+=(mmdebstrap)
    ((${#pkgs[@]})) || return 0
    ((EUID == 0)) || skip "no container engine: ${pkgs[*]} missing and not" \
        "root to install them"
    command -v apt-get >/dev/null 2>&1 ||
        skip "no container engine: ${pkgs[*]} missing and no apt-get"
    say "installing ${pkgs[*]} (apt-get)"
    for pkg in update "install -y --no-install-recommends ${pkgs[*]}"; do
        # shellcheck disable=SC2086 # $pkg is the apt-get argument list
        DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0 $pkg \
            </dev/null >"$WORK/apt.log" 2>&1 ||
            { tail -n 20 "$WORK/apt.log" >&2; fail "apt-get $pkg failed"; }
    done
}

ENGINE_DIR=""
DOCKERD_PID=""

# Uses the engine that answers, or starts Debian's dockerd (vfs storage:
# no overlayfs in a sandbox) on a private socket; skips when neither works.
start_engine() {
    if docker info >/dev/null 2>&1; then
        say "engine: $(docker version -f '{{.Server.Version}}' 2>/dev/null)" \
            "(already running, used as is)"
        return 0
    fi
    ((EUID == 0)) || skip "no container engine answers (docker info) and" \
        "not root to start dockerd"
    command -v dockerd >/dev/null 2>&1 ||
        skip "no container engine answers and dockerd is not installed"
    ENGINE_DIR="$(mktemp -d /tmp/kinfer-engine.XXXXXX)"
    export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
    say "engine: starting dockerd (vfs) in $ENGINE_DIR"
    setsid dockerd --host "$DOCKER_HOST" --data-root "$ENGINE_DIR/root" \
        --exec-root "$ENGINE_DIR/exec" --pidfile "$ENGINE_DIR/dockerd.pid" \
        --storage-driver vfs </dev/null >"$ENGINE_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local deadline=$(($(now_ms) + 60000))
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 20 "$ENGINE_DIR/dockerd.log" >&2
            DOCKERD_PID=""
            skip "dockerd could not start (log above): no container engine"
        fi
        (($(now_ms) < deadline)) || {
            tail -n 20 "$ENGINE_DIR/dockerd.log" >&2
            fail "dockerd (pid $DOCKERD_PID) did not answer within 60 s"
        }
        sleep 0.2
    done
    say "engine: dockerd $(docker version -f '{{.Server.Version}}') ready" \
        "(pid $DOCKERD_PID)"
}

stop_engine() {
    [[ -n "$DOCKERD_PID" ]] || return 0
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    local deadline=$(($(now_ms) + 30000))
    while kill -0 "$DOCKERD_PID" 2>/dev/null; do
        if (($(now_ms) > deadline)); then
            kill -KILL "$DOCKERD_PID" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=""
    # vfs keeps full copies of every layer: gigabytes.
    [[ -z "$ENGINE_DIR" ]] || rm -rf "$ENGINE_DIR"
}

# --- compose ----------------------------------------------------------------

COMPOSE=()
PROJECT="kinferct$$"
pick_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        fail "neither 'docker compose' nor 'docker-compose' is available"
    fi
    say "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>&1))"
    COMPOSE+=(--project-name "$PROJECT" --file "$ROOT/docker-compose.yml"
              --profile observe)
}
compose() { "${COMPOSE[@]}" "$@"; }

# Container ids of a service, running ones only unless $2 is "all".
service_ids() {
    local filter=(--filter "label=com.docker.compose.project=$PROJECT"
                  --filter "label=com.docker.compose.service=$1")
    if [[ "${2:-}" == all ]]; then
        docker ps -aq "${filter[@]}"
    else
        docker ps -q "${filter[@]}"
    fi
}
count_lines() { grep -c . || true; }

ip_of() {
    docker inspect -f \
        '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"
}
name_of() { docker inspect -f '{{.Name}}' "$1" | sed 's|^/||'; }

# waitfor SECONDS WHAT COMMAND...: run COMMAND until it succeeds.
waitfor() {
    local secs="$1" what="$2" deadline
    shift 2
    deadline=$(($(now_ms) + secs * 1000))
    until "$@"; do
        (($(now_ms) < deadline)) || fail "$what: not within $secs s"
        sleep 0.5
    done
}

# N running worker containers, every one healthy.
workers_healthy() {
    local want="$1" ids id n=0
    ids="$(service_ids worker)"
    for id in $ids; do
        [[ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" == healthy ]] ||
            return 1
        n=$((n + 1))
    done
    ((n == want))
}

# Prometheus' up{job="kinfer-worker"} == 1 targets are exactly the running
# workers' addresses.
PROM=""
prometheus_sees_workers() {
    local want got
    want="$(for id in $(service_ids worker); do
        printf '%s:8080\n' "$(ip_of "$id")"
    done | sort)"
    got="$(python3 -c '
import json, sys, urllib.parse, urllib.request
q = urllib.parse.urlencode({"query": "up{job=\"kinfer-worker\"} == 1"})
with urllib.request.urlopen(sys.argv[1] + "/api/v1/query?" + q,
                            timeout=5) as r:
    for res in json.load(r)["data"]["result"]:
        print(res["metric"]["instance"])' "$PROM" 2>/dev/null | sort)" ||
        return 1
    [[ -n "$want" && "$got" == "$want" ]]
}

# Partitions a worker holds now, from its log's assigned/revoked/lost lines.
held_partitions() {
    docker logs "$1" 2>&1 | awk '
        match($0, /(assigned|revoked|lost) partitions \[[^]]*\]/) {
            s = substr($0, RSTART, RLENGTH)
            add = s ~ /^assigned/
            sub(/^[^[]*\[/, "", s); sub(/\]$/, "", s)
            n = split(s, ps, ",")
            for (i = 1; i <= n; i++)
                if (add) held[ps[i]] = 1; else delete held[ps[i]]
        }
        END {
            out = ""
            for (p = 0; p < 1000; p++)
                if (p in held) out = out (out == "" ? "" : ",") p
            print out
        }'
}

# The epoch ms at which every partition in $1 (comma list) had been
# assigned to one of the running workers after epoch ms $2; fails while
# some is not.
reassigned_at() {
    local parts="$1" after="$2" id
    for id in $(service_ids worker); do
        docker logs "$id" 2>&1 | sed -n 's/^\([0-9T:.-]*Z\) .*assigned partitions \[\([0-9,]*\)\].*/\1 \2/p'
    done | python3 -c '
import sys, datetime
want = set(sys.argv[1].split(","))
after = int(sys.argv[2])
first = {}
for line in sys.stdin:
    ts, parts = line.split()
    t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000
    if t < after:
        continue
    for p in parts.split(","):
        if p in want:
            first[p] = min(first.get(p, t), t)
if set(first) != want:
    sys.exit(1)
print(int(max(first.values())))' "$parts" "$after"
}

# The last "answered N" of kinfer-produce's progress lines.
answered() {
    sed -n 's/^sent [0-9/]* answered \([0-9]*\)$/\1/p' "$WORK/produce.err" |
        tail -n 1 | grep . || echo 0
}
answered_at_least() { (($(answered) >= $1)); }
produce_running() { kill -0 "$PRODUCE_PID" 2>/dev/null; }

# --- cleanup ------------------------------------------------------------------

PRODUCE_PID=""
EVENTS_PID=""
KINFER_IMAGE_TAG=""
DANGLING_BEFORE=""
IMAGES_TOUCHED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z "$PRODUCE_PID" ]] || kill -TERM "$PRODUCE_PID" 2>/dev/null || true
    [[ -z "$EVENTS_PID" ]] || kill -TERM "$EVENTS_PID" 2>/dev/null || true
    if ((rc != 0)) && ((${#COMPOSE[@]})); then
        say "--- on failure: compose ps and the last worker/broker lines"
        compose ps 2>&1 || true
        local id
        for id in $(service_ids worker all) $(service_ids kafka all); do
            echo "--- $(name_of "$id")"
            docker logs --tail 15 "$id" 2>&1 || true
        done
    fi
    if ((${#COMPOSE[@]})); then
        compose down --volumes --remove-orphans --timeout "$GRACE_S" \
            >"$WORK/down.log" 2>&1 || {
            cat "$WORK/down.log" >&2
            say "warning: compose down failed"
        }
    fi
    # Images go with an engine this test started; on a running engine only
    # what this run built is removed.
    if ((IMAGES_TOUCHED)) && [[ -z "$DOCKERD_PID" ]] &&
        [[ "${KINFER_CT_KEEP_IMAGES:-0}" != 1 ]] && docker info >/dev/null 2>&1
    then
        local imgs=() img
        [[ -z "$KINFER_IMAGE_TAG" ]] || imgs+=("$KINFER_IMAGE_TAG")
        if [[ -f "$WORK/built-images" ]]; then
            while IFS= read -r img; do imgs+=("$img"); done \
                <"$WORK/built-images"
        fi
        # Untagged leftovers of this run's builds (the build stage).
        for img in $(docker image ls -q --filter dangling=true); do
            grep -qxF "$img" <<<"$DANGLING_BEFORE" || imgs+=("$img")
        done
        if ((${#imgs[@]})); then
            docker image rm -f "${imgs[@]}" >/dev/null 2>&1 ||
                say "warning: could not remove every image: ${imgs[*]}"
        fi
    fi
    stop_engine
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. engine and images -------------------------------------------------------

[[ -n "$WORK" ]] || WORK="$(mktemp -d "${TMPDIR:-/tmp}/kinfer-ct.XXXXXX")"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
rm -f "$WORK/built-images" "$WORK/produce.err" "$WORK/events"
install_tools
start_engine
pick_compose
DANGLING_BEFORE="$(docker image ls -q --filter dangling=true)"
IMAGES_TOUCHED=1

say "=== images (ops/images.sh)"
t="$(now_ms)"
bash "$ROOT/ops/images.sh" --record "$WORK/built-images" \
    --env-file "$WORK/images.env" >/dev/null 2>"$WORK/images.log" ||
    { cat "$WORK/images.log" >&2; fail "ops/images.sh failed"; }
sed 's/^/    /' "$WORK/images.log"
set -a
# shellcheck disable=SC1091
. "$WORK/images.env"
set +a
IMAGES_S=$((($(now_ms) - t) / 1000))

say "=== kinfer image (ops/Dockerfile on $KINFER_BASE_IMAGE /" \
    "$KINFER_RUNTIME_IMAGE)"
KINFER_IMAGE_TAG="kinfer-ct:$PROJECT"
t="$(now_ms)"
DOCKER_BUILDKIT=0 docker build -f "$ROOT/ops/Dockerfile" \
    --build-arg "KINFER_BASE_IMAGE=$KINFER_BASE_IMAGE" \
    --build-arg "KINFER_RUNTIME_IMAGE=$KINFER_RUNTIME_IMAGE" \
    -t "$KINFER_IMAGE_TAG" "$ROOT" >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log" >&2; fail "docker build of ops/Dockerfile"; }
BUILD_S=$((($(now_ms) - t) / 1000))
export KINFER_IMAGE="$KINFER_IMAGE_TAG"
say "built $KINFER_IMAGE in $BUILD_S s"
[[ "$(docker image inspect -f '{{.Config.User}}' "$KINFER_IMAGE")" == 10001:10001 ]] ||
    fail "the kinfer image does not run as the non-root user 10001"
docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$KINFER_IMAGE" |
    grep -q -- '--probe' || fail "the kinfer image has no --probe HEALTHCHECK"

# --- 2. the stack -------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
KINFER_KAFKA_HOST_PORT="$(free_port)"
KINFER_PROMETHEUS_HOST_PORT="$(free_port)"
while [[ "$KINFER_PROMETHEUS_HOST_PORT" == "$KINFER_KAFKA_HOST_PORT" ]]; do
    KINFER_PROMETHEUS_HOST_PORT="$(free_port)"
done
export KINFER_KAFKA_HOST_PORT KINFER_PROMETHEUS_HOST_PORT
BROKER="127.0.0.1:$KINFER_KAFKA_HOST_PORT"
PROM="http://127.0.0.1:$KINFER_PROMETHEUS_HOST_PORT"

# Every start, SIGKILL, SIGTERM and exit of the project's containers.
docker events --filter "label=com.docker.compose.project=$PROJECT" \
    --filter type=container --filter event=start --filter event=kill \
    --filter event=die \
    --format '{{.TimeNano}} {{.Action}} {{.ID}} {{index .Actor.Attributes "name"}} sig={{index .Actor.Attributes "signal"}} code={{index .Actor.Attributes "exitCode"}}' \
    >"$WORK/events" 2>&1 &
EVENTS_PID=$!

say "=== up -d --scale worker=3 (project $PROJECT, broker $BROKER," \
    "Prometheus $PROM)"
t="$(now_ms)"
compose up -d --no-build --scale worker=3 >"$WORK/up.log" 2>&1 ||
    { cat "$WORK/up.log" >&2; fail "compose up"; }
waitfor 180 "3 healthy workers" workers_healthy 3
UP_S=$((($(now_ms) - t) / 1000))
say "3 workers healthy ${UP_S} s after up (broker healthy, topics created)"
waitfor 90 "Prometheus sees the 3 workers" prometheus_sees_workers
say "Prometheus: up == 1 for exactly the 3 workers"

# --- 3. load and chaos ----------------------------------------------------------------

say "=== load: $REQUESTS requests at $RATE req/s from the host via $BROKER"
"$PRODUCE" --brokers "$BROKER" --generate "$REQUESTS" --rate "$RATE" \
    --await --timeout 120 --json >"$WORK/produce.json" \
    2>"$WORK/produce.err" </dev/null &
PRODUCE_PID=$!

waitfor 120 "2500 answers" answered_at_least 2500
victim=""
victim_parts=""
for id in $(service_ids worker); do
    victim_parts="$(held_partitions "$id")"
    if [[ -n "$victim_parts" ]]; then victim="$id"; break; fi
done
[[ -n "$victim" ]] || fail "no worker holds a partition"
VICTIM_NAME="$(name_of "$victim")"
KILL_MS="$(now_ms)"
docker kill --signal KILL "$victim" >/dev/null
say "chaos: SIGKILL $VICTIM_NAME, holding partitions [$victim_parts]," \
    "at $(answered) answered"

reassigned() { REASSIGNED_MS="$(reassigned_at "$victim_parts" "$KILL_MS")"; }
REASSIGNED_MS=""
waitfor 60 "partitions [$victim_parts] reassigned" reassigned
FAILOVER_MS=$((REASSIGNED_MS - KILL_MS))
say "failover: partitions [$victim_parts] assigned to the survivors" \
    "$FAILOVER_MS ms after the SIGKILL"

A0="$(answered)"
t="$(now_ms)"
compose up -d --no-build --no-recreate --scale worker=5 \
    >"$WORK/up5.log" 2>&1 || { cat "$WORK/up5.log" >&2; fail "scale to 5"; }
waitfor 180 "5 healthy workers" workers_healthy 5
say "chaos: scaled to 5 workers, all healthy in $((($(now_ms) - t) / 1000)) s"
waitfor 90 "Prometheus sees the 5 workers" prometheus_sees_workers
say "Prometheus: up == 1 for exactly the 5 workers"
waitfor 120 "answers flowing with 5 workers" answered_at_least $((A0 + 1000))

t="$(now_ms)"
compose up -d --no-build --no-recreate --scale worker=2 \
    >"$WORK/up2.log" 2>&1 || { cat "$WORK/up2.log" >&2; fail "scale to 2"; }
say "chaos: scaled to 2 workers in $((($(now_ms) - t) / 1000)) s" \
    "(SIGTERM to 3), at $(answered) answered"
waitfor 90 "Prometheus sees the 2 workers" prometheus_sees_workers
say "Prometheus: up == 1 for exactly the 2 workers"
if ! produce_running; then
    say "note: the producer had finished before the last scaling step"
fi

produce_rc=0
wait "$PRODUCE_PID" || produce_rc=$?
PRODUCE_PID=""
{ grep -v '^sent [0-9/]* answered [0-9]*$' "$WORK/produce.err" || true; } |
    sed 's/^/    kinfer-produce: /' | tail -n 20
((produce_rc == 0)) ||
    fail "kinfer-produce exited $produce_rc: not every request answered right"
read -r SENT ANSWERED ERRORS WRONG MISSING DUPS MAXLAT P99 THRU < <(
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
l = s.get("latency_ms") or {}
print(s["sent"], s["answered"], s["errors"], s["wrong"], s["missing"],
      s["duplicates"], l.get("max", 0), l.get("p99", 0), s["throughput"])' \
        "$WORK/produce.json") || fail "no JSON summary from kinfer-produce"
say "load: sent $SENT answered $ANSWERED errors $ERRORS wrong $WRONG" \
    "missing $MISSING duplicates $DUPS (p99 $P99 ms, max $MAXLAT ms," \
    "$THRU req/s)"
((SENT == REQUESTS && ANSWERED == REQUESTS && ERRORS == 0 && WRONG == 0 &&
  MISSING == 0)) || fail "not every request was answered right"
# A duplicate is a request answered twice: answered by the killed worker
# (or a worker handing a partition over) after its last commit.  Commits
# run every 5 s, so at most ~6 s of the moved partitions' traffic; bounded
# here by 6 s of the whole stream.
DUP_BOUND=$((RATE * 6))
((DUPS <= DUP_BOUND)) ||
    fail "$DUPS duplicates, more than 6 s of traffic ($DUP_BOUND)"

# --- 4. stop, exit codes, offsets --------------------------------------------------

say "=== stop (SIGTERM) the 2 workers"
stop_ids="$(service_ids worker)"
t="$(now_ms)"
compose stop worker >"$WORK/stop.log" 2>&1 ||
    { cat "$WORK/stop.log" >&2; fail "compose stop worker"; }
STOP_MS=$(($(now_ms) - t))
for id in $stop_ids; do
    code="$(docker inspect -f '{{.State.ExitCode}}' "$id")"
    [[ "$code" == 0 ]] || fail "$(name_of "$id") exited $code after SIGTERM"
done
say "both workers exited 0; compose stop took $STOP_MS ms"

# Every SIGTERM the workers got (scale-down and stop): its exit status and
# the time from the signal to the exit; and the SIGKILLed one.
kill "$EVENTS_PID" 2>/dev/null || true
wait "$EVENTS_PID" 2>/dev/null || true
EVENTS_PID=""
worker_exits="$(awk -v budget="$SHUTDOWN_BUDGET_MS" -v slack="$STOP_SLACK_MS" '
    { for (i = 5; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
    $4 !~ /worker/ { next }
    $2 == "kill" { sig[$3] = f["sig"]; at[$3] = $1; next }
    $2 == "die" {
        name = $4; code = f["code"]; s = sig[$3]; delete sig[$3]
        if (s == "9" || s == "KILL" || s == "SIGKILL") {
            printf "  %s: SIGKILL -> exit %s\n", name, code
            if (code != 137) bad = 1
            next
        }
        if (s != "15" && s != "TERM" && s != "SIGTERM") {
            printf "  %s: exit %s without a signal\n", name, code
            bad = 1
            next
        }
        ms = ($1 - at[$3]) / 1e6
        printf "  %s: SIGTERM -> exit %s in %.0f ms\n", name, code, ms
        if (code != 0 || ms > budget + slack) bad = 1
        if (ms > max) max = ms
        sigterm++
    }
    END {
        printf "  worker exits after SIGTERM: %d, slowest %.0f ms (budget %d ms + %d ms)\n",
            sigterm, max, budget, slack
        exit bad
    }' "$WORK/events")" || {
    printf '%s\n' "$worker_exits"
    fail "a worker did not exit 0 within its budget after a SIGTERM," \
        "or died unasked"
}
printf '%s\n' "$worker_exits"
[[ "$(grep -c 'SIGTERM -> exit' <<<"$worker_exits")" -ge 5 ]] ||
    fail "expected 5 SIGTERM exits (3 scaled down, 2 stopped)"

kafka_id="$(service_ids kafka)"
docker exec "$kafka_id" /opt/kafka/bin/kafka-consumer-groups.sh \
    --bootstrap-server kafka:9092 --describe --group kinfer \
    >"$WORK/group.txt" 2>"$WORK/group.err" ||
    { cat "$WORK/group.err" >&2; fail "kafka-consumer-groups --describe"; }
offsets="$(awk -v n="$PARTITIONS" -v total="$REQUESTS" '
    $2 == "kinfer.requests" && $3 ~ /^[0-9]+$/ {
        rows++; cur += $4; end += $5
        if ($4 != $5) { printf "partition %s: committed %s, end %s\n", $3, $4, $5; bad = 1 }
    }
    END {
        printf "committed %d = end %d over %d partitions\n", cur, end, rows
        if (rows != n || end != total) bad = 1
        exit bad
    }' "$WORK/group.txt")" || {
    cat "$WORK/group.txt" >&2
    fail "committed offsets differ from the end offsets: $offsets"
}
say "offsets: $offsets"

# --- 5. summary ------------------------------------------------------------------------

say "=== summary"
echo "  images:"
for img in "$KINFER_IMAGE" "$KAFKA_IMAGE" "$PROMETHEUS_IMAGE" \
    "$KINFER_BASE_IMAGE"; do
    docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$img"
done | sort -u | sed 's/^/    /'
echo "  times: stand-in images ${IMAGES_S} s, kinfer image ${BUILD_S} s," \
    "up to 3 healthy workers ${UP_S} s, total" \
    "$((($(now_ms) - T0_MS) / 1000)) s"
echo "  failover: partitions [$victim_parts] of the SIGKILLed worker" \
    "reassigned after $FAILOVER_MS ms; slowest answer $MAXLAT ms"
echo "  requests: $SENT sent, $ANSWERED answered right, $DUPS duplicates" \
    "(bound $DUP_BOUND)"
echo "  shutdown: every SIGTERMed worker exited 0 within" \
    "$((SHUTDOWN_BUDGET_MS + STOP_SLACK_MS)) ms; $offsets"
echo "  prometheus: saw exactly the running workers at 3, 5 and 2 replicas"
say "container test passed"
