#!/usr/bin/env bash
# The end-to-end benchmark (issue 11): on a throw-away local broker, drain a
# preloaded backlog with kinfer-worker and with a raw librdkafka passthrough
# (the limit), then measure end-to-end latency at fixed fractions of the
# worker's rate; print one table per request size.  Builds what it needs in
# a build directory of its own.  Run `bash tests/bench/e2e.sh --help`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly REPO
readonly KAFKA_SH="$REPO/ops/kafka.sh"

usage() {
    cat <<'EOF'
usage: bash tests/bench/e2e.sh [OPTIONS]

Starts a private Kafka broker (ops/kafka.sh, free loopback port, its own
data directory; stopped at the end and on Ctrl-C).  For every request size:
preloads N `scale` requests into a fresh input topic; for each contender
(every kinfer-worker configuration, then the passthrough) drains that
backlog with a fresh group into a fresh output topic and measures
  req/s      steady state, from the first sample that saw a result to the
             last result (output end offsets, sampled densely near the end)
  ×limit     req/s over the passthrough's req/s for the same size
  µs/req     CPU (utime+stime, /proc/PID/stat) of the contender and of the
             broker JVM over the same window, per request (= ms per 1,000)
  RSS MB     peak resident set (VmHWM) of the contender
  other%     CPU used by anything else meanwhile, in % of one core: noise
then starts the contender again on an empty topic and, after a warm-up,
offers `kinfer-produce --rate R --await` at fractions of that worker's
req/s (the passthrough gets the first worker's rates: the Kafka floor) and
prints p50/p99 end-to-end latency in ms.  A "*" marks a drain stopped by
--drain-timeout, a "!" a latency run that lost requests or fell short of
its rate by more than 10 %.

Options:
  --quick               small N, short deadlines: a 2-3 minute run
  --sizes LIST          comma-separated NAME[:N]; NAME is tiny (8 floats) or
                        a float count such as 256 or 768
                        (default tiny:500000,256:100000,768:30000: the
                        passthrough's drain then lasts about a second;
                        --quick: tiny:20000,256:5000,768:2000)
  --requests N          preload N requests for every size
  --partitions P        input and output partitions (default 6)
  --worker-args ARGS    a kinfer-worker contender with these extra options
                        (word-split); repeatable, each adds a contender;
                        "" is the defaults (the default list is one "")
  --passthrough-args A  extra options for kinfer-bench-passthrough (-X ...)
  --no-passthrough      skip the passthrough (no ×limit column)
  --no-latency          skip the latency runs
  --fractions LIST      latency loads in % of the worker's req/s
                        (default 10,50,80)
  --latency-seconds S   length of each latency run (default 10; quick 3)
  --drain-timeout S     stop a drain S seconds after its first result and
                        report the rate so far (default 60; quick 15)
  --build-dir DIR       build tree (default $TMPDIR/kinfer-e2e-build,
                        configured Release on first use)
  --no-build            use the binaries in --build-dir as they are
  --work-dir DIR        logs, samples, report (default a new $TMPDIR/
                        kinfer-e2e.XXXXXX; the broker's data is removed at
                        the end unless --keep)
  --keep                keep the broker's data
  -h, --help            this text

Example: bash tests/bench/e2e.sh --quick \
             --worker-args "" --worker-args "--max-in-flight 100000"
Figures mean most from an idle machine; the other% column says how idle
it was.  The report is printed and saved as WORK_DIR/report.txt.  Exit
status 1 when a contender failed (its log tail is printed), 130 on Ctrl-C.
EOF
}

log() { printf 'e2e: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now_ms() { date +%s%3N; }

# --- options -----------------------------------------------------------------

QUICK=0
SIZES=""
REQUESTS=""
PARTITIONS=6
WORKER_ARGS=()
PT_ARGS=""
PASSTHROUGH=1
LATENCY=1
FRACTIONS="10,50,80"
LAT_SECONDS=""
DRAIN_TIMEOUT=""
BUILD_DIR="${TMPDIR:-/tmp}/kinfer-e2e-build"
BUILD=1
WORK=""
KEEP=0

need_arg() { (($# >= 2)) || die "$1 needs a value"; }

while (($#)); do
    case "$1" in
    --quick) QUICK=1; shift ;;
    --sizes) need_arg "$@"; SIZES="$2"; shift 2 ;;
    --requests) need_arg "$@"; REQUESTS="$2"; shift 2 ;;
    --partitions) need_arg "$@"; PARTITIONS="$2"; shift 2 ;;
    --worker-args) need_arg "$@"; WORKER_ARGS+=("$2"); shift 2 ;;
    --passthrough-args) need_arg "$@"; PT_ARGS="$2"; shift 2 ;;
    --no-passthrough) PASSTHROUGH=0; shift ;;
    --no-latency) LATENCY=0; shift ;;
    --fractions) need_arg "$@"; FRACTIONS="$2"; shift 2 ;;
    --latency-seconds) need_arg "$@"; LAT_SECONDS="$2"; shift 2 ;;
    --drain-timeout) need_arg "$@"; DRAIN_TIMEOUT="$2"; shift 2 ;;
    --build-dir) need_arg "$@"; BUILD_DIR="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --work-dir) need_arg "$@"; WORK="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
    esac
