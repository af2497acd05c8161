#!/usr/bin/env bash
# The one command that runs kinfer's main job end to end on this machine:
# builds the programs and the fastText plugin, generates small example
# models, starts a throw-away broker and a small worker fleet, sends paced
# and burst load, one request per model backend and malformed requests,
# shows what came back, and stops everything.  `ops/demo.sh --help`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly KAFKA_SH="$ROOT/ops/kafka.sh"
readonly GROUP=kinfer-demo
readonly REQUEST_PARTITIONS=6
readonly TOPICS=("kinfer.requests:$REQUEST_PARTITIONS" kinfer.results:6
                 kinfer.dlq:1)
readonly WORKER_STOP_DEADLINE_S=60   # the worker drains for up to 30 s
readonly ASSIGN_DEADLINE_S=30
# The paced run stays well below what two workers on two cores answer, so
# its latency is service time, not time spent queued.
readonly PACED_REQUESTS=3000
readonly PACED_RATE=1000
# One request per backend: model name, what serves it, who computed the
# expected answer.
readonly MODEL_DEMOS=(
    "nlp|fastText plugin|fasttext predict-prob (gen_fasttext.sh)"
    "recsys|topk backend|NumPy (gen_dense.py)"
    "mlp|mlp backend|NumPy (gen_dense.py)")

usage() {
    cat <<EOF
usage: ops/demo.sh [--requests N] [--workers N] [--keep] [--build-root DIR]
       ops/demo.sh --stop [--build-root DIR]

Builds build/ (RelWithDebInfo, with the fastText plugin), generates the
example models into build/demo-models with ops/models/gen_dense.py and
gen_fasttext.sh, starts a local broker in build/demo-kafka, creates
kinfer.requests (6 partitions), kinfer.results (6), kinfer.dlq (1), starts
the workers on those models (logs in build/demo-logs/) and waits until
each holds its partitions.  Then, with kinfer-produce --await: $PACED_REQUESTS
synthetic requests paced at $PACED_RATE/s (service latency), N as fast as
possible (throughput), one request each to nlp (fastText), recsys (topk) and
mlp, checked against the generators' answers, and 3 malformed requests
with their error results and dead letters.  Finally stops the workers
(SIGTERM), shows the group's committed offsets and stops the broker.

  --requests N       synthetic requests of the burst run (default 5000)
  --workers N        kinfer-worker processes (default 2)
  --keep             leave the broker and the workers running
  --stop             stop what an earlier --keep left running
  --build-root DIR   use DIR/build instead of the repository's build/
EOF
}

die_usage() {
    printf 'ops/demo.sh: %s\n' "$1" >&2
    usage >&2
    exit 2
}

