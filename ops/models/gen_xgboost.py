#!/usr/bin/python3
"""Train small XGBoost boosters on synthetic data and write the answers
kinfer's "xgboost" plugin must give for a fixed set of requests.

usage: gen_xgboost.py OUTDIR
writes OUTDIR/models/ranker/         binary:logistic on 16 candidate
                                     features, probability, JSON booster,
                                     dynamic batching (the ranking stage
                                     after "recsys" of gen_dense.py)
       OUTDIR/models/ranker_margin/  the same booster as UBJSON, margin,
                                     no batching
       OUTDIR/models/grade/          multi:softprob, 3 classes, 8 features
       OUTDIR/expected/<model>.json  (format: gen_dense.py's docstring)
needs: python3, numpy, python3-xgboost

The reference answers do not come from XGBoost's predictor: they walk the
trees of the booster's JSON dump with NumPy (float32 split comparisons, as
XGBoost makes them) and add the base margin.  The script checks that walk
against xgboost's own predict() on the same rows and stops if they differ,
so a wrong reading of the dump cannot produce wrong expectations.

Only this script's fixed seeds and XGBoost's deterministic "exact" tree
method are used, so two runs write the same models.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import xgboost as xgb

SEED = 20261201
TOL = 1e-5  # walk vs xgboost.predict, absolute, on probabilities/margins


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=1) + "\n")


def flat(arr):
    return [v.item() for v in np.asarray(arr).reshape(-1)]


def tensor_json(name, datatype, arr):
    arr = np.asarray(arr)
    return {"name": name, "datatype": datatype, "shape": list(arr.shape),
            "data": flat(arr)}


def request(model, rid, inputs):
    return {"id": rid, "model_name": model, "inputs": inputs}


# ------------------------------------------------------------ the tree walk

def walk(node, row):
    """Leaf value of one tree (a node of get_dump(dump_format="json")) for
    one float32 row.  XGBoost goes "yes" when value < split_condition, both
    as float32; a missing value (NaN) follows "missing"."""
    while "leaf" not in node:
        f = int(node["split"][1:])  # "f12" -> 12
        v = row[f]
        if np.isnan(v):
            nxt = node["missing"]
        elif np.float32(v) < np.float32(node["split_condition"]):
            nxt = node["yes"]
        else:
            nxt = node["no"]
        node = next(c for c in node["children"] if c["nodeid"] == nxt)
    return float(node["leaf"])


def margins(booster, n_groups, x):
    """[rows, n_groups] margins: base margin + the leaves of every tree of
    each group (trees are interleaved by group, as XGBoost stores them)."""
    cfg = json.loads(booster.save_config())
    learner = cfg["learner"]
    base = float(learner["learner_model_param"]["base_score"])
    obj = learner["objective"]["name"]
    # base_score is kept as a probability for logistic objectives and
    # turned into a margin for prediction.
    base_margin = math.log(base / (1 - base)) if obj == "binary:logistic" \
        else base
    trees = [json.loads(t) for t in booster.get_dump(dump_format="json")]
    out = np.full((x.shape[0], n_groups), base_margin, dtype=np.float64)
    for t, tree in enumerate(trees):
        g = t % n_groups
        for r in range(x.shape[0]):
            out[r, g] += walk(tree, x[r])
    return out, obj


def transform(obj, m):
    if obj == "binary:logistic":
        return 1.0 / (1.0 + np.exp(-m))
    if obj == "multi:softprob":
        e = np.exp(m - m.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise SystemExit("gen_xgboost.py: no transform for " + obj)


def reference(booster, n_groups, x, margin):
    """float64 answers for rows x, checked against xgboost.predict."""
    m, obj = margins(booster, n_groups, x)
    want = m if margin else transform(obj, m)
    got = booster.predict(xgb.DMatrix(x), output_margin=margin)
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    worst = float(np.max(np.abs(got - want)))
    if worst > TOL:
        raise SystemExit("gen_xgboost.py: tree walk and xgboost.predict "
                         "differ by %g" % worst)
    return want if n_groups > 1 else want[:, 0]


# ------------------------------------------------------------ the boosters

def train_ranker(rng):
    """Click-through on 16 candidate features (a retrieval score, item
    popularity, user-item affinities, ...): a nonlinear truth with noise."""
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    logit = (1.5 * x[:, 0] + np.sin(2 * x[:, 1]) - 0.8 * x[:, 2] * x[:, 3]
             + 0.5 * (x[:, 4] > 0.3) - 0.7 * np.abs(x[:, 5]))
    y = (logit + 0.5 * rng.standard_normal(2000) > 0).astype(np.float32)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3,
              "tree_method": "exact", "base_score": 0.5, "seed": 1,
              "nthread": 1}
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=40)


def train_grade(rng):
    x = rng.standard_normal((1500, 8)).astype(np.float32)
    s = x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3]
    y = np.digitize(s + 0.3 * rng.standard_normal(1500), [-0.7, 0.7])
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3,
              "eta": 0.3, "tree_method": "exact", "base_score": 0.5,
              "seed": 1, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(x, label=y.astype(np.float32)),
                     num_boost_round=20)


# ------------------------------------------------------------ the cases

def cases(model, booster, n_features, n_groups, margin, rng, prefix):
    out = []
    for i, rows in enumerate([1, 3, 10, 25]):
        x = rng.standard_normal((rows, n_features)).astype(np.float32)
        want = reference(booster, n_groups, x, margin)
        out.append({"name": "%d rows" % rows,
                    "request": request(model, "%s-%d" % (prefix, i),
                                       [tensor_json("features", "FP32", x)]),
                    "outputs": [tensor_json("scores", "FP32",
                                            want.astype(np.float32))]})
    # One row as a vector: the answer is a vector too.
    x = rng.standard_normal(n_features).astype(np.float32)
    want = reference(booster, n_groups, x[None, :], margin)
    out.append({"name": "one row, 1-D",
                "request": request(model, prefix + "-vec",
                                   [tensor_json("features", "FP32", x)]),
                "outputs": [tensor_json("scores", "FP32",
                                        want.reshape(-1).astype(np.float32))]})
    # FP64 features are narrowed to FP32 before the trees see them.
    x = rng.standard_normal((2, n_features))
    want = reference(booster, n_groups, x.astype(np.float32), margin)
    out.append({"name": "FP64 features",
                "request": request(model, prefix + "-f64",
                                   [tensor_json("features", "FP64", x)]),
                "outputs": [tensor_json("scores", "FP32",
                                        want.astype(np.float32))]})
    # Requests the model must refuse, each alone.
    bad = np.zeros((2, n_features + 1), dtype=np.float32)
    out.append({"name": "one feature too many",
                "request": request(model, prefix + "-wide",
                                   [tensor_json("features", "FP32", bad)]),
                "error": "expected FP32 or FP64 of shape [n,%d]" % n_features})
    out.append({"name": "integer features",
                "request": request(model, prefix + "-int",
                                   [tensor_json("features", "INT64",
                                                np.ones((1, n_features),
                                                        dtype=np.int64))]),
                "error": "got INT64"})
    out.append({"name": "input under another name",
                "request": request(model, prefix + "-name",
                                   [tensor_json("x", "FP32",
                                                np.zeros((1, n_features),
                                                         dtype=np.float32))]),
                "error": "model needs input \"features\""})
    return out


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: gen_xgboost.py OUTDIR")
    outdir = sys.argv[1]
    rng = np.random.default_rng(SEED)
    models = os.path.join(outdir, "models")
    for name in ("ranker", "ranker_margin", "grade"):
        shutil.rmtree(os.path.join(models, name), ignore_errors=True)

    ranker = train_ranker(rng)
    d = os.path.join(models, "ranker")
    os.makedirs(d)
    ranker.save_model(os.path.join(d, "model.json"))
    write_json(os.path.join(d, "config.json"),
               {"backend": "xgboost", "model": "model.json",
                "predict": "probability", "max_batch_size": 16,
                "max_queue_delay_us": 1000})
    write_json(os.path.join(outdir, "expected", "ranker.json"),
               cases("ranker", ranker, 16, 1, False, rng, "x-rank"))

    d = os.path.join(models, "ranker_margin")
    os.makedirs(d)
    ranker.save_model(os.path.join(d, "model.ubj"))
    write_json(os.path.join(d, "config.json"),
               {"backend": "xgboost", "model": "model.ubj",
                "predict": "margin", "version": 2})
    write_json(os.path.join(outdir, "expected", "ranker_margin.json"),
               cases("ranker_margin", ranker, 16, 1, True, rng, "x-margin"))

    grade = train_grade(rng)
    d = os.path.join(models, "grade")
    os.makedirs(d)
    grade.save_model(os.path.join(d, "model.json"))
    write_json(os.path.join(d, "config.json"),
               {"backend": "xgboost", "model": "model.json",
                "max_batch_size": 8, "max_queue_delay_us": 500})
    write_json(os.path.join(outdir, "expected", "grade.json"),
               cases("grade", grade, 8, 3, False, rng, "x-grade"))


if __name__ == "__main__":
    main()
