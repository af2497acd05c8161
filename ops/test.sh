#!/usr/bin/env bash
# The one command that runs kinfer's whole test suite on a fresh machine:
# installs missing packages, fetches the broker jars, builds build/
# (RelWithDebInfo), build-asan/ (Debug, ASan+UBSan) and build-tsan/ (the
# pure-library tests under ThreadSanitizer) and runs ctest in each.  Prints
# the time of every stage and ends with "all tests passed" or the stages
# that failed.  `ops/test.sh --help` for the options.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

usage() {
    cat <<EOF
usage: ops/test.sh [--quick] [--label LABEL] [-j N] [--build-root DIR]

  --quick            build and test build/ only (no ASan or TSan tree)
  --label LABEL      run only the ctest tests with this label
                     (unit, integration or container); default: all.
                     The container stage (docker-compose.yml on a real
                     engine, ~5-7 min) runs with no label or "container",
                     and says "skipped: no engine" when none can start
  -j N, --jobs N     parallel compile and test jobs (default 2)
  --build-root DIR   put build/, build-asan/ and build-tsan/ under DIR
                     instead of the repository root

Integration tests start their own broker (ops/kafka.sh) unless
KINFER_TEST_BROKERS names one.  Exit status: 0 when every stage passed.
EOF
}

die_usage() {
    printf 'ops/test.sh: %s\n' "$1" >&2
    usage >&2
    exit 2
}

