#!/usr/bin/env bash
# Checks the operations kit: ops/k8s/ (Kubernetes and KEDA manifests),
# ops/prometheus/alerts.yml (+ its unit tests) and ops/grafana/kinfer.json.
#
#   - every manifest against the Kubernetes OpenAPI schemas (strict: an
#     unknown field fails), for the oldest and newest Kubernetes in
#     K8S_VERSIONS, with the schemas bundled by PyPI's kubernetes-validate;
#   - every KEDA ScaledObject against KEDA's own CRD schema (made strict the
#     same way), and its triggers' metadata against the keys, types and
#     enums of KEDA's Kafka and Prometheus scalers (their Go sources), both
#     taken from KEDA's module on the Go module proxy;
#   - the manifests against the worker: env names (consumer/main.c), the
#     shutdown budget vs terminationGracePeriodSeconds, probe paths, the
#     Kafka trigger's group/topic/offsetResetPolicy (lib/worker.c) and its
#     lagThreshold = rate x commit interval;
#   - alerts.yml with `promtool check rules` and alerts_test.yml with
#     `promtool test rules`;
#   - every PromQL query of the dashboard and of the Prometheus ScaledObject,
#     written into a generated rules file for `promtool check rules`;
#   - the kinfer_* metric names used against docs/metrics.md;
#   - then a self-test: each check must fail on a copy of the kit with one
#     deliberate mistake, so a check that stopped checking is noticed.
#
# Installs what it needs into a cache (KINFER_OPS_CACHE, default
# ~/.cache/kinfer-ops): a venv from PyPI and a few files of KEDA's module.
# Needs python3 (with venv), go and promtool (Debian's prometheus package,
# ops/deps.sh); no broker, no cluster, no network after the install.
# Exit status 0 when everything passed.  Run by ctest as ops_kit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
SELF="$ROOT/ops/check-ops.sh"
readonly SELF

KV_VERSION=1.37.0         # PyPI kubernetes-validate: schemas of 1.25-1.37
K8S_VERSIONS="1.28.0 1.37.0"
KEDA_VERSION=v2.21.0      # github.com/kedacore/keda/v2
CACHE="${KINFER_OPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kinfer-ops}"

usage() {
    cat <<EOF
usage: ops/check-ops.sh [--tree DIR] [--no-self-test]

  --tree DIR       check the kit in DIR (a copy of the repository's ops/,
                   docs/, consumer/main.c and lib/worker.c) instead of
                   the repository; the self-test uses it
  --no-self-test   skip the deliberate-mistake runs

Cache: \$KINFER_OPS_CACHE (default ~/.cache/kinfer-ops).
EOF
}