done

if ((QUICK)); then
    : "${SIZES:=tiny:20000,256:5000,768:2000}"
    : "${LAT_SECONDS:=3}"
    : "${DRAIN_TIMEOUT:=15}"
else
    : "${SIZES:=tiny:500000,256:100000,768:30000}"
    : "${LAT_SECONDS:=10}"
    : "${DRAIN_TIMEOUT:=60}"
fi
((${#WORKER_ARGS[@]})) || WORKER_ARGS=("")

is_uint() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_uint "$PARTITIONS" || die "--partitions: expected a positive integer"
is_uint "$LAT_SECONDS" || die "--latency-seconds: expected a positive integer"
is_uint "$DRAIN_TIMEOUT" || die "--drain-timeout: expected a positive integer"
[[ -z "$REQUESTS" ]] || is_uint "$REQUESTS" ||
    die "--requests: expected a positive integer"

# Sizes as parallel arrays: label, floats per request, requests.
SIZE_NAME=()
SIZE_DIM=()
SIZE_N=()
IFS=',' read -r -a _specs <<<"$SIZES"
for spec in "${_specs[@]}"; do
    name="${spec%%:*}"
    n=""
    [[ "$spec" == *:* ]] && n="${spec#*:}"
    case "$name" in
    tiny) dim=8 ;;
    *) is_uint "$name" || die "--sizes: '$name' is neither tiny nor a count"
       dim="$name" ;;
    esac
    if [[ -n "$REQUESTS" ]]; then
        n="$REQUESTS"
    elif [[ -z "$n" ]]; then
        case "$name" in
        tiny) n=$((QUICK ? 20000 : 500000)) ;;
        *) n=$((QUICK ? 2000 : 30000)) ;;
        esac
    fi
    is_uint "$n" || die "--sizes: bad request count in '$spec'"
    SIZE_NAME+=("$name")
    SIZE_DIM+=("$dim")
    SIZE_N+=("$n")
done
IFS=',' read -r -a FRACS <<<"$FRACTIONS"
for f in "${FRACS[@]}"; do
    [[ "$f" =~ ^[0-9]+$ ]] && ((f > 0 && f <= 100)) ||
        die "--fractions: '$f' is not a percentage in 1..100"
done

for tool in java kcat timeout awk; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found on PATH"
done

# --- build -------------------------------------------------------------------

readonly TARGETS=(kinfer-worker kinfer-produce kinfer-bench-passthrough
                  kinfer-bench-watch)
if ((BUILD)); then
    if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
        log "configuring a Release build in $BUILD_DIR"
        cmake -S "$REPO" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
            >"${TMPDIR:-/tmp}/kinfer-e2e-configure.log" 2>&1 ||
            { cat "${TMPDIR:-/tmp}/kinfer-e2e-configure.log" >&2
              die "cmake configure failed"; }
    fi
    log "building ${TARGETS[*]} in $BUILD_DIR"
    cmake --build "$BUILD_DIR" -j2 --target "${TARGETS[@]}" >&2 ||
        die "build failed"