QUICK=0
LABEL=""
JOBS=2
BUILD_ROOT="$ROOT"
while (($#)); do
    case "$1" in
    --quick) QUICK=1; shift ;;
    --label) [[ $# -ge 2 ]] || die_usage "--label needs a value"
        LABEL="$2"; shift 2 ;;
    --label=*) LABEL="${1#--label=}"; shift ;;
    -j|--jobs) [[ $# -ge 2 ]] || die_usage "$1 needs a value"
        JOBS="$2"; shift 2 ;;
    -j*) JOBS="${1#-j}"; shift ;;
    --jobs=*) JOBS="${1#--jobs=}"; shift ;;
    --build-root) [[ $# -ge 2 ]] || die_usage "--build-root needs a value"
        BUILD_ROOT="$2"; shift 2 ;;
    --build-root=*) BUILD_ROOT="${1#--build-root=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die_usage "-j wants a positive number"
if [[ -n "$LABEL" && ! "$LABEL" =~ ^[A-Za-z0-9_.|-]+$ ]]; then
    die_usage "--label wants a label such as unit or integration"
fi
mkdir -p "$BUILD_ROOT"
BUILD_ROOT="$(cd "$BUILD_ROOT" && pwd)"

# CI runs us without stdin or a terminal; nothing below may wait for one.
exec </dev/null
cd "$ROOT"

# Sanitizer defaults; anything already in the environment comes last and
# so wins.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:print_stacktrace=1:\
strict_string_checks=1:check_initialization_order=1\
${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1\
${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1\
${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

# --- stages -----------------------------------------------------------------

STAGE_NAMES=()
STAGE_TIMES=()
STAGE_RESULTS=()
FAILED=()

now() { printf '%s\n' "${EPOCHREALTIME/[,.]/}"; }   # microseconds

# run_stage NAME COMMAND...: run COMMAND, time it, remember the result.
run_stage() {
    local name="$1" t0 t1 rc=0 secs
    shift
    printf '\n==> %s\n' "$name"
    t0="$(now)"
    "$@" || rc=$?
    t1="$(now)"
    secs="$(awk -v d="$((t1 - t0))" 'BEGIN { printf "%.1f", d / 1e6 }')"
    STAGE_NAMES+=("$name")
    STAGE_TIMES+=("$secs")
    if ((rc == 0)); then
        STAGE_RESULTS+=("ok")
        printf '<== %s: ok (%s s)\n' "$name" "$secs"
    else
        STAGE_RESULTS+=("FAILED (exit $rc)")
        FAILED+=("$name")
        printf '<== %s: FAILED with exit %d (%s s)\n' "$name" "$rc" "$secs"
    fi
    return "$rc"
}

print_summary() {
    local i
    printf '\n==> summary\n'
    for i in "${!STAGE_NAMES[@]}"; do
        printf '  %-28s %8s s  %s\n' "${STAGE_NAMES[i]}" "${STAGE_TIMES[i]}" \
            "${STAGE_RESULTS[i]}"
    done
}

# --- cleanup: no broker or test process outlives us -------------------------

CTEST_PID=""
TREES=()

cleanup() {
    local rc=$? tree
    trap - EXIT INT TERM HUP
    if [[ -n "$CTEST_PID" ]]; then
        # ctest leads its own process group (setsid): end it and every
        # test and worker it started.
        kill -TERM -- "-$CTEST_PID" 2>/dev/null ||
            kill -TERM "$CTEST_PID" 2>/dev/null || true
        wait "$CTEST_PID" 2>/dev/null || true
        CTEST_PID=""
    fi
    # The fixture stops its broker after the last integration test, but
    # not when ctest failed in the fixture itself or was interrupted.
    # Stopping a broker that is not running succeeds at once.
    if [[ -z "${KINFER_TEST_BROKERS:-}" ]]; then
        for tree in "${TREES[@]}"; do
            if [[ -d "$tree/kafka-test" ]]; then
                bash "$ROOT/ops/kafka.sh" stop --dir "$tree/kafka-test" ||
                    true
            fi
        done
    fi
    exit "$rc"
}
on_signal() {
    printf '\nops/test.sh: interrupted by SIG%s\n' "$1" >&2
    print_summary >&2
    printf 'FAILED: interrupted during %s\n' "${CURRENT:-start-up}" >&2
    exit $((128 + $2))
}
trap cleanup EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

# Runs ctest in TREE in its own process group, in the background, so a
# signal to this script is handled at once (bash defers traps while a
# foreground child runs) and the cleanup can end the whole group.
run_ctest() {
    local tree="$1" args=(--output-on-failure -j "$JOBS")
    [[ -n "$LABEL" ]] && args+=(-L "$LABEL")
    (cd "$tree" && exec setsid ctest "${args[@]}") &
    CTEST_PID=$!
    local rc=0
    wait "$CTEST_PID" || rc=$?
    CTEST_PID=""
    return "$rc"
}

configure() {
    local tree="$1"
    shift
    cmake -S "$ROOT" -B "$tree" -DKINFER_WERROR=ON -DKINFER_BUILD_TESTS=ON \
        "$@"
}

build() {
    cmake --build "$1" -j "$JOBS"
}

# One build tree: configure, build, test.  A failing tree does not stop the
# other one: its results are still worth having.
run_tree() {
    local name="$1" tree="$2"
    shift 2
    TREES+=("$tree")
    CURRENT="$name configure"
    run_stage "$name configure" configure "$tree" "$@" || return 0
    CURRENT="$name build"
    run_stage "$name build" build "$tree" || return 0
    CURRENT="$name ctest${LABEL:+ -L $LABEL}"
    run_stage "$CURRENT" run_ctest "$tree" || return 0
}

# Every C, C header and C++ file must match .clang-format (checked with the
# clang-format of the machine: Debian 12's 14).  Prints the files that
# differ and fails.
format_check() {
    if [[ ! -f "$ROOT/.clang-format" ]]; then
        echo "no .clang-format; skipped"
        return 0
    fi
    if ! command -v clang-format >/dev/null 2>&1; then
        echo "clang-format not installed (ops/deps.sh installs it)" >&2
        return 1
    fi
    local files=() f differ=()
    while IFS= read -r -d '' f; do
        files+=("$f")
    done < <(find lib consumer producer tests plugins examples -type f \
        \( -name '*.c' -o -name '*.h' -o -name '*.cc' \) -print0 2>/dev/null |
        sort -z)
    for f in "${files[@]}"; do
        clang-format --dry-run --Werror "$f" >/dev/null 2>&1 ||
            differ+=("$f")
    done
    printf 'clang-format: %d of %d files differ from .clang-format\n' \
        "${#differ[@]}" "${#files[@]}"
    if ((${#differ[@]} > 0)); then
        printf '  %s\n' "${differ[@]}"
        echo "  fix with: clang-format -i FILE"
        return 1
    fi
}

# --- main ---------------------------------------------------------------------

printf 'ops/test.sh: repository %s, build trees under %s, -j %s%s%s\n' \
    "$ROOT" "$BUILD_ROOT" "$JOBS" "${LABEL:+, label $LABEL}" \
    "$( ((QUICK)) && echo ', quick (no ASan)')"

CURRENT="dependencies"
if ! run_stage "dependencies (deps.sh)" bash "$ROOT/ops/deps.sh"; then
    print_summary
    echo "FAILED: dependencies (ops/deps.sh)"
    exit 1
fi
CURRENT="broker jars"
if [[ -z "${KINFER_TEST_BROKERS:-}" && "$LABEL" != "unit" ]]; then
    if ! run_stage "broker jars (kafka.sh fetch)" \
        bash "$ROOT/ops/kafka.sh" fetch; then
        print_summary
        echo "FAILED: broker jars (ops/kafka.sh fetch)"
        exit 1
    fi
fi

run_tree "build/" "$BUILD_ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
if ((!QUICK)); then
    run_tree "build-asan/" "$BUILD_ROOT/build-asan" \
        -DCMAKE_BUILD_TYPE=Debug -DKINFER_SANITIZE=ON
    # A KINFER_TSAN tree holds only the pure-library tests (pool, tracker,
    # batcher, stage; all labelled unit): ThreadSanitizer crashes inside
    # librdkafka's threads.  Nothing in it for other labels.
    if [[ -z "$LABEL" || "$LABEL" == "unit" ]]; then
        run_tree "build-tsan/" "$BUILD_ROOT/build-tsan" \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKINFER_TSAN=ON
    fi
fi

# --- container stage (tests/container/, ctest label "container") ------------
# docker-compose.yml under chaos on a real engine, run from build/'s tree (it
# sends the load with build/'s kinfer-produce).  The test starts Debian's
# dockerd itself when no engine answers and skips (exit 77) only when none
# can be started (not root, dockerd fails); the stage then says so.
container_stage() {
    local tree="$BUILD_ROOT/build" log="$BUILD_ROOT/build/container-stage.log"
    if [[ ! -x "$tree/producer/kinfer-produce" ]]; then
        echo "no $tree/producer/kinfer-produce: build/ did not build"
        return 1
    fi
    # One process group (setsid), so the cleanup can end ctest, tee and the
    # test, whose own trap then takes its containers down.
    # shellcheck disable=SC2016 # $1 belongs to the inner shell
    (cd "$tree" && KINFER_CONTAINER_TEST=1 exec setsid bash -c \
        'set -o pipefail; ctest -L container --output-on-failure -V 2>&1 |
            tee "$1"' _ "$log") &
    CTEST_PID=$!
    local rc=0
    wait "$CTEST_PID" || rc=$?
    CTEST_PID=""
    CONTAINER_SKIPPED=""
    if ((rc == 0)) && grep -q 'SKIPPED:' "$log"; then
        CONTAINER_SKIPPED="$(sed -n 's/^.*SKIPPED: //p' "$log" | head -n 1)"
    fi
    return "$rc"
}
if [[ -z "$LABEL" || "$LABEL" == container ]]; then
    CURRENT="container (compose chaos)"
    CONTAINER_SKIPPED=""
    if run_stage "$CURRENT" container_stage; then
        if [[ -n "$CONTAINER_SKIPPED" ]]; then
            STAGE_RESULTS[${#STAGE_RESULTS[@]} - 1]="skipped: no engine"
            printf 'container stage SKIPPED: %s\n' "$CONTAINER_SKIPPED"
        fi
    fi
fi

CURRENT="format check"
run_stage "format check" format_check || true

print_summary
if ((${#FAILED[@]} > 0)); then
    failed="$(printf '%s, ' "${FAILED[@]}")"
    printf 'FAILED: %s\n' "${failed%, }"
    exit 1
fi
echo "all tests passed"
