#!/usr/bin/env bash
# The memory benchmark (issue 11): on a throw-away local broker, show that
# kinfer-worker's resident memory is bounded by its in-flight limits and
# not by the traffic it has seen or the backlog waiting for it.
#
#   soak     a default worker answers N requests (default 1,000,000) sent
#            at a steady rate below capacity; RSS sampled every second.
#   backlog  N requests (default 1,000,000) are preloaded, then a worker
#            serving a deliberately slow model (kinfer_bench_slow: sleeps
#            per batch) runs for S seconds with the backlog in front of it;
#            RSS sampled every second.
#
# Prints one line per phase: RSS first / peak / last and the growth from
# the second to the last fifth of the run (the first fifth is start-up).  Run
# `bash tests/bench/memory.sh --help`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO KAFKA_SH="$REPO/ops/kafka.sh"

usage() {
    cat <<'EOF'
usage: bash tests/bench/memory.sh [options]

  --soak N              requests in the soak (default 1000000; 0 skips it)
  --rate R              soak rate in req/s (default 20000)
  --backlog N           requests preloaded for the backlog (default
                        1000000; 0 skips it)
  --backlog-seconds S   how long the slow worker runs (default 60)
  --delay-us U          the slow model's sleep per batch (default 2000)
  --worker-args ARGS    extra kinfer-worker options for both phases
  --build-dir DIR       build tree (default $TMPDIR/kinfer-e2e-build,
                        shared with e2e.sh)
  --no-build            use the binaries in --build-dir as they are
  --work-dir DIR        logs and RSS series (default a new
                        $TMPDIR/kinfer-mem.XXXXXX)
  -h, --help            this text

Exit status 1 when a phase failed (a soak request unanswered, the worker
exiting non-zero, the broker not starting).
EOF
}

log() { printf 'memory: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now_ms() { date +%s%3N; }
need_arg() { (($# >= 2)) || die "$1 needs a value"; }
is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }

SOAK=1000000
RATE=20000
BACKLOG=1000000
BACKLOG_S=60
DELAY_US=2000
EXTRA=""
BUILD_DIR="${TMPDIR:-/tmp}/kinfer-e2e-build"
BUILD=1
WORK=""
while (($#)); do
    case "$1" in
    --soak) need_arg "$@"; SOAK="$2"; shift 2 ;;
    --rate) need_arg "$@"; RATE="$2"; shift 2 ;;
    --backlog) need_arg "$@"; BACKLOG="$2"; shift 2 ;;
    --backlog-seconds) need_arg "$@"; BACKLOG_S="$2"; shift 2 ;;
    --delay-us) need_arg "$@"; DELAY_US="$2"; shift 2 ;;
    --worker-args) need_arg "$@"; EXTRA="$2"; shift 2 ;;
    --build-dir) need_arg "$@"; BUILD_DIR="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --work-dir) need_arg "$@"; WORK="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
    esac
done
for v in SOAK RATE BACKLOG BACKLOG_S DELAY_US; do
    is_count "${!v}" || die "--${v,,}: expected a non-negative integer"
done
((RATE > 0)) || die "--rate: expected a positive integer"
((BACKLOG_S > 0)) || die "--backlog-seconds: expected a positive integer"
command -v kcat >/dev/null 2>&1 || die "'kcat' not found on PATH"

readonly TARGETS=(kinfer-worker kinfer-produce kinfer_bench_slow)
if ((BUILD)); then
    if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
        log "configuring a Release build in $BUILD_DIR"
        cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
            >/dev/null || die "cmake configure failed"
    fi
    log "building ${TARGETS[*]} in $BUILD_DIR"
    cmake --build "$BUILD_DIR" -j2 --target "${TARGETS[@]}" >&2 ||
        die "build failed"
fi
readonly WORKER_BIN="$BUILD_DIR/consumer/kinfer-worker"
readonly PRODUCE_BIN="$BUILD_DIR/producer/kinfer-produce"
readonly SLOW_SO="$BUILD_DIR/tests/bench/kinfer_bench_slow.so"
for b in "$WORKER_BIN" "$PRODUCE_BIN" "$SLOW_SO"; do
    [[ -e "$b" ]] || die "$b missing (build it or drop --no-build)"