fi
WORKER_BIN="$BUILD_DIR/consumer/kinfer-worker"
PRODUCE_BIN="$BUILD_DIR/producer/kinfer-produce"
PT_BIN="$BUILD_DIR/tests/bench/kinfer-bench-passthrough"
WATCH_BIN="$BUILD_DIR/tests/bench/kinfer-bench-watch"
for b in "$WORKER_BIN" "$PRODUCE_BIN" "$PT_BIN" "$WATCH_BIN"; do
    [[ -x "$b" ]] || die "$b missing (build it or drop --no-build)"
done
# One worker at a time runs here, but the metrics port may be taken by
# something else on this host: the benchmark does not need it.
HTTP_ARGS=()
if "$WORKER_BIN" --help 2>&1 | grep -q -- '--http'; then
    HTTP_ARGS=(--http off)
fi
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' \
    "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)"

# --- processes and clean-up --------------------------------------------------

if [[ -z "$WORK" ]]; then
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/kinfer-e2e.XXXXXX")"
else
    mkdir -p "$WORK"
    WORK="$(cd "$WORK" && pwd)"
fi
readonly WORK BROKER_DIR="$WORK/broker" LOGS="$WORK/logs"
mkdir -p "$LOGS"

CONTENDER_PID="" # the worker or passthrough now running
FG_PID=""        # the measuring tool now running
BROKER_STARTED=0

# True while $1 runs (a zombie awaiting its parent counts as gone).
alive() {
    local st
    st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
    [[ -n "$st" && "$st" != Z ]]
}

# SIGTERM $1 (a child of this script), SIGKILL after $2 seconds, reap it;
# prints nothing, returns its exit status (or 137 when killed).
stop_pid() {
    local pid="$1" grace="$2" deadline rc=0
    alive "$pid" && kill -TERM "$pid" 2>/dev/null
    deadline=$(($(now_ms) + grace * 1000))
    while alive "$pid"; do
        if (($(now_ms) > deadline)); then
            log "pid $pid ignored SIGTERM for $grace s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$FG_PID" ]]; then
        stop_pid "$FG_PID" 10 || true
    fi
    if [[ -n "$CONTENDER_PID" ]]; then
        stop_pid "$CONTENDER_PID" 40 || true
    fi
    if ((BROKER_STARTED)); then
        bash "$KAFKA_SH" stop --dir "$BROKER_DIR" || true
        ((KEEP)) || rm -rf "$BROKER_DIR/data"
    fi
    log "logs, samples and report in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log terminated; exit 143' TERM

# Runs "$@" in the background and waits for it, so that a signal reaches
# the trap at once (bash runs traps only between commands) and cleanup can
# stop it.  Returns its exit status.
run_fg() {
    local rc=0
    "$@" &
    FG_PID=$!
    wait "$FG_PID" || rc=$?
    FG_PID=""
    return "$rc"
}

# CPU ticks (utime + stime) of process $1, or of all CPUs busy (not idle,
# not iowait) when $1 is "all".
ticks() {
    if [[ "$1" == all ]]; then
        awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' \
            /proc/stat
    else
        sed 's/.*) //' "/proc/$1/stat" 2>/dev/null |
            awk '{ print $12 + $13 }'
    fi
}
readonly CLK_TCK="$(getconf CLK_TCK)"

# Value of "key=value" line $2 in file $1 (empty when absent).
kv() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

# Number after "KEY": in one-line JSON file $1.
json_num() {
    grep -o "\"$2\":[-0-9.]*" "$1" | head -n 1 | cut -d: -f2
}

# --- broker and topics -------------------------------------------------------

log "work directory $WORK"
BROKER_STARTED=1
BOOTSTRAP="$(bash "$KAFKA_SH" start --dir "$BROKER_DIR")" ||
    die "the broker did not start"
BROKER_PID="$(<"$BROKER_DIR/kafka.pid")"

# Contenders: w1..wK (kinfer-worker with WORKER_ARGS[i]), then pt.
CONTENDERS=()
for i in "${!WORKER_ARGS[@]}"; do CONTENDERS+=("w$((i + 1))"); done
((PASSTHROUGH)) && CONTENDERS+=(pt)