TREE="$ROOT"
SELF_TEST=1
while (($#)); do
    case "$1" in
    --tree) [[ $# -ge 2 ]] || { usage >&2; exit 2; }
        TREE="$2"; shift 2 ;;
    --no-self-test) SELF_TEST=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'check-ops.sh: unknown argument %s\n' "$1" >&2
        usage >&2; exit 2 ;;
    esac
done
exec </dev/null

log() { printf 'check-ops: %s\n' "$*"; }
die() { printf 'check-ops: error: %s\n' "$*" >&2; exit 1; }

now_ms() { local t="${EPOCHREALTIME/[,.]/}"; printf '%s\n' "$((t / 1000))"; }
T0="$(now_ms)"

VENV="$CACHE/venv-kv$KV_VERSION"
KEDA_DIR="$CACHE/keda-$KEDA_VERSION"

# --- install (idempotent; one installer at a time) ---------------------------

install_tools() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    if [[ ! -f "$VENV/.complete" ]]; then
        log "installing kubernetes-validate $KV_VERSION into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" ||
            die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$VENV/bin/pip" install --disable-pip-version-check --no-input -q \
            "kubernetes-validate==$KV_VERSION" ||
            die "pip install kubernetes-validate==$KV_VERSION failed"
        touch "$VENV/.complete"
    fi
    if [[ ! -f "$KEDA_DIR/.complete" ]]; then
        command -v go >/dev/null 2>&1 ||
            die "go not found: needed once to fetch KEDA's CRD from the Go module proxy"
        log "fetching github.com/kedacore/keda/v2@$KEDA_VERSION (Go module proxy)"
        local work dir
        work="$(mktemp -d "$CACHE/keda-dl.XXXXXX")"
        # Outside any module, with a private module cache that is dropped
        # afterwards: only the four files below are kept.
        dir="$(cd "$work" && GOMODCACHE="$work/mod" GOFLAGS=-mod=mod \
            GOWORK=off GOTOOLCHAIN=local go mod download -json \
            "github.com/kedacore/keda/v2@$KEDA_VERSION" |
            "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" ||
            { chmod -R u+w "$work"; rm -rf "$work"
              die "go mod download github.com/kedacore/keda/v2@$KEDA_VERSION failed"; }
        rm -rf "$KEDA_DIR"
        mkdir -p "$KEDA_DIR"
        cp "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" \
            "$dir/pkg/scalers/kafka_scaler.go" \
            "$dir/pkg/scalers/prometheus_scaler.go" "$dir/LICENSE" "$KEDA_DIR/"
        chmod -R u+w "$work"
        rm -rf "$work"
        touch "$KEDA_DIR/.complete"
    fi
    exec 9>&-
    command -v promtool >/dev/null 2>&1 ||
        die "promtool not found (Debian's prometheus package; ops/deps.sh installs it)"
}

# --- the checks on one tree ----------------------------------------------------

# check_manifests TREE GENERATED_RULES: the Python half; writes the
# dashboard's and the ScaledObjects' PromQL into GENERATED_RULES.
check_manifests() {
    "$VENV/bin/python" - "$1" "$KEDA_DIR" "$K8S_VERSIONS" "$2" <<'PY'
import glob, json, math, os, re, sys

import jsonschema
import kubernetes_validate.utils as kv
import referencing
import yaml

tree, keda_dir, k8s_versions, rules_out = sys.argv[1:5]
k8s_versions = k8s_versions.split()
failures = []
passed = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


def rel(path):
    return os.path.relpath(path, tree)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- what the worker says about itself ---------------------------------------
main_c = read(os.path.join(tree, "consumer/main.c"))
worker_c = read(os.path.join(tree, "lib/worker.c"))
# {"drain-timeout", "KINFER_DRAIN_TIMEOUT", KINFER_OPT_INT, "10", ...
opt_re = re.compile(r'\{\s*"([a-z-]+)",\s*"(KINFER_[A-Z_]+)",\s*KINFER_OPT_\w+,\s*'
                    r'(NULL|"[^"]*")')
worker_env = {}
for name, env, default in opt_re.findall(main_c):
    worker_env[env] = None if default == "NULL" else default.strip('"')
if "KINFER_BROKERS" not in worker_env:
    fail("consumer/main.c", "found no option table (KINFER_BROKERS)")
consumer_props = dict(re.findall(r'\{\s*"([a-z.]+)",\s*"([^"]*)"\s*\}', worker_c))
if "auto.offset.reset" not in consumer_props:
    fail("lib/worker.c", "found no auto.offset.reset in the consumer defaults")
# librdkafka's default unless the worker sets it.
commit_ms = int(consumer_props.get("auto.commit.interval.ms", "5000"))

# --- load the manifests -------------------------------------------------------
docs = []
files = sorted(glob.glob(os.path.join(tree, "ops/k8s/*.yaml")))
if not files:
    fail("ops/k8s", "no manifests")
for path in files:
    try:
        with open(path, encoding="utf-8") as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc is not None:
                    docs.append((f"{rel(path)}#{i}", doc))
    except yaml.YAMLError as e:
        fail(rel(path), f"not YAML: {e}")


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def find(kind, name=None):
    return [(w, d) for w, d in docs
            if d.get("kind") == kind and (name is None or d["metadata"].get("name") == name)]


# --- KEDA: the CRD's schema, strict, and the scalers' metadata keys ------------
def strict(node):
    """An OpenAPI v3 schema from a CRD as a JSON schema that, like
    kubeconform's strict mode, refuses fields the CRD does not know (the API
    server would silently prune them)."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


crd = yaml.safe_load(read(os.path.join(keda_dir, "keda.sh_scaledobjects.yaml")))
keda_schemas = {}
for v in crd["spec"]["versions"]:
    s = strict(v["schema"]["openAPIV3Schema"])
    s["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{v['name']}"}
    s["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    s["required"] = sorted(set(s.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    keda_schemas[f"{crd['spec']['group']}/{v['name']}"] = s

tag_re = re.compile(r'^\s*(\w+)\s+([\w.\[\]*]+)\s+`keda:"([^"]*)"`', re.M)


def scaler_params(go_file):
    """name -> (go type, optional, enum) for a scaler's trigger metadata."""
    params = {}
    for _field, gotype, tag in tag_re.findall(read(os.path.join(keda_dir, go_file))):
        parts = {}
        flags = set()
        for p in tag.split(","):
            p = p.strip()
            if "=" in p:
                k, v = p.split("=", 1)
                parts[k.strip()] = v.strip()
            elif p:
                flags.add(p)
        order = parts.get("order", "").split(";")
        if "name" not in parts or "triggerMetadata" not in order:
            continue
        params[parts["name"]] = {
            "type": gotype,
            "required": "optional" not in flags and "default" not in parts,
            "fromEnv": "resolvedEnv" in order,
            "enum": parts["enum"].split(";") if "enum" in parts else None,
        }
    if not params:
        fail(go_file, "found no keda:\"name=...\" tags")
    return params


scalers = {"kafka": scaler_params("kafka_scaler.go"),
           "prometheus": scaler_params("prometheus_scaler.go")}


def check_value(where, key, value, p):
    t = p["type"]
    try:
        if t in ("int", "int32", "int64"):
            int(value)
        elif t == "float64":
            float(value)
        elif t == "bool":
            if value not in ("1", "t", "T", "TRUE", "true", "True",
                             "0", "f", "F", "FALSE", "false", "False"):
                raise ValueError
    except ValueError:
        fail(where, f"{key}: {value!r} is not a valid {t}")
    if p["enum"] and value not in p["enum"]:
        fail(where, f"{key}: {value!r} is not one of {p['enum']}")


def check_trigger(where, trig):
    params = scalers.get(trig["type"])
    if params is None:
        fail(where, f"trigger type {trig['type']!r}: this check knows only {sorted(scalers)}")
        return
    md = trig.get("metadata", {})
    for key, value in md.items():
        base = key[:-len("FromEnv")] if key.endswith("FromEnv") else key
        p = params.get(base)
        if p is None or (base != key and not p["fromEnv"]):
            fail(where, f"{trig['type']} trigger: unknown metadata key {key!r}")
        elif base == key:
            check_value(where, key, value, p)
    for key, p in params.items():
        if p["required"] and key not in md and key + "FromEnv" not in md:
            fail(where, f"{trig['type']} trigger: required metadata {key!r} missing")


def k8s_errors(doc, version):
    """Every error of doc against the strict schema of its kind in
    kubernetes-validate's bundle (its validate() stops at the first)."""
    try:
        kv.validate(doc, version, strict=True)
        return []
    except kv.ValidationError:
        pass
    v = [x for x in kv.all_versions() if kv.major_minor(x) <= kv.major_minor(version)][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    d = f"kubernetes-json-schema/v{v}-local-strict"
    schema = kv.schema_contents(f"{d}/{doc['kind'].lower()}-{api}.json", version)
    defs = kv.schema_contents(f"{d}/_definitions.json", version)
    registry = referencing.Resource.from_contents(defs) @ (
        referencing.Resource.from_contents(schema) @ referencing.Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))


# --- every manifest against its schema -----------------------------------------
for where, doc in docs:
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if api.startswith("keda.sh/"):
        schema = keda_schemas.get(api) if kind == "ScaledObject" else None
        if schema is None:
            fail(where, f"no KEDA schema for {api} {kind}")
            continue
        errs = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
        for e in errs:
            path = ".".join(str(p) for p in e.absolute_path) or "(top)"
            fail(where, f"KEDA schema: {path}: {e.message}")
        # The CRD's CEL rule.
        spec = doc.get("spec", {})
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            fail(where, "minReplicaCount must be less than or equal to maxReplicaCount")
        # metadata is only "type: object" in the CRD: check it as ObjectMeta.
        probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata")}
        for v in k8s_versions:
            try:
                kv.validate(probe, v, strict=True)
            except kv.ValidationError as e:
                fail(where, f"metadata (Kubernetes {v}): {e.message}")
        for i, trig in enumerate(spec.get("triggers") or []):
            if isinstance(trig, dict) and "type" in trig:
                check_trigger(f"{where} triggers[{i}]", trig)
        if not errs:
            passed.append(f"{where} {kind} (KEDA {os.path.basename(keda_dir)[5:]})")
        continue
    ok = True
    for v in k8s_versions:
        try:
            errs = k8s_errors(doc, v)
        except kv.SchemaNotFoundError:
            fail(where, f"no Kubernetes {v} schema for {api} {kind}")
            ok = False
            continue
        for e in errs:
            path = ".".join(str(p) for p in e.absolute_path) or "(top)"
            fail(where, f"Kubernetes {v}: {path}: {e.message}")
            ok = False
    if ok:
        passed.append(f"{where} {kind} (Kubernetes {', '.join(k8s_versions)}, strict)")

# --- the manifests against the worker --------------------------------------------
deps = find("Deployment", "kinfer-worker")
cms = find("ConfigMap")
if len(deps) != 1:
    fail("ops/k8s", "want exactly one Deployment kinfer-worker")
else:
    where, dep = deps[0]
    pod = dep["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    env = {}
    for ref in ctr.get("envFrom", []):
        name = ref.get("configMapRef", {}).get("name")
        match = find("ConfigMap", name)
        if not match:
            fail(where, f"envFrom names ConfigMap {name!r}, which ops/k8s does not define")
        for _w, cm in match:
            env.update(cm.get("data", {}))
    for e in ctr.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    for key in env:
        if key.startswith("KINFER_") and key not in worker_env:
            fail(where, f"environment {key}: kinfer-worker has no such option (consumer/main.c)")

    def setting(key):
        return env.get(key, worker_env.get(key))

    # Shutdown: drain budget + 1.5 s destroy + slack < grace period.
    drain = num(setting("KINFER_DRAIN_TIMEOUT"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not grace >= drain + 2:
        fail(where, f"terminationGracePeriodSeconds {grace} must exceed the worker's "
                    f"shutdown budget, KINFER_DRAIN_TIMEOUT {drain} + 1.5 s (+ slack): "
                    f"at least {drain + 2:g}")
    # The HTTP port and the probes.
    http = setting("KINFER_HTTP") or "0.0.0.0:8080"
    ports = {p.get("name"): p["containerPort"] for p in ctr.get("ports", [])}
    port = http.rsplit(":", 1)[-1]
    if http == "off" or not port.isdigit() or int(port) not in ports.values():
        fail(where, f"KINFER_HTTP {http!r} does not serve a containerPort {sorted(ports.values())}")
    for probe, path in (("livenessProbe", "/v2/health/live"),
                        ("readinessProbe", "/v2/health/ready")):
        got = ctr.get(probe, {}).get("httpGet", {})
        if got.get("path") != path:
            fail(where, f"{probe} must GET {path}, not {got.get('path')!r}")
        pport = got.get("port")
        if ports.get(pport, pport) not in ports.values():
            fail(where, f"{probe} port {pport!r} is not a container port")
    # Non-root.
    sc = {**pod.get("securityContext", {}), **ctr.get("securityContext", {})}
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", 0) == 0:
        fail(where, "must run as non-root (runAsNonRoot: true and a non-zero runAsUser)")
    # Threads = CPU request (the default is the node's CPU count).
    res = ctr.get("resources", {})
    if "memory" not in res.get("limits", {}) or "cpu" not in res.get("requests", {}):
        fail(where, "needs requests.cpu and limits.memory")
    else:
        cpu = str(res["requests"]["cpu"])
        cores = num(cpu[:-1]) / 1000 if cpu.endswith("m") else num(cpu)
        threads = setting("KINFER_THREADS")
        if math.isnan(cores) or num(threads) != max(1, math.ceil(cores)):
            fail(where, f"KINFER_THREADS {threads} should match requests.cpu {cpu} "
                        f"(the default is the node's CPU count)")

    # The ScaledObjects.
    sos = find("ScaledObject")
    if not sos:
        fail("ops/k8s", "no ScaledObject")
    for swhere, so in sos:
        spec = so.get("spec", {})
        ann = so["metadata"].get("annotations", {})
        ref = spec.get("scaleTargetRef", {})
        if ref.get("name") != dep["metadata"]["name"] or ref.get("kind", "Deployment") != "Deployment":
            fail(swhere, f"scaleTargetRef {ref} is not Deployment kinfer-worker")
        rate = num(ann.get("kinfer.dev/target-rate-per-replica"))
        if not rate > 0:
            fail(swhere, "annotation kinfer.dev/target-rate-per-replica (req/s) missing")
        for i, trig in enumerate(spec.get("triggers") or []):
            tw = f"{swhere} triggers[{i}]"
            md = trig.get("metadata", {})
            if trig.get("type") == "kafka":
                for key, opt in (("consumerGroup", "KINFER_GROUP"),
                                 ("topic", "KINFER_INPUT_TOPIC"),
                                 ("bootstrapServers", "KINFER_BROKERS")):
                    if md.get(key) != setting(opt):
                        fail(tw, f"{key} {md.get(key)!r} differs from the worker's {opt} {setting(opt)!r}")
                reset = consumer_props.get("auto.offset.reset")
                if md.get("offsetResetPolicy", "latest") != reset:
                    fail(tw, f"offsetResetPolicy {md.get('offsetResetPolicy', 'latest (default)')!r} "
                             f"differs from the worker's auto.offset.reset {reset!r} (lib/worker.c)")
                ci = num(ann.get("kinfer.dev/commit-interval-seconds"))
                if ci != commit_ms / 1000:
                    fail(swhere, f"annotation kinfer.dev/commit-interval-seconds {ci} differs from "
                                 f"the worker's auto.commit.interval.ms {commit_ms}")
                want = rate * commit_ms / 1000
                if num(md.get("lagThreshold")) != want:
                    fail(tw, f"lagThreshold {md.get('lagThreshold')} != rate {rate:g}/s x commit "
                             f"interval {commit_ms / 1000:g} s = {want:g}")
            elif trig.get("type") == "prometheus":
                if trig.get("metricType") != "AverageValue":
                    fail(tw, "metricType must be AverageValue (replicas = query / threshold)")
                if num(md.get("threshold")) != rate:
                    fail(tw, f"threshold {md.get('threshold')} != target rate per replica {rate:g}")
                drain_within = ann.get("kinfer.dev/drain-within-seconds")
                if drain_within is None or f"/ {drain_within})" not in md.get("query", ""):
                    fail(tw, f"query must divide the backlog by kinfer.dev/drain-within-seconds ({drain_within})")
                if "kinfer_backlog_seconds_max" not in md.get("query", ""):
                    fail(tw, "query does not use kinfer_backlog_seconds_max")

# --- PromQL: dashboard panels and KEDA queries into one rules file ---------------
rules = []
metric_uses = {}


def add_query(where, expr, name):
    rules.append({"record": name, "expr": expr})
    for m in re.findall(r"\bkinfer_[a-z0-9_]+", expr):
        metric_uses.setdefault(m, where)


dash_path = os.path.join(tree, "ops/grafana/kinfer.json")
try:
    dash = json.loads(read(dash_path))
except (OSError, ValueError) as e:
    fail("ops/grafana/kinfer.json", f"not JSON: {e}")
    dash = {"panels": [], "templating": {"list": []}}
values = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
for var in dash.get("templating", {}).get("list", []):
    if var.get("type") == "datasource":
        continue
    values[var["name"]] = var.get("allValue", ".*") if var.get("includeAll") else \
        var.get("current", {}).get("value", "x")


def substitute(where, expr):
    def one(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            fail(where, f"undefined variable ${name}")
            return "x"
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


ids = set()
n_targets = 0
for var in dash.get("templating", {}).get("list", []):
    q = var.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q or "")
    if var.get("type") == "query":
        if not m:
            fail("ops/grafana/kinfer.json", f"variable {var['name']}: want label_values(selector, label)")
        else:
            add_query(f"variable {var['name']}", substitute(f"variable {var['name']}", m.group(1)),
                      f"kinfer_check:variable_{var['name']}")
for p in dash.get("panels", []):
    where = f"ops/grafana/kinfer.json panel {p.get('id')} {p.get('title')!r}"
    if p.get("id") in ids:
        fail(where, "duplicate panel id")
    ids.add(p.get("id"))
    if p.get("type") == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${datasource}":
        fail(where, "datasource must be ${datasource}")
    if not p.get("targets"):
        fail(where, "no query")
    for t in p.get("targets", []):
        n_targets += 1
        add_query(f"{where} {t.get('refId')}", substitute(where, t.get("expr", "")),
                  f"kinfer_check:panel_{p.get('id')}_{t.get('refId')}")
for swhere, so in find("ScaledObject"):
    for i, trig in enumerate(so.get("spec", {}).get("triggers") or []):
        if trig.get("type") == "prometheus":
            add_query(f"{swhere} triggers[{i}]", trig.get("metadata", {}).get("query", ""),
                      f"kinfer_check:{so['metadata']['name'].replace('-', '_')}_trigger_{i}")
with open(rules_out, "w", encoding="utf-8") as f:
    yaml.safe_dump({"groups": [{"name": "kinfer-ops-queries", "rules": rules}]}, f, sort_keys=False)
passed.append(f"ops/grafana/kinfer.json: {len(ids)} panels, {n_targets} queries to promtool")

# --- metric names: documented ones only ---------------------------------------------
alerts = os.path.join(tree, "ops/prometheus/alerts.yml")
for m in re.findall(r"\bkinfer_[a-z0-9_]+", read(alerts)):
    metric_uses.setdefault(m, "ops/prometheus/alerts.yml")
metrics_md = os.path.join(tree, "docs/metrics.md")
if os.path.exists(metrics_md):
    documented = set(re.findall(r"\bkinfer_[a-z0-9_]+", read(metrics_md)))
    for m, where in sorted(metric_uses.items()):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in documented and base not in documented:
            fail(where, f"metric {m} is not in docs/metrics.md")
    passed.append(f"{len(metric_uses)} kinfer_* metric names are in docs/metrics.md")
else:
    passed.append("SKIPPED metric names: no docs/metrics.md in this tree")

for p in passed:
    print(f"check-ops: ok   {p}")
for f in failures:
    print(f"check-ops: FAIL {f}")
sys.exit(1 if failures else 0)
PY
}

# check_tree TREE: every check; prints one line per check, returns 1 if any
# failed.
check_tree() {
    local tree="$1" rc=0 gen
    gen="$(mktemp -d "$WORK/gen.XXXXXX")"
    check_manifests "$tree" "$gen/queries.rules.yml" || rc=1
    if [[ -s "$gen/queries.rules.yml" ]]; then
        if out="$(promtool check rules "$gen/queries.rules.yml" 2>&1)"; then
            log "ok   promtool check rules: dashboard and KEDA queries"
        else
            printf '%s\n' "$out" | sed 's/^/    /'
            log "FAIL promtool check rules: dashboard and KEDA queries (ops/grafana/kinfer.json panel or ScaledObject query; record names say which)"
            rc=1
        fi
    fi
    rm -rf "$gen"
    if out="$(cd "$tree/ops/prometheus" && promtool check rules alerts.yml 2>&1)"; then
        log "ok   promtool check rules ops/prometheus/alerts.yml: $(grep -o '[0-9]* rules found' <<<"$out")"
    else
        printf '%s\n' "$out" | sed 's/^/    /'
        log "FAIL promtool check rules ops/prometheus/alerts.yml"
        rc=1
    fi
    # The compose stack's Prometheus (ops/prometheus/prometheus.yml) loads
    # alerts.yml; its job name is the one the rules select.
    if [[ -f "$tree/ops/prometheus/prometheus.yml" ]]; then
        if out="$(cd "$tree/ops/prometheus" && promtool check config prometheus.yml 2>&1)" &&
            grep -q 'job_name: *kinfer-worker$' "$tree/ops/prometheus/prometheus.yml"; then
            log "ok   promtool check config ops/prometheus/prometheus.yml (job kinfer-worker)"
        else
            printf '%s\n' "$out" | sed 's/^/    /'
            log "FAIL ops/prometheus/prometheus.yml: promtool check config, or no job_name kinfer-worker (the job alerts.yml selects)"
            rc=1
        fi
    fi
    if out="$(cd "$tree/ops/prometheus" && promtool test rules alerts_test.yml 2>&1)"; then
        log "ok   promtool test rules ops/prometheus/alerts_test.yml"
    else
        printf '%s\n' "$out" | sed 's/^/    /'
        log "FAIL promtool test rules ops/prometheus/alerts_test.yml"
        rc=1
    fi
    return "$rc"
}

# --- self-test: one deliberate mistake at a time must fail -------------------------

# Each line: FILE<TAB>TEXT<TAB>REPLACEMENT<TAB>what the output must name.
MUTATIONS="$(cat <<'EOF'
ops/k8s/deployment.yaml	terminationGracePeriodSeconds: 30	terminationGracePeriodSecond: 30	terminationGracePeriodSecond' was unexpected
ops/k8s/deployment.yaml	containerPort: 8080	containerPort: "8080"	is not of type 'integer'
ops/k8s/deployment.yaml	path: /v2/health/ready	path: /v2/health/live	readinessProbe must GET /v2/health/ready
ops/k8s/configmap.yaml	KINFER_DRAIN_TIMEOUT: "20"	KINFER_DRAIN_TIMEOUT: "40"	terminationGracePeriodSeconds 30 must exceed
ops/k8s/configmap.yaml	KINFER_THREADS: "2"	KINFER_THREAD: "2"	KINFER_THREAD: kinfer-worker has no such option
ops/k8s/pdb.yaml	maxUnavailable: 1	maxUnavailabl: 1	maxUnavailabl' was unexpected
ops/k8s/scaledobject-kafka.yaml	lagThreshold: "10000"	lagTreshold: "10000"	unknown metadata key 'lagTreshold'
ops/k8s/scaledobject-kafka.yaml	lagThreshold: "10000"	lagThreshold: "1000"	lagThreshold 1000 != rate 2000/s x commit interval 5 s
ops/k8s/scaledobject-kafka.yaml	offsetResetPolicy: earliest	offsetResetPolicy: latest	differs from the worker's auto.offset.reset
ops/k8s/scaledobject-kafka.yaml	offsetResetPolicy: earliest	offsetResetPolicy: oldest	is not one of ['latest', 'earliest']
ops/k8s/scaledobject-kafka.yaml	pollingInterval: 15	pollingInterval: fifteen	spec.pollingInterval: 'fifteen' is not of type 'integer'
ops/k8s/scaledobject-kafka.yaml	cooldownPeriod: 300	coolDownPeriod: 300	'coolDownPeriod' was unexpected
ops/k8s/scaledobject-prometheus.yaml	minReplicaCount: 1	minReplicaCount: 9	minReplicaCount must be less than or equal
ops/k8s/scaledobject-prometheus.yaml	clamp_max(	clamp_maxx(	kinfer_check:kinfer_worker_trigger_0
ops/k8s/scaledobject-prometheus.yaml	threshold: "2000"	threshold: "two thousand"	threshold: 'two thousand' is not a valid float64
ops/prometheus/alerts.yml	> 0.05	> 0.05 +	FAIL promtool check rules ops/prometheus/alerts.yml
ops/prometheus/alerts.yml	kinfer_backlog_seconds_max) > 60	kinfer_backlog_seconds_max) > 600	alertname: KinferBacklogHigh
ops/prometheus/alerts.yml	increase(kinfer_requests_consumed_total[10m])) == 0	increase(kinfer_requests_consumed_total[10m])) >= 0	alertname: KinferNoProgress
ops/grafana/kinfer.json	histogram_quantile(0.99, sum by (le, model)	histogram_quantile(0.99 sum by (le, model)	FAIL promtool check rules: dashboard
ops/grafana/kinfer.json	[$__rate_interval]	[$rate_window]	undefined variable $rate_window
EOF
)"

self_test() {
    local scratch="$WORK/self-test" n=0 bad=0 file from to want out rc
    local -a muts=()
    mapfile -t muts <<<"$MUTATIONS"
    if [[ -f "$TREE/docs/metrics.md" ]]; then
        muts+=("ops/grafana/kinfer.json	kinfer_dead_letters_total	kinfer_dead_letter_total	metric kinfer_dead_letter_total is not in docs/metrics.md")
    fi
    for line in "${muts[@]}"; do
        IFS=$'\t' read -r file from to want <<<"$line"
        n=$((n + 1))
        rm -rf "$scratch/t"
        mkdir -p "$scratch/t/ops" "$scratch/t/consumer" "$scratch/t/lib" \
            "$scratch/t/docs"
        cp -r "$TREE/ops/k8s" "$TREE/ops/prometheus" "$TREE/ops/grafana" \
            "$scratch/t/ops/"
        cp "$TREE/consumer/main.c" "$scratch/t/consumer/"
        cp "$TREE/lib/worker.c" "$scratch/t/lib/"
        [[ -f "$TREE/docs/metrics.md" ]] && cp "$TREE/docs/metrics.md" "$scratch/t/docs/"
        # The text must be there exactly once, or the mutation has rotted.
        if ! "$VENV/bin/python" - "$scratch/t/$file" "$from" "$to" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path, encoding="utf-8").read()
if text.count(old) < 1:
    sys.exit(f"{old!r} not found")
open(path, "w", encoding="utf-8").write(text.replace(old, new, 1))
PY
        then
            log "FAIL self-test $n: $file no longer contains '$from': update MUTATIONS"
            bad=$((bad + 1))
            continue
        fi
        rc=0
        out="$(check_tree "$scratch/t" 2>&1)" || rc=$?
        if ((rc == 0)); then
            log "FAIL self-test $n: the checks passed with $file: '$from' -> '$to'"
            bad=$((bad + 1))
        elif ! grep -qF -- "$want" <<<"$out"; then
            printf '%s\n' "$out" | sed 's/^/    /'
            log "FAIL self-test $n: $file: '$from' -> '$to' failed, but without \"$want\""
            bad=$((bad + 1))
        fi
    done
    if ((bad > 0)); then
        return 1
    fi
    log "ok   self-test: all $n deliberate mistakes caught, each by the expected check"
}

# --- main ------------------------------------------------------------------------

install_tools
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kinfer-ops.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
T1="$(now_ms)"
log "tools ready in $(( (T1 - T0) / 1000 )).$(( (T1 - T0) % 1000 / 100 )) s (cache $CACHE)"
rc=0
check_tree "$TREE" || rc=1
if ((SELF_TEST)); then
    self_test || rc=1
fi
T2="$(now_ms)"
if ((rc == 0)); then
    log "all checks passed in $(( (T2 - T0) / 1000 )).$(( (T2 - T0) % 1000 / 100 )) s"
else
    log "FAILED (see FAIL lines above)"
fi
exit "$rc"