done

if [[ -z "$WORK" ]]; then
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/kinfer-mem.XXXXXX")"
else
    mkdir -p "$WORK"
    WORK="$(cd "$WORK" && pwd)"
fi
readonly WORK BROKER_DIR="$WORK/broker"

# Workers here must not fight over a default metrics port.
HTTP_ARGS=()
if "$WORKER_BIN" --help 2>&1 | grep -q -- '--http'; then
    HTTP_ARGS=(--http off)
fi
read -r -a EXTRA_ARGS <<<"$EXTRA"

WORKER_PID=""
SAMPLER_PID=""
BROKER_STARTED=0

alive() {
    local st
    st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
    [[ -n "$st" && "$st" != Z ]]
}

# SIGTERM the worker, SIGKILL after 40 s; returns its exit status.
stop_worker() {
    local rc=0 deadline
    [[ -n "$WORKER_PID" ]] || return 0
    alive "$WORKER_PID" && kill -TERM "$WORKER_PID" 2>/dev/null
    deadline=$(($(now_ms) + 40000))
    while alive "$WORKER_PID"; do
        if (($(now_ms) > deadline)); then
            log "worker ignored SIGTERM for 40 s; SIGKILL"
            kill -KILL "$WORKER_PID" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$WORKER_PID" 2>/dev/null || rc=$?
    WORKER_PID=""
    if [[ -n "$SAMPLER_PID" ]]; then
        wait "$SAMPLER_PID" 2>/dev/null || true
        SAMPLER_PID=""
    fi
    return "$rc"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_worker || true
    [[ -z "$SAMPLER_PID" ]] || kill "$SAMPLER_PID" 2>/dev/null || true
    if ((BROKER_STARTED)); then
        bash "$KAFKA_SH" stop --dir "$BROKER_DIR" || true
        rm -rf "$BROKER_DIR/data"
    fi
    log "logs and RSS series in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

# Writes "seconds_since_start rss_kb" for process $1 every second into $2
# until the process ends.  A sampling period, not a wait for a condition.
sample_rss() {
    local pid="$1" out="$2" t0 kb
    t0="$(now_ms)"
    : >"$out"
    while alive "$pid"; do
        kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)"
        [[ -n "$kb" ]] && printf '%s %s\n' "$((($(now_ms) - t0) / 1000))" \
            "$kb" >>"$out"
        sleep 1
    done
}

# "first peak last growth" in MB from series $1: first = the first sample,
# growth = mean of the last fifth minus mean of the second fifth (the first
# fifth is start-up: connecting, joining, filling the in-flight window).
summarise() {
    awk '{ kb[NR] = $2 } END {
        if (NR == 0) { print "- - - -"; exit }
        peak = 0; for (i = 1; i <= NR; i++) if (kb[i] > peak) peak = kb[i]
        k = int(NR / 5); if (k < 1) k = 1
        a = 0; b = 0
        for (i = 1; i <= k; i++) { a += kb[k + i]; b += kb[NR - k + i] }
        printf "%.1f %.1f %.1f %+.1f\n", kb[1] / 1024, peak / 1024,
            kb[NR] / 1024, (b - a) / k / 1024 }' "$1"
}

# Sum of the end offsets of topic $1 (partitions 0..$2-1): messages in it.
topic_count() {
    local p sum=0 off
    for ((p = 0; p < $2; p++)); do
        off="$(kcat -b "$BOOTSTRAP" -Q -t "$1:$p:-1" 2>/dev/null |
            awk '{ print $NF }')"
        sum=$((sum + ${off:-0}))
    done
    echo "$sum"
}

# start_worker IN OUT GROUP LOG SERIES [worker options...]: RSS samples
# go to SERIES_rss.
start_worker() {
    local in="$1" out="$2" group="$3" logf="$4" series="$5"
    shift 5
    "$WORKER_BIN" --brokers "$BOOTSTRAP" --group "$group" \
        --input-topic "$in" --output-topic "$out" --dlq-topic mem.dlq \
        "${HTTP_ARGS[@]}" "${EXTRA_ARGS[@]}" "$@" </dev/null >"$logf" 2>&1 &
    WORKER_PID=$!
    sample_rss "$WORKER_PID" "${series}_rss" &
    SAMPLER_PID=$!
}