topic_specs=("e2e.dlq:1")
for si in "${!SIZE_NAME[@]}"; do
    s="${SIZE_NAME[si]}"
    topic_specs+=("e2e.$s.in:$PARTITIONS")
    for c in "${CONTENDERS[@]}"; do
        topic_specs+=("e2e.$s.$c.out:$PARTITIONS")
        if ((LATENCY)); then topic_specs+=("e2e.$s.$c.lat:$PARTITIONS"); fi
    done
done
log "creating ${#topic_specs[@]} topics"
run_fg bash "$KAFKA_SH" create-topic --bootstrap "$BOOTSTRAP" \
    "${topic_specs[@]}" 2>"$LOGS/topics.log" ||
    { cat "$LOGS/topics.log" >&2; die "creating topics failed"; }

# --- contenders --------------------------------------------------------------

# Starts contender $1 reading topic $2, writing $3, in group $4, logging to
# $5; sets CONTENDER_PID.
start_contender() {
    local c="$1" in="$2" out="$3" group="$4" logf="$5" extra=()
    if [[ "$c" == pt ]]; then
        read -r -a extra <<<"$PT_ARGS"
        "$PT_BIN" --brokers "$BOOTSTRAP" --input-topic "$in" \
            --output-topic "$out" --group "$group" "${extra[@]}" \
            </dev/null >"$logf" 2>&1 &
    else
        read -r -a extra <<<"${WORKER_ARGS[${c#w} - 1]}"
        "$WORKER_BIN" --brokers "$BOOTSTRAP" --group "$group" \
            --input-topic "$in" --output-topic "$out" \
            --dlq-topic e2e.dlq "${HTTP_ARGS[@]}" "${extra[@]}" \
            </dev/null >"$logf" 2>&1 &
    fi
    CONTENDER_PID=$!
}

stop_contender() {
    local rc=0
    stop_pid "$CONTENDER_PID" 40 || rc=$?
    CONTENDER_PID=""
    ((rc == 0)) || log "contender exited with status $rc (see $1)"
}

describe() {
    if [[ "$1" == pt ]]; then
        printf 'kinfer-bench-passthrough %s' "${PT_ARGS:-(no options)}"
    else
        printf 'kinfer-worker %s' "${WORKER_ARGS[${1#w} - 1]:-(defaults)}"
    fi
}

# Results, keyed "size|contender|field"; FAILED: a drain or latency run
# produced no figures (the exit status is then 1).
declare -A R
FAILED=0

# Drain the backlog of size $1 (index) with contender $2.
drain() {
    local si="$1" c="$2" s="${SIZE_NAME[$1]}" n="${SIZE_N[$1]}"
    local out="e2e.$s.$c.out" logf="$LOGS/$s.$c.drain.log"
    local res="$LOGS/$s.$c.drain.kv" rc=0
    log "$s: draining $n requests with $(describe "$c")"
    start_contender "$c" "e2e.$s.in" "$out" "e2e-$s-$c-drain" "$logf"
    run_fg "$WATCH_BIN" --brokers "$BOOTSTRAP" --topic "$out" --expect "$n" \
        --pid "$CONTENDER_PID" --broker-pid "$BROKER_PID" \
        --first-timeout 60 --timeout "$DRAIN_TIMEOUT" \
        --series "$LOGS/$s.$c.series" >"$res" || rc=$?
    stop_contender "$logf"
    local status
    status="$(kv "$res" status)"
    R[$s|$c|status]="$status"
    if [[ "$status" != done && "$status" != partial ]]; then
        log "$s: $c failed the drain (status '${status:-error}', rc $rc);" \
            "last lines of $logf:"
        tail -n 15 "$logf" >&2 || true
        FAILED=1
        return 0
    fi
    local f
    for f in count rate cpu_us_per_req broker_cpu_us_per_req other_cpu_pct \
        rss_peak_kb result_bytes window_ms first_wait_ms; do
        R[$s|$c|$f]="$(kv "$res" "$f")"
    done
    log "$s: $c ${R[$s|$c|rate]} req/s ($status, ${R[$s|$c|count]} of $n)"
}

