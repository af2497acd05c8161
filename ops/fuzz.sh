#!/usr/bin/env bash
# Fuzzes kinfer's parsers of untrusted input with libFuzzer (tests/fuzz):
# builds the targets with clang, ASan and UBSan in their own tree, runs
# each for N minutes from the committed corpus, then prints executions,
# executions per second and every finding with its reproducer.  The CI
# only replays the corpus (ctest label fuzz); this is the long run.
# `ops/fuzz.sh --help` for the options.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly ALL_TARGETS=(decode decode_json roundtrip safetensors repo options)

usage() {
    cat <<EOF
usage: ops/fuzz.sh [--minutes N] [--merge] [-j N] [--build-dir DIR]
                   [TARGET...]

  --minutes N       fuzz each target for N minutes (default 5)
  --merge           afterwards, add to tests/fuzz/corpus/ the inputs of the
                    run that reach coverage the committed corpus misses
  -j N, --jobs N    parallel compile jobs (default 2)
  --build-dir DIR   build tree (default build-fuzz/ in the repository);
                    each target works in DIR/fuzz-work/TARGET/

TARGETs (default: all, one after the other): ${ALL_TARGETS[*]}

Needs clang 14 with libFuzzer (Debian: clang-14 libclang-rt-14-dev); CC
may name another clang.  A finding is saved as
DIR/fuzz-work/TARGET/artifacts/crash-* (or leak-, timeout-, oom-); replay
it with DIR/tests/fuzz/fuzz_TARGET FILE, and once fixed add it to
tests/fuzz/regress/TARGET/ under a name saying what it was.
Exit status: 0 when no target found anything.
EOF
}

die_usage() {
    printf 'ops/fuzz.sh: %s\n' "$1" >&2
    usage >&2
    exit 2
}

MINUTES=5
MERGE=0
JOBS=2
BUILD="$ROOT/build-fuzz"
TARGETS=()
while (($#)); do
    case "$1" in
    --minutes) [[ $# -ge 2 ]] || die_usage "--minutes needs a value"
        MINUTES="$2"; shift 2 ;;
    --minutes=*) MINUTES="${1#--minutes=}"; shift ;;
    --merge) MERGE=1; shift ;;
    -j|--jobs) [[ $# -ge 2 ]] || die_usage "$1 needs a value"
        JOBS="$2"; shift 2 ;;
    -j*) JOBS="${1#-j}"; shift ;;
    --jobs=*) JOBS="${1#--jobs=}"; shift ;;
    --build-dir) [[ $# -ge 2 ]] || die_usage "--build-dir needs a value"
        BUILD="$2"; shift 2 ;;
    --build-dir=*) BUILD="${1#--build-dir=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die_usage "unknown option '$1'" ;;
    *) TARGETS+=("$1"); shift ;;
    esac
done
[[ "$MINUTES" =~ ^[1-9][0-9]*$ ]] ||
    die_usage "--minutes wants a positive number"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die_usage "-j wants a positive number"
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] ||
        die_usage "unknown target '$t' (known: ${ALL_TARGETS[*]})"
done

log() { printf 'fuzz.sh: %s\n' "$*" >&2; }

# --- build ------------------------------------------------------------------

CC="${CC:-}"
if [[ -z "$CC" || "$("$CC" --version 2>/dev/null)" != *clang* ]]; then
    CC="$(command -v clang-14 || command -v clang || true)"
fi
[[ -n "$CC" ]] || {
    log "error: no clang found (apt-get install clang-14 libclang-rt-14-dev)"
    exit 1
}
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
log "building the fuzz targets with $CC in $BUILD"
# Plugins are C++ and fuzzed by nobody: leave them out of this tree.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKINFER_FUZZ=ON \
    -DKINFER_BUILD_PLUGINS=OFF >"$BUILD/fuzz-cmake.log" 2>&1 || {
    tail -n 30 "$BUILD/fuzz-cmake.log" >&2
    log "error: cmake configure failed"
    exit 1
}
cmake --build "$BUILD" -j "$JOBS" \
    --target "${TARGETS[@]/#/fuzz_}" >>"$BUILD/fuzz-cmake.log" 2>&1 || {
    tail -n 30 "$BUILD/fuzz-cmake.log" >&2
    log "error: build failed (log: $BUILD/fuzz-cmake.log)"
    exit 1
}