REQUESTS=5000
WORKERS=2
KEEP=0
STOP_ONLY=0
BUILD_ROOT="$ROOT"
while (($#)); do
    case "$1" in
    --requests) [[ $# -ge 2 ]] || die_usage "--requests needs a value"
        REQUESTS="$2"; shift 2 ;;
    --requests=*) REQUESTS="${1#--requests=}"; shift ;;
    --workers) [[ $# -ge 2 ]] || die_usage "--workers needs a value"
        WORKERS="$2"; shift 2 ;;
    --workers=*) WORKERS="${1#--workers=}"; shift ;;
    --keep) KEEP=1; shift ;;
    --stop) STOP_ONLY=1; shift ;;
    --build-root) [[ $# -ge 2 ]] || die_usage "--build-root needs a value"
        BUILD_ROOT="$2"; shift 2 ;;
    --build-root=*) BUILD_ROOT="${1#--build-root=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die_usage "--requests wants N >= 1"
[[ "$WORKERS" =~ ^[1-9][0-9]?$ ]] || die_usage "--workers wants 1..99"
mkdir -p "$BUILD_ROOT"
BUILD_ROOT="$(cd "$BUILD_ROOT" && pwd)"
BUILD="$BUILD_ROOT/build"
readonly BUILD
readonly KAFKA_DIR="$BUILD/demo-kafka"
readonly LOGS="$BUILD/demo-logs"
readonly MODELS="$BUILD/demo-models"
readonly WORKER_BIN="$BUILD/consumer/kinfer-worker"
readonly PRODUCE_BIN="$BUILD/producer/kinfer-produce"
readonly PLUGIN="$BUILD/plugins/kinfer_fasttext.so"
readonly GEN_DENSE="$ROOT/ops/models/gen_dense.py"
readonly GEN_FASTTEXT="$ROOT/ops/models/gen_fasttext.sh"

exec </dev/null
cd "$ROOT"

say() { printf '\n=== %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
fail() { printf 'ops/demo.sh: error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# PATH relative to the repository when inside it, for messages.
rel() { printf '%s\n' "${1#"$ROOT"/}"; }
# Shows a command (on stderr: stdout may be captured).
show() { printf '+ %s\n' "$*" | sed "s|$ROOT/||g" >&2; }

# Shows a command, then runs it in the background and waits for it: bash
# runs a trap only once the foreground command ends, so this is what lets
# a signal to the script stop a two-minute kinfer-produce at once.
# `run --log FILE CMD...` sends the command's stdout and stderr to FILE,
# `run --out FILE CMD...` only its stdout.  (A redirection around the call
# itself would also capture what the signal traps print.)
CHILD=""
run() {
    local mode="" file=""
    if [[ "$1" == --log || "$1" == --out ]]; then
        mode="$1" file="$2"
        shift 2
    fi
    show "$@"
    case "$mode" in
    --log) "$@" >"$file" 2>&1 & ;;
    --out) "$@" >"$file" & ;;
    *) "$@" & ;;
    esac
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# --- workers ------------------------------------------------------------------

# True while PID is a live (not zombie) kinfer-worker.  Checking the
# command line means a recycled PID is never signalled.
worker_alive() {
    local pid="$1" cmd stat
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
    [[ "$cmd" == *kinfer-worker* ]] || return 1
    stat="$(cut -d' ' -f3 2>/dev/null <"/proc/$pid/stat")" || return 1
    [[ "$stat" != Z ]]
}

WORKER_PIDS=()

# Sends SIGTERM to every worker named by a pid file in LOGS and waits for
# them (SIGKILL after the deadline).  For our own children, prints each
# exit status and the worker's final stats line.
stop_workers() {
    local f pid pids=() files=()
    for f in "$LOGS"/worker-*.pid; do
        [[ -f "$f" ]] || continue
        pid="$(<"$f")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && worker_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            files+=("$f")
        else
            rm -f "$f"
        fi
    done
    ((${#pids[@]} > 0)) || return 0
    note "SIGTERM sent to worker pid(s) ${pids[*]}; waiting for them to drain"
    local deadline=$(($(now_ms) + WORKER_STOP_DEADLINE_S * 1000)) i rc log
    for i in "${!pids[@]}"; do
        pid="${pids[i]}"
        while worker_alive "$pid"; do
            if (($(now_ms) > deadline)); then
                note "worker $pid still running after" \
                    "${WORKER_STOP_DEADLINE_S} s; SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        rm -f "${files[i]}"
        log="${files[i]%.pid}.log"
        if [[ " ${WORKER_PIDS[*]} " == *" $pid "* ]]; then
            rc=0
            wait "$pid" 2>/dev/null || rc=$?
            note "$(basename "$log" .log) (pid $pid) exited with status $rc"
            if [[ -f "$log" ]]; then
                note "  $(grep -h 'stopped: consumed' "$log" | tail -n 1)"
            fi
        else
            note "worker pid $pid stopped"
        fi
    done
}

stop_broker() {
    bash "$KAFKA_SH" stop --dir "$KAFKA_DIR"
}

if ((STOP_ONLY)); then
    stop_workers
    stop_broker
    echo "demo stopped"
    exit 0
fi

# From here on, whatever happens, leave nothing running unless --keep was
# asked for and the demo got to its end.
FINISHED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if ((KEEP && FINISHED)); then
        exit "$rc"
    fi
    if ((rc != 0)); then
        printf '\nops/demo.sh: failed (exit %d); worker logs in %s\n' \
            "$rc" "$LOGS" >&2
    fi
    stop_workers || true
    stop_broker || true
    exit "$rc"
}
# Passes the signal on as SIGTERM (background children ignore SIGINT;
# kinfer-produce then stops sending and prints its summary), waits a little
# for the command, then leaves the rest to cleanup.
on_signal() {
    printf '\nops/demo.sh: interrupted by SIG%s\n' "$1" >&2
    if [[ -n "$CHILD" ]]; then
        kill -TERM "$CHILD" 2>/dev/null || true
        local deadline=$(($(now_ms) + 15000)) st
        while st="$(cut -d' ' -f3 2>/dev/null <"/proc/$CHILD/stat")" &&
            [[ "$st" != Z ]] && (($(now_ms) < deadline)); do
            sleep 0.1
        done
        kill -KILL "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    exit "$2"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# --- build and broker ---------------------------------------------------------

say "dependencies and broker jars"
run bash "$ROOT/ops/deps.sh"
run bash "$KAFKA_SH" fetch

say "build ($(rel "$BUILD"), RelWithDebInfo)"
# Plugins on explicitly: an earlier configure of this tree may have turned
# them off, and the nlp model needs the fastText one.
run --out /dev/null cmake -S "$ROOT" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKINFER_BUILD_PLUGINS=ON
mkdir -p "$BUILD"
note "building kinfer-worker, kinfer-produce and the fastText plugin" \
    "(log: $(rel "$BUILD")/demo-build.log)"
if ! run --log "$BUILD/demo-build.log" cmake --build "$BUILD" -j 2 \
    --target kinfer-worker kinfer-produce kinfer_fasttext; then
    grep -E -A3 'error|warning' "$BUILD/demo-build.log" | head -n 40 >&2 ||
        tail -n 40 "$BUILD/demo-build.log" >&2
    fail "build failed; full log in $BUILD/demo-build.log"
fi
[[ -x "$WORKER_BIN" && -x "$PRODUCE_BIN" && -f "$PLUGIN" ]] ||
    fail "build did not produce $WORKER_BIN, $PRODUCE_BIN and $PLUGIN"

say "broker"
# A previous --keep may have left a fleet and a broker behind; the demo
# always starts from empty topics so its output means one run.
stop_workers
stop_broker
rm -rf "$KAFKA_DIR" "$LOGS"
mkdir -p "$LOGS"
run --out /dev/null bash "$KAFKA_SH" start --dir "$KAFKA_DIR"
BOOTSTRAP="$(<"$KAFKA_DIR/bootstrap")"
note "broker at $BOOTSTRAP (state and kafka.log in $(rel "$KAFKA_DIR"))"
run bash "$KAFKA_SH" create-topic --dir "$KAFKA_DIR" "${TOPICS[@]}"

# --- example models -----------------------------------------------------------

# Both generators write their own training data and reference answers
# (nothing is downloaded) and take well under a second; they run again
# only when either script is newer than the last complete output.
say "example models ($(rel "$MODELS"))"
stamp="$MODELS/.complete"
if [[ -f "$stamp" && ! "$GEN_DENSE" -nt "$stamp" &&
    ! "$GEN_FASTTEXT" -nt "$stamp" ]]; then
    note "up to date (generated $(date -r "$stamp" '+%F %T'))"
else
    rm -rf "$MODELS"
    # /usr/bin/python3: the python3 first on PATH may lack NumPy.
    run /usr/bin/python3 "$GEN_DENSE" "$MODELS"
    run sh "$GEN_FASTTEXT" "$MODELS"
    touch "$stamp"
fi
note "models: $(cd "$MODELS/models" && echo */ | tr -d /)"

# --- the fleet ----------------------------------------------------------------

say "starting $WORKERS worker(s) in group $GROUP"
for ((n = 1; n <= WORKERS; n++)); do
    # Own session: a --keep fleet outlives this script and its terminal.
    # --http port 0: each worker serves /metrics and the health checks on a
    # free port of its own (read back from its log below), never colliding
    # with the default 8080 or with each other.
    args=(--brokers "$BOOTSTRAP" --group "$GROUP" --stats-interval 5
          --model-repo "$MODELS/models" --plugin "$PLUGIN"
          --http 127.0.0.1:0)
    show "$WORKER_BIN" "${args[@]}" ">$LOGS/worker-$n.log" "2>&1" "&"
    setsid "$WORKER_BIN" "${args[@]}" >"$LOGS/worker-$n.log" 2>&1 &
    WORKER_PIDS+=("$!")
    printf '%s\n' "$!" >"$LOGS/worker-$n.pid"
done
note "pids ${WORKER_PIDS[*]}; logs in $(rel "$LOGS")/worker-N.log"

# The HTTP port worker N serves on, from its "http: serving on" line
# (waits for it, bounded).
http_port() {
    local log="$LOGS/worker-$1.log" deadline=$(($(now_ms) + 30000)) line
    while (($(now_ms) < deadline)); do
        line="$(grep -m1 -o 'http: serving on .*' "$log" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            printf '%s\n' "${line##*:}"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# GET http://127.0.0.1:PORT/PATH with bash's /dev/tcp (no curl needed);
# the body only.
http_get() {
    local fd
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&"$fd"
    sed '1,/^\r*$/d' <&"$fd"
    exec {fd}>&-
}
HTTP_PORTS=()
for ((n = 1; n <= WORKERS; n++)); do
    port="$(http_port "$n")" || fail "worker $n logged no HTTP port"
    HTTP_PORTS+=("$port")
done
note "metrics and health: $(for p in "${HTTP_PORTS[@]}"; do
    printf 'http://127.0.0.1:%s/metrics ' "$p"; done)"

# The partitions a worker holds now, from its log: cooperative rebalancing
# logs increments ("assigned [..]", "revoked [..]", "lost [..]").
held_partitions() {
    awk '
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
        }' "$1"
}

# Requests would wait in the topic (the workers start from the earliest
# offset), but a worker joining while load runs moves partitions, and the
# rebalance would count as latency.  So wait until the group has settled:
# every worker that can get a partition holds some, and every partition
# has an owner (cooperative rebalancing revokes first, assigns later).
want=$((WORKERS < REQUEST_PARTITIONS ? WORKERS : REQUEST_PARTITIONS))
deadline=$(($(now_ms) + ASSIGN_DEADLINE_S * 1000))
while :; do
    have=0 held=0
    for ((n = 1; n <= WORKERS; n++)); do
        worker_alive "${WORKER_PIDS[n - 1]}" || {
            tail -n 20 "$LOGS/worker-$n.log" >&2
            fail "worker-$n exited during start-up"
        }
        parts="$(held_partitions "$LOGS/worker-$n.log")"
        if [[ -n "$parts" ]]; then
            have=$((have + 1))
            held=$((held + $(tr ',' '\n' <<<"$parts" | grep -c .)))
        fi
    done
    ((have >= want && held == REQUEST_PARTITIONS)) && break
    if (($(now_ms) > deadline)); then
        note "warning: after ${ASSIGN_DEADLINE_S} s, $have of $want" \
            "workers hold $held of $REQUEST_PARTITIONS partitions;" \
            "going on (latency may include a rebalance)"
        break
    fi
    sleep 0.2
done
for ((n = 1; n <= WORKERS; n++)); do
    note "worker-$n holds partitions" \
        "[$(held_partitions "$LOGS/worker-$n.log")] of kinfer.requests"
done
note "each worker serves (from worker-1.log):"
sed -n 's/^.* INFO  *\(model [^ ]* version [^ ]*: .*\)$/\1/p' \
    "$LOGS/worker-1.log" | sed 's/^/      /'

# --- synthetic load -----------------------------------------------------------

# Two runs, because one number cannot show both: a paced run below
# capacity measures what one request costs (service latency); a burst sent
# all at once measures throughput, and its latency is mostly queueing.
say "load 1 of 2, paced: $PACED_REQUESTS synthetic requests at" \
    "$PACED_RATE req/s (latency = service time)"
rc=0
run --out "$LOGS/produce-paced.txt" "$PRODUCE_BIN" --brokers "$BOOTSTRAP" \
    --generate "$PACED_REQUESTS" --rate "$PACED_RATE" --await \
    --timeout 60 || rc=$?
cat "$LOGS/produce-paced.txt"
((rc == 0)) || fail "kinfer-produce exited with status $rc"

say "load 2 of 2, burst: $REQUESTS synthetic requests as fast as possible" \
    "(throughput; latency = mostly queueing)"
rc=0
run --out "$LOGS/produce-burst.txt" "$PRODUCE_BIN" --brokers "$BOOTSTRAP" \
    --generate "$REQUESTS" --await --timeout 120 || rc=$?
cat "$LOGS/produce-burst.txt"
((rc == 0)) || fail "kinfer-produce exited with status $rc"

# Prints "key<TAB>partition<TAB>offset<TAB>value" for every message of a
# topic, oldest first per partition.
dump() {
    kcat -C -b "$BOOTSTRAP" -t "$1" -o beginning -e -q \
        -f '%k\t%p\t%o\t%s\n' "${@:2}"
}
# Cut long JSON for the screen.
clip() { awk '{ print (length($0) > 300) ? substr($0, 1, 297) "..." : $0 }'; }

say "two of the requests and their results"
samples="$(dump kinfer.requests -p 0 -c 2)"
results="$(dump kinfer.results)"
while IFS=$'\t' read -r key part off value; do
    printf 'request  key %s (kinfer.requests partition %s, offset %s)\n' \
        "$key" "$part" "$off"
    printf '  %s\n' "$value" | clip
    awk -F'\t' -v k="$key" '$1 == k {
        printf "result   (kinfer.results partition %s, offset %s)\n", $2, $3
        v = $0; sub(/^[^\t]*\t[^\t]*\t[^\t]*\t/, "", v)
        printf "  %s\n", v }' <<<"$results" | clip
done <<<"$samples"

# --- one request per model backend --------------------------------------------

# The first success case of each generator's expected/<model>.json, sent
# with the id demo-<model> (also its key), and its result checked against
# the generator's answer with the tolerance the integration tests use.
say "one request per model backend"
model_reqs="$LOGS/model-requests.jsonl"
python3 - "$MODELS/expected" "$model_reqs" "${MODEL_DEMOS[@]%%|*}" <<'PY'
import json, sys
expected, out, models = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "w") as f:
    for m in models:
        with open("%s/%s.json" % (expected, m)) as e:
            case = next(c for c in json.load(e) if "error" not in c)
        case["request"]["id"] = "demo-" + m
        f.write(json.dumps(case["request"], separators=(",", ":")) + "\n")
PY
rc=0
run --out "$LOGS/produce-models.txt" "$PRODUCE_BIN" --brokers "$BOOTSTRAP" \
    --input "$model_reqs" --await --timeout 60 || rc=$?
cat "$LOGS/produce-models.txt"
((rc == 0)) || fail "kinfer-produce exited with status $rc"
dump kinfer.results | awk -F'\t' '$1 ~ /^demo-(nlp|recsys|mlp)$/' \
    >"$LOGS/model-results.txt"
rc=0
python3 - "$MODELS/expected" "$LOGS/model-results.txt" \
    "${MODEL_DEMOS[@]}" <<'PY' || rc=$?
import json, sys

expected, results_file, demos = sys.argv[1], sys.argv[2], sys.argv[3:]
results = {}
with open(results_file) as f:
    for line in f:
        key, _part, _off, value = line.rstrip("\n").split("\t", 3)
        results[key] = json.loads(value)

ROWS, COLS = 4, 8

def fmt(v, dtype):
    if dtype == "BYTES":
        return json.dumps(v, ensure_ascii=False)
    if dtype in ("FP32", "FP64"):
        return "%.6g" % v
    return str(v)

def show(t, indent):
    """One tensor: a heading, then its rows, shortened."""
    shape, data, dtype = t["shape"], t["data"], t["datatype"]
    print("%s%s %s %s" % (indent, t["name"], dtype,
                          json.dumps(shape, separators=(",", ":"))))
    indent = " " * 13
    width = shape[-1] if len(shape) >= 2 and shape[-1] > 0 else len(data)
    if len(shape) <= 1 and dtype == "BYTES":
        width = 1          # one text a line
    rows = [data[i:i + width] for i in range(0, len(data), width)] or [[]]
    for row in rows[:ROWS]:
        cells = [fmt(v, dtype) for v in row[:COLS]]
        more = " ... (%d more)" % (len(row) - COLS) if len(row) > COLS else ""
        print("%s  %s%s" % (indent, ", ".join(cells), more))
    if len(rows) > ROWS:
        print("%s  ... (%d more rows)" % (indent, len(rows) - ROWS))

def close(got, want, dtype):
    if dtype in ("FP32", "FP64"):
        return abs(got - want) <= 1e-5 + 1e-4 * abs(want)
    return got == want

def check(result, case):
    if "error" in result:
        return "error result: " + result["error"]
    outs = {o["name"]: o for o in result.get("outputs", [])}
    for w in case["outputs"]:
        g = outs.get(w["name"])
        if g is None:
            return "output %s missing" % w["name"]
        if g["datatype"] != w["datatype"] or g["shape"] != w["shape"]:
            return "output %s is %s %s, want %s %s" % (
                w["name"], g["datatype"], g["shape"], w["datatype"],
                w["shape"])
        if len(g["data"]) != len(w["data"]) or not all(
                close(a, b, w["datatype"])
                for a, b in zip(g["data"], w["data"])):
            return "output %s has other values" % w["name"]
    return None

bad = 0
for demo in demos:
    model, served_by, reference = demo.split("|")
    with open("%s/%s.json" % (expected, model)) as e:
        case = next(c for c in json.load(e) if "error" not in c)
    req, key = case["request"], "demo-" + model
    print("\n--- %s (%s): request %s, case %s of expected/%s.json" % (
        model, served_by, key, json.dumps(case.get("name", req["id"])),
        model))
    if req.get("parameters"):
        print("  request  parameters %s" % json.dumps(req["parameters"]))
    for t in req["inputs"]:
        show(t, "  request  input ")
    result = results.get(key)
    if result is None:
        print("  result   none on kinfer.results")
        bad += 1
        continue
    print("  result   model %s version %s" % (
        result.get("model_name"), result.get("model_version")))
    for t in result.get("outputs", []):
        show(t, "  result   output ")
    problem = check(result, case)
    if problem:
        bad += 1
        print("  check    DIFFERS from the answer of %s: %s" % (
            reference, problem))
    else:
        print("  check    matches the answer of %s" % reference)
sys.exit(1 if bad else 0)
PY
((rc == 0)) || fail "a model result differs from its reference answer"

# --- malformed requests -------------------------------------------------------

say "sending 3 malformed requests"
bad="$LOGS/malformed.jsonl"
cat >"$bad" <<'EOF'
this is not JSON
{"id":"demo-bad-shape","model_name":"scale","inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5]}]}
{"id":"demo-bad-dtype","model_name":"scale","inputs":[{"name":"x","shape":[2],"datatype":"FP128","data":[1,2]}]}
EOF
sed 's/^/  /' "$bad"
rc=0
run --out "$LOGS/produce-malformed.txt" "$PRODUCE_BIN" --brokers "$BOOTSTRAP" \
    --input "$bad" --await --timeout 60 || rc=$?
cat "$LOGS/produce-malformed.txt"
((rc == 0)) || fail "kinfer-produce exited with status $rc"

# Dead letters are produced beside the error results, not before them:
# wait (bounded) until all three are there.
deadline=$(($(now_ms) + 30000))
until [[ "$(dump kinfer.dlq | grep -c .)" -ge 3 ]]; do
    (($(now_ms) < deadline)) || fail "fewer than 3 dead letters after 30 s"
    sleep 0.2
done
results="$(dump kinfer.results)"
say "their error results (kinfer.results)"
dlq="$(kcat -C -b "$BOOTSTRAP" -t kinfer.dlq -o beginning -e -q \
    -f '%k\t%h\t%s\n')"
while IFS=$'\t' read -r key _; do
    awk -F'\t' -v k="$key" '$1 == k {
        v = $0; sub(/^[^\t]*\t[^\t]*\t[^\t]*\t/, "", v)
        printf "key %s:\n  %s\n", k, v }' <<<"$results" | clip
done <<<"$dlq"
say "their dead letters (kinfer.dlq: original bytes + headers)"
while IFS=$'\t' read -r key headers value; do
    printf 'key %s\n  headers: %s\n  value:   %s\n' "$key" "$headers" \
        "$value" | clip
done <<<"$dlq"

# --- metrics --------------------------------------------------------------------

say "a scrape of worker 1's /metrics (http://127.0.0.1:${HTTP_PORTS[0]})"
show "$WORKER_BIN" --probe "http://127.0.0.1:${HTTP_PORTS[0]}/v2/health/ready"
"$WORKER_BIN" --probe "http://127.0.0.1:${HTTP_PORTS[0]}/v2/health/ready" |
    sed 's/^/    /' || note "(not ready)"
http_get "${HTTP_PORTS[0]}" /metrics >"$LOGS/metrics-worker-1.txt" ||
    fail "cannot scrape worker 1"
# The counters and gauges that tell the story; the full text (with every
# histogram bucket) is in the file.
grep -E '^kinfer_(requests_consumed|results|request_errors|dead_letters|inference_count|execution_count)_total|^kinfer_(partitions_assigned|backlog_seconds_max|ready) |^kinfer_request_duration_seconds_(sum|count)' \
    "$LOGS/metrics-worker-1.txt" | { grep -v ' 0$' || true; } | sed 's/^/    /'
note "full exposition: $(rel "$LOGS")/metrics-worker-1.txt"

# --- shutdown -----------------------------------------------------------------

if ((KEEP)); then
    FINISHED=1
    say "left running (--keep)"
    note "broker $BOOTSTRAP ($(rel "$KAFKA_DIR")), workers ${WORKER_PIDS[*]}"
    note "metrics:    ports ${HTTP_PORTS[*]} (http://127.0.0.1:PORT/metrics)"
    note "more load:  $PRODUCE_BIN --brokers $BOOTSTRAP --generate 1000 --await"
    note "models:     $MODELS/models (requests: $MODELS/expected/*.json)"
    if [[ "$BUILD_ROOT" == "$ROOT" ]]; then
        note "stop all:   ops/demo.sh --stop"
    else
        note "stop all:   ops/demo.sh --stop --build-root $BUILD_ROOT"
    fi
    exit 0
fi

say "stopping the workers (SIGTERM)"
stop_workers

# The group's committed offsets against the end of each partition: after a
# clean stop every partition should show LAG 0.  One JVM start (~1-3 s).
say "committed offsets of group $GROUP"
if run --out "$LOGS/group-offsets.txt" bash "$KAFKA_SH" describe-group \
    --dir "$KAFKA_DIR" "$GROUP"; then
    sed 's/^/    /' "$LOGS/group-offsets.txt"
else
    note "(could not describe the group)"
fi

say "stopping the broker"
stop_broker
echo
echo "demo finished: summaries in $(rel "$LOGS")/produce-{paced,burst}.txt"