# One latency run of contender $2 on size $1 at R req/s ($3), label $4;
# stores p50/p99 and a flag under R[size|contender|lat<label>].
latency_run() {
    local si="$1" c="$2" rate="$3" label="$4" s="${SIZE_NAME[$1]}"
    local count json="$LOGS/$s.$c.lat$label.json" rc=0
    count="$(awk -v r="$rate" -v t="$LAT_SECONDS" 'BEGIN {
        n = int(r * t); if (n < 200) n = 200; if (n > 200000) n = 200000
        print n }')"
    local hard=$((count * 2 / (${rate%.*} + 1) + 120))
    local c0 b0 t0 c1 b1 t1
    c0="$(ticks "$CONTENDER_PID")"
    b0="$(ticks all)"
    t0="$(now_ms)"
    run_fg timeout "$hard" "$PRODUCE_BIN" --brokers "$BOOTSTRAP" \
        --topic "e2e.$s.$c.lat" --output-topic "e2e.$s.$c.out" \
        --dim "${SIZE_DIM[si]}" --generate "$count" --rate "$rate" --await \
        --timeout 30 --json --quiet >"$json" 2>"$LOGS/$s.$c.lat$label.log" ||
        rc=$?
    c1="$(ticks "$CONTENDER_PID")"
    b1="$(ticks all)"
    t1="$(now_ms)"
    # CPU of the contender and of the whole machine in % of one core: a
    # machine near nproc * 100 % was saturated (the load generator shares
    # it), which the drain rate the loads derive from did not include.
    R[$s|$c|latcpu$label]="$(awk -v c="$((${c1:-0} - ${c0:-0}))" \
        -v b="$((${b1:-0} - ${b0:-0}))" \
        -v ms="$((t1 - t0))" -v hz="$CLK_TCK" 'BEGIN {
        if (ms <= 0) { print "-/-"; exit }
        printf "%.0f/%.0f", c * 100000 / hz / ms, b * 100000 / hz / ms }')"
    # The passthrough answers with the request itself: kinfer-produce
    # counts that as "wrong" (exit 1) but its latency is still measured.
    local p50 p99 missing thr
    p50="$(json_num "$json" p50)"
    p99="$(json_num "$json" p99)"
    missing="$(json_num "$json" missing)"
    thr="$(json_num "$json" throughput)"
    if [[ -z "$p50" ]]; then
        log "$s: $c latency run at $rate req/s failed (rc $rc)"
        R[$s|$c|lat$label]="fail"
        FAILED=1
        return 0
    fi
    local flag=""
    if [[ "${missing:-1}" != 0 ]] ||
        awk -v a="$thr" -v r="$rate" 'BEGIN { exit !(a < 0.9 * r) }'; then
        flag="!"
    fi
    R[$s|$c|lat$label]="$(printf '%.1f/%.1f%s' "$p50" "$p99" "$flag")"
    R[$s|$c|latrate$label]="$rate"
    log "$s: $c at $rate req/s: p50 $p50 ms, p99 $p99 ms" \
        "(achieved $thr req/s, missing ${missing:-?}; CPU % contender/all" \
        "${R[$s|$c|latcpu$label]})"
}

# Latency of contender $2 on size $1 at the fractions of rate $3.
latency() {
    local si="$1" c="$2" base="$3" s="${SIZE_NAME[$1]}"
    local logf="$LOGS/$s.$c.latency.log"
    start_contender "$c" "e2e.$s.$c.lat" "e2e.$s.$c.out" "e2e-$s-$c-lat" \
        "$logf"
    # Warm-up: the group join, the first fetches and the producers' first
    # metadata fall here, not into the first measured run.
    local low
    low="$(awk -v b="$base" -v f="${FRACS[0]}" \
        'BEGIN { r = b * f / 100; if (r < 20) r = 20; printf "%.0f", r }')"
    log "$s: $c latency warm-up at $low req/s"
    latency_run "$si" "$c" "$low" warmup
    local f rate
    for f in "${FRACS[@]}"; do
        rate="$(awk -v b="$base" -v f="$f" \
            'BEGIN { r = b * f / 100; if (r < 1) r = 1; printf "%.0f", r }')"
        latency_run "$si" "$c" "$rate" "$f"
    done
    stop_contender "$logf"
}