# --- fuzz -------------------------------------------------------------------

export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1\
${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1\
${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# The repo target loads models again and again; one BLAS thread is plenty.
export OPENBLAS_NUM_THREADS=1

FUZZ_SRC="$ROOT/tests/fuzz"
SUMMARY=()
FOUND=0

# The value of libFuzzer's final "stat::NAME: value" line in a log.
stat_of() {
    sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

# The committed inputs of target $1: the codec targets share "request".
kind_of() {
    case "$1" in
    decode | decode_json | roundtrip) echo request ;;
    *) echo "$1" ;;
    esac
}

for t in "${TARGETS[@]}"; do
    kind="$(kind_of "$t")"
    work="$BUILD/fuzz-work/$t"
    mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
    # Start from what is committed; keep what earlier runs found.
    for d in "$FUZZ_SRC/corpus/$kind" "$FUZZ_SRC/regress/$kind"; do
        [[ -d "$d" ]] && cp -n "$d"/* "$work/corpus/" 2>/dev/null || true
    done
    dict="$FUZZ_SRC/dict/$kind.dict"
    extra=()
    # Lines longer than the 4096-byte cap need room.
    [[ "$t" == options ]] && extra+=(-max_len=10000)
    before=("$work/artifacts"/*)
    log "fuzzing $t for $MINUTES minute(s) (log: $work/fuzz.log)"
    set +e
    TMPDIR="$work/tmp" "$BUILD/tests/fuzz/fuzz_$t" \
        -max_total_time=$((MINUTES * 60)) -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -dict="$dict" \
        -artifact_prefix="$work/artifacts/" "${extra[@]}" \
        "$work/corpus" >"$work/fuzz.log" 2>&1
    rc=$?
    set -e
    rm -rf "$work/tmp"/kinfer-fuzz-*
    execs="$(stat_of number_of_executed_units "$work/fuzz.log")"
    rate="$(stat_of average_exec_per_sec "$work/fuzz.log")"
    added="$(stat_of new_units_added "$work/fuzz.log")"
    findings=()
    for f in "$work/artifacts"/*; do
        [[ -e "$f" && " ${before[*]} " != *" $f "* ]] && findings+=("$f")
    done
    SUMMARY+=("$(printf '%-12s %12s %9s %6s %4s' "$t" "${execs:-?}" \
        "${rate:-?}" "${added:-?}" "${#findings[@]}")")
    if ((${#findings[@]})) || ((rc != 0)); then
        FOUND=1
        log "$t: FINDING (libFuzzer exit $rc)"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: invariant)' \
            "$work/fuzz.log" | head -n 5 >&2 || true
        for f in "${findings[@]}"; do
            log "  reproducer: $f"
            log "  replay:     $BUILD/tests/fuzz/fuzz_$t $f"
        done
    fi
    if ((MERGE)); then
        # Adds only inputs with new coverage (edges, not hit counts, so the
        # committed corpus stays small); the codec targets share theirs, so
        # nothing is ever dropped from it here.
        n0="$(ls "$FUZZ_SRC/corpus/$kind" | wc -l)"
        TMPDIR="$work/tmp" "$BUILD/tests/fuzz/fuzz_$t" -merge=1 \
            -use_counters=0 "${extra[@]}" "$FUZZ_SRC/corpus/$kind" \
            "$work/corpus" >"$work/merge.log" 2>&1 || {
            log "error: merge of $t failed (log: $work/merge.log)"
            exit 1
        }
        n1="$(ls "$FUZZ_SRC/corpus/$kind" | wc -l)"
        log "$t: tests/fuzz/corpus/$kind grew from $n0 to $n1 inputs"
    fi
done

printf '%-12s %12s %9s %6s %4s\n' target execs exec/s new finds
printf '%s\n' "${SUMMARY[@]}"
if ((FOUND)); then
    log "findings above"
    exit 1
fi
log "no findings"
