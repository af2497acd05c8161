#!/usr/bin/env bash
# Batch size 1 versus dynamic batching for each plugin backend that is
# built (xgboost, torchscript, onnx), through kinfer's inference stage
# (kinfer-bench-batching --model-repo; no Kafka).  For each backend it
# generates the models of ops/models/gen_<backend>.py in a temporary
# directory, serves one of them twice (a copy with max_batch_size 1 and
# one with dynamic batching) and offers both the generator's requests for
# it.  Prints each run's tables and, at the end, one summary line per
# backend.
#
# usage: tests/bench/backends.sh BUILD_DIR [BACKEND...] [-- BENCH_OPTIONS]
#   BUILD_DIR      a build tree (Release or RelWithDebInfo for numbers)
#   BACKEND        xgboost, torchscript, onnx (default: every one built)
#   BENCH_OPTIONS  passed on, e.g. -- --step-ms 1000 --refine 2
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[[ $# -ge 1 ]] || { sed -n 2,15p "$0" >&2; exit 2; }
BUILD="$(cd "$1" && pwd)"
shift
backends=()
while (($#)) && [[ "$1" != "--" ]]; do
    backends+=("$1")
    shift
done
[[ "${1:-}" == "--" ]] && shift
extra=("$@")
((${#backends[@]})) || backends=(xgboost torchscript onnx)

BENCH="$BUILD/tests/bench/kinfer-bench-batching"
[[ -x "$BENCH" ]] || { echo "backends.sh: no $BENCH" >&2; exit 1; }

# The model each backend is measured on, and its dynamic batching.
declare -A MODEL=([xgboost]=ranker [torchscript]=cnn [onnx]=onnx_cnn)
BATCH='{"max_batch_size": 32, "max_queue_delay_us": 2000}'

work="$(mktemp -d "${TMPDIR:-/tmp}/kinfer-bench-backends.XXXXXX")"
trap 'rm -rf "$work"' EXIT
summary=()

for be in "${backends[@]}"; do
    plugin="$BUILD/plugins/kinfer_$be.so"
    model="${MODEL[$be]:-}"
    if [[ -z "$model" ]]; then
        echo "backends.sh: unknown backend '$be'" >&2
        exit 2
    fi
    if [[ ! -f "$plugin" ]]; then
        echo "== $be: skipped ($plugin not built)"
        summary+=("$be: skipped (plugin not built)")
        continue
    fi
    gen="$work/$be"
    /usr/bin/python3 "$ROOT/ops/models/gen_$be.py" "$gen" >/dev/null
    # repo/<model>_b1 without batching, repo/<model>_dyn with it; the
    # requests file holds the success cases' requests without model_name,
    # so the bench routes them itself.
    /usr/bin/python3 - "$gen" "$model" "$BATCH" <<'EOF'
import json, os, shutil, sys
gen, model, batch = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
src = os.path.join(gen, "models", model)
for name, patch in ((model + "_b1", {"max_batch_size": 1,
                                     "max_queue_delay_us": 0}),
                    (model + "_dyn", batch)):
    dst = os.path.join(gen, "repo", name)
    shutil.copytree(src, dst)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg.pop("preferred_batch_size", None)
    cfg.update(patch)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f)
with open(os.path.join(gen, "expected", model + ".json")) as f:
    cases = json.load(f)
with open(os.path.join(gen, "requests.jsonl"), "w") as f:
    for c in cases:
        if "outputs" in c:
            req = dict(c["request"])
            req.pop("model_name", None)
            f.write(json.dumps(req, separators=(",", ":")) + "\n")
EOF
    echo "== $be: model $model"
    out="$work/$be.out"
    "$BENCH" --model-repo "$gen/repo" --plugin "$plugin" \
        --single-model "${model}_b1" --batched-model "${model}_dyn" \
        --requests "$gen/requests.jsonl" "${extra[@]}" | tee "$out"
    one="$(sed -n 's/^  batch size 1: *max sustained *//p' "$out")"
    dyn="$(sed -n 's/^  dynamic batching: *max sustained *//p' "$out")"
    summary+=("$be ($model): batch size 1 $one, dynamic batching $dyn")
done

echo
echo "== summary (max sustained rate within the p99 budget)"
printf '  %s\n' "${summary[@]}"