log "work directory $WORK"
BROKER_STARTED=1
BOOTSTRAP="$(bash "$KAFKA_SH" start --dir "$BROKER_DIR")" ||
    die "the broker did not start"
bash "$KAFKA_SH" create-topic --bootstrap "$BOOTSTRAP" mem.soak.in:6 \
    mem.soak.out:6 mem.bk.in:6 mem.bk.out:6 mem.dlq:1 >/dev/null ||
    die "creating topics failed"

FAILED=0
REPORT=()

if ((SOAK > 0)); then
    log "soak: $SOAK requests at $RATE req/s through a default worker"
    start_worker mem.soak.in mem.soak.out mem-soak "$WORK/soak.log" \
        "$WORK/soak"
    rc=0
    "$PRODUCE_BIN" --brokers "$BOOTSTRAP" --topic mem.soak.in \
        --output-topic mem.soak.out --generate "$SOAK" --rate "$RATE" \
        --await --timeout 120 --quiet --json >"$WORK/soak.json" \
        2>"$WORK/soak.produce.log" || rc=$?
    wrc=0
    stop_worker || wrc=$?
    read -r first peak last growth < <(summarise "$WORK/soak_rss")
    answered="$(grep -o '"answered":[0-9]*' "$WORK/soak.json" |
        cut -d: -f2 || true)"
    line="$(printf 'soak     %8d req at %6d req/s: answered %s, produce rc %d, worker rc %d; RSS MB first %s peak %s last %s, growth %s' \
        "$SOAK" "$RATE" "${answered:-?}" "$rc" "$wrc" "$first" "$peak" \
        "$last" "$growth")"
    REPORT+=("$line")
    log "$line"
    ((rc == 0 && wrc == 0)) || FAILED=1
fi

if ((BACKLOG > 0)); then
    log "backlog: preloading $BACKLOG requests"
    "$PRODUCE_BIN" --brokers "$BOOTSTRAP" --topic mem.bk.in \
        --output-topic mem.bk.out --generate "$BACKLOG" --quiet \
        >/dev/null 2>"$WORK/backlog.produce.log" ||
        die "preloading failed (see $WORK/backlog.produce.log)"
    mkdir -p "$WORK/repo/scale"
    printf '{"backend": "slow", "delay_us": %d}\n' "$DELAY_US" \
        >"$WORK/repo/scale/config.json"
    log "backlog: a worker with a model sleeping $DELAY_US us per batch," \
        "for $BACKLOG_S s"
    start_worker mem.bk.in mem.bk.out mem-bk "$WORK/backlog.log" \
        "$WORK/backlog" --plugin "$SLOW_SO" --model-repo "$WORK/repo"
    t_end=$(($(now_ms) + BACKLOG_S * 1000))
    while (($(now_ms) < t_end)) && alive "$WORKER_PID"; do
        sleep 1
    done
    alive "$WORKER_PID" || { log "the slow worker died early:"
        tail -n 15 "$WORK/backlog.log" >&2; FAILED=1; }
    t0="$(now_ms)"
    wrc=0
    stop_worker || wrc=$?
    stop_s="$(awk -v d=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", d / 1000 }')"
    read -r first peak last growth < <(summarise "$WORK/backlog_rss")
    answered="$(topic_count mem.bk.out 6)"
    line="$(printf 'backlog  %8d req, slow model %d us/batch, %d s: answered %s, SIGTERM exit %d in %s s; RSS MB first %s peak %s last %s, growth %s' \
        "$BACKLOG" "$DELAY_US" "$BACKLOG_S" "$answered" "$wrc" "$stop_s" \
        "$first" "$peak" "$last" "$growth")"
    REPORT+=("$line")
    log "$line"
    ((wrc == 0)) || FAILED=1
fi

printf '\n== kinfer-worker memory (%s build; worker options: %s) ==\n' \
    "$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")" \
    "${EXTRA:-defaults}"
printf '%s\n' "${REPORT[@]}"
exit "$FAILED"