# --- report ------------------------------------------------------------------

# $1 / $2 with $3 decimals; "-" when $1 is empty or negative.
scaled() {
    awk -v v="$1" -v d="$2" -v p="$3" 'BEGIN { if (v == "" || v < 0)
        print "-"; else printf "%." p "f\n", v / d }'
}

fmt_num() { awk -v v="$1" -v p="$2" 'BEGIN { if (v == "") print "-";
    else printf "%." p "f\n", v }'; }

# Option defaults of the worker as its --help prints them, minus names of
# topics, brokers and files: the settings the figures depend on.
worker_defaults() {
    "$WORKER_BIN" --help 2>/dev/null | sed -n \
        's/^ *--\([a-z-]*\) .*default: \([^)]*\)).*/\1=\2/p' |
        grep -Ev '^(brokers|group|input-topic|output-topic|dlq-topic|model)=' |
        paste -sd ' ' -
}

table() {
    local si="$1" s="${SIZE_NAME[$1]}" c f
    local limit="${R[$s|pt|rate]:-}" short=0
    printf '\n== %s: %s floats per request, %s requests preloaded, ' \
        "$s" "${SIZE_DIM[si]}" "${SIZE_N[si]}"
    printf '%s partitions; request %s B ==\n' "$PARTITIONS" \
        "${R[$s|request_bytes]:-?}"
    printf '%-9s %9s %7s %6s %6s %6s %6s %6s %6s' contender req/s xlimit \
        'cpu-w' 'cpu-b' 'RSS' other window result
    for f in "${FRACS[@]}"; do printf ' %13s' "p50/p99@$f%"; done
    printf '\n%-9s %9s %7s %6s %6s %6s %6s %6s %6s' '' '' '' 'us/req' \
        'us/req' MB '%' s B
    for f in "${FRACS[@]}"; do printf ' %13s' ms; done
    printf '\n'
    for c in "${CONTENDERS[@]}"; do
        local st="${R[$s|$c|status]:-}" rate ratio mark=""
        if [[ "$st" != done && "$st" != partial ]]; then
            printf '%-9s %9s\n' "$c" "failed"
            continue
        fi
        if [[ "$st" == partial ]]; then mark="*"; fi
        if awk -v m="${R[$s|$c|window_ms]:-0}" 'BEGIN { exit !(m < 1000) }'
        then
            mark+="~"
            short=1
        fi
        rate="$(fmt_num "${R[$s|$c|rate]}" 0)$mark"
        ratio="-"
        [[ -n "$limit" ]] && ratio="$(awk -v a="${R[$s|$c|rate]}" \
            -v b="$limit" 'BEGIN { if (b > 0) printf "%.4f", a / b;
                else print "-" }')"
        printf '%-9s %9s %7s %6s %6s %6s %6s %6s %6s' "$c" "$rate" \
            "$ratio" "$(fmt_num "${R[$s|$c|cpu_us_per_req]:-}" 2)" \
            "$(fmt_num "${R[$s|$c|broker_cpu_us_per_req]:-}" 2)" \
            "$(scaled "${R[$s|$c|rss_peak_kb]:-}" 1024 1)" \
            "${R[$s|$c|other_cpu_pct]:--}" \
            "$(scaled "${R[$s|$c|window_ms]:-}" 1000 2)" \
            "${R[$s|$c|result_bytes]:--}"
        for f in "${FRACS[@]}"; do
            printf ' %13s' "${R[$s|$c|lat$f]:--}"
        done
        printf '\n'
    done
    if ((short)); then
        printf '  ~ window under 1 s: CPU figures are coarse; raise N\n'
    fi
    for c in "${CONTENDERS[@]}"; do
        local st="${R[$s|$c|status]:-}" rates="" cpus=""
        [[ "$st" == partial ]] &&
            printf '  * %s: drain stopped after %s s with %s of %s answered\n' \
                "$c" "$DRAIN_TIMEOUT" "${R[$s|$c|count]}" "${SIZE_N[si]}"
        for f in "${FRACS[@]}"; do
            rates+="${rates:+ }${R[$s|$c|latrate$f]:--}"
            cpus+="${cpus:+ }${R[$s|$c|latcpu$f]:--}"
        done
        if ((LATENCY)); then
            printf '  %s latency loads %s req/s; CPU %% %s/all: %s\n' \
                "$c" "$rates" "$c" "$cpus"
        fi
    done
}

