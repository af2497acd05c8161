#!/usr/bin/env bash
# Installs the Debian 12 packages kinfer needs to build, test and run its
# local Kafka broker (ops/kafka.sh).  Idempotent and quick when everything
# is present: apt-get runs only for packages dpkg reports as missing.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config          # toolchain
    librdkafka-dev libjansson-dev             # kinfer's libraries
    libdouble-conversion-dev                  # shortest float text
    libmicrohttpd-dev                         # /metrics and health (worker)
    prometheus                                # promtool, scrape test
    libopenblas-dev libfasttext-dev fasttext  # model backends
    python3 python3-numpy                     # reference models, tooling
    # Optional backend plugins and their reference generators
    # (plugins/CMakeLists.txt builds each one whose library is found).
    # libtorch-dev + python3-torch are the heavy ones: with xgboost and
    # onnx, 196 packages, 175 MB to download, 878 MB installed, 43 s on
    # the CI machine; libopencv-dnn-dev adds 3 packages, 3.7 MB, 2 s.
    libxgboost-dev python3-xgboost            # plugin xgboost
    libtorch-dev python3-torch                # plugin torchscript
    libopencv-dnn-dev python3-onnx            # plugin onnx
    libcmocka-dev clang-format                # tests, style check
    kcat maven                                # local broker (ops/kafka.sh)
)
# The broker needs a Java runtime; any java on PATH will do.
if ! command -v java >/dev/null 2>&1; then
    PACKAGES+=(openjdk-17-jre-headless)
fi

log() { printf 'deps.sh: %s\n' "$*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

SUDO=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
        log "error: not root and no sudo; install as root: ${missing[*]}"
        exit 1
    }
    SUDO=(sudo -n)
fi
command -v apt-get >/dev/null 2>&1 || {
    log "error: apt-get not found (Debian 12 expected); install: ${missing[*]}"
    exit 1
}

log "installing ${missing[*]}"
apt_log="$(mktemp "${TMPDIR:-/tmp}/kinfer-deps.XXXXXX")"
trap 'rm -f "$apt_log"' EXIT
run_apt() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get \
        -o Dpkg::Use-Pty=0 -q -y "$@" </dev/null >>"$apt_log" 2>&1
}
if ! run_apt update; then
    tail -n 30 "$apt_log" >&2
    log "error: apt-get update failed (network? apt sources?)"
    exit 1
fi
if ! run_apt install --no-install-recommends "${missing[@]}"; then
    tail -n 30 "$apt_log" >&2
    log "error: apt-get install failed for: ${missing[*]}"
    exit 1
fi
log "installed ${#missing[@]} package(s)"