report_header() {
    local rev dirty=""
    rev="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
    if [[ -n "$(git -C "$REPO" status --porcelain -- lib consumer producer \
        2>/dev/null)" ]]; then
        dirty=" + uncommitted changes"
    fi
    printf 'kinfer end-to-end benchmark, %s\n' "$(date '+%Y-%m-%d %H:%M')"
    printf 'commit %s%s, %s build, %s CPUs, load average %s at start\n' \
        "$rev" "$dirty" "${BUILD_TYPE:-?}" "$(nproc)" "$LOAD_AT_START"
    printf 'broker: Kafka (ops/kafka.sh) on %s, single node\n' "$BOOTSTRAP"
    local c
    for c in "${CONTENDERS[@]}"; do
        printf '  %-4s %s\n' "$c" "$(describe "$c")"
    done
    printf '  worker defaults (--help): %s\n' "$(worker_defaults)"
    printf '  pt = raw librdkafka consume->produce (no JSON), with the '
    printf "worker's Kafka\n  defaults and at-least-once offset rule\n"
    printf 'cpu-w / cpu-b: CPU of the contender / broker JVM per request '
    printf '(= ms per 1,000)\nover the drain window (10 ms ticks: coarse '
    printf 'when the window is short);\nother: CPU %% of one core used by '
    printf 'anything else then (%s cores = %s %%;\nhigh = noisy figures); ' \
        "$(nproc)" "$(($(nproc) * 100))"
    printf "latency loads are fractions of each worker's req/s;\n"
    printf "pt runs at w1's loads (the Kafka floor); the load generator "
    printf 'shares the machine,\nso "all" near %s %% means the run was ' \
        "$(($(nproc) * 100))"
    printf 'CPU-starved, not only the contender.\n'
}

LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
REPORT="$WORK/report.txt"

# --- the run -----------------------------------------------------------------

t_start="$(now_ms)"
for si in "${!SIZE_NAME[@]}"; do
    s="${SIZE_NAME[si]}"
    log "$s: preloading ${SIZE_N[si]} requests of ${SIZE_DIM[si]} floats"
    run_fg "$PRODUCE_BIN" --brokers "$BOOTSTRAP" --topic "e2e.$s.in" \
        --dim "${SIZE_DIM[si]}" --generate "${SIZE_N[si]}" --quiet --json \
        >"$LOGS/$s.preload.json" 2>"$LOGS/$s.preload.log" ||
        { cat "$LOGS/$s.preload.log" >&2; die "$s: preloading failed"; }
    [[ "$(json_num "$LOGS/$s.preload.json" sent)" == "${SIZE_N[si]}" ]] ||
        die "$s: preloading sent fewer than ${SIZE_N[si]} requests"
    R[$s|request_bytes]="$(timeout 30 kcat -C -b "$BOOTSTRAP" \
        -t "e2e.$s.in" -o beginning -c 1 -e -q -f '%S\n' 2>/dev/null |
        head -n 1 || true)"

    # The passthrough's drain first: it is the limit of the table.
    if ((PASSTHROUGH)); then drain "$si" pt; fi
    for c in "${CONTENDERS[@]}"; do
        [[ "$c" == pt ]] && continue
        drain "$si" "$c"
        if ((LATENCY)) && [[ -n "${R[$s|$c|rate]:-}" ]]; then
            latency "$si" "$c" "${R[$s|$c|rate]}"
        fi
    done
    if ((PASSTHROUGH && LATENCY)) && [[ -n "${R[$s|w1|rate]:-}" ]] &&
        [[ -n "${R[$s|pt|rate]:-}" ]]; then
        latency "$si" pt "${R[$s|w1|rate]}"
    fi
    table "$si" >&2
done

{
    report_header
    for si in "${!SIZE_NAME[@]}"; do table "$si"; done
    printf '\ntotal %d s\n' $((($(now_ms) - t_start) / 1000))
} >"$REPORT"
cat "$REPORT"
exit "$FAILED"
