#!/usr/bin/python3
"""Build the small dense models used by the tests and the demo, and the
answers NumPy gives for a fixed set of requests, so kinfer's "mlp" and
"topk" backends can be checked against an independent implementation.

usage: gen_dense.py OUTDIR
writes OUTDIR/models/mlp/          16 -> 32 relu -> 16 gelu -> 4, softmax
       OUTDIR/models/mlp_acts/     8 -> 12 tanh -> 10 sigmoid (no bias)
                                   -> 6 gelu_tanh -> 5 none
       OUTDIR/models/recsys/       topk: 1000 items, 200 users, dim 32
       OUTDIR/models/recsys_ties/  topk: small integer embeddings with
                                   exact ties
       OUTDIR/expected/<model>.json
       OUTDIR/expected/safetensors/{valid,invalid}/<case>/...
needs: python3, numpy

OUTDIR/models is a model repository (one directory per model, each with its
config.json).  expected/<model>.json is a JSON array of cases:
    {"name": "...", "request": <OIP request>, "outputs": [<OIP outputs>]}
    {"name": "...", "request": <OIP request>, "error": "<substring>"}
A success case lists every output the result must carry; FP32 values
match within |got - want| <= 1e-5 + 1e-4 * |want|, INT64 values exactly.
An error case gives a substring of the per-request error message.  The
same file can drive an end-to-end test through Kafka.

expected/safetensors holds the safetensors parser cases:
    invalid/<case>/input  a broken file; invalid/<case>/error  a substring
                          of the message the reader must give
    valid/<case>/input    a good file;   valid/<case>/expect.json  what it
                          holds: {"tensors": {name: {"dtype", "shape",
                          "values"?}}, "metadata": {..}}

Everything comes from fixed seeds, and the expected values are computed in
float64 from the float32 weights and inputs, so two runs write the same
bytes.
"""

import json
import math
import os
import shutil
import struct
import sys

import numpy as np

SEED = 20261127

# ---------------------------------------------------------------- safetensors

ST_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float64"): "F64",
    np.dtype("int32"): "I32",
    np.dtype("int64"): "I64",
    np.dtype("int16"): "I16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def st_bytes(tensors, metadata=None, align=8):
    """Serialise {name: ndarray} the way the reference writer does: data
    packed in name order, the header padded with spaces so the data area
    starts on an `align` boundary."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.array(tensors[name], order="C")  # keeps 0-d arrays 0-d
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": ST_DTYPES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    return raw_st(json.dumps(header, separators=(",", ":")).encode(),
                  b"".join(blobs), align)


def raw_st(header, data, align=8):
    """Header bytes + data with the length prefix; pads the header with
    spaces to `align` (None: no padding)."""
    if align:
        header += b" " * (-(8 + len(header)) % align)
    return struct.pack("<Q", len(header)) + header + data


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode) as f:
        f.write(content)


def write_json(path, obj):
    write(path, json.dumps(obj, indent=1) + "\n")


# ---------------------------------------------------------------- helpers

def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def flat(arr):
    """JSON numbers for an array: float32 values become the float64 with the
    same value, so a decoder that parses to double and narrows to float gets
    the exact float32 back."""
    return [v.item() for v in np.asarray(arr).reshape(-1)]


def tensor_json(name, datatype, arr):
    arr = np.asarray(arr)
    return {"name": name, "datatype": datatype, "shape": list(arr.shape),
            "data": flat(arr)}


def request(model, rid, inputs, parameters=None):
    req = {"id": rid, "model_name": model}
    if parameters:
        req["parameters"] = parameters
    req["inputs"] = inputs
    return req


# ---------------------------------------------------------------- mlp

ERF = np.vectorize(math.erf, otypes=[np.float64])  # numpy has no erf

ACTS = {
    "none": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + ERF(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
}


def mlp_forward(layers, softmax, x):
    """float64 reference: y = act(x W^T + b) layer by layer."""
    h = np.asarray(x, dtype=np.float64)
    for w, b, act in layers:
        h = h @ w.astype(np.float64).T
        if b is not None:
            h = h + b.astype(np.float64)
        h = ACTS[act](h)
    if softmax:
        h = np.exp(h - h.max(axis=-1, keepdims=True))
        h = h / h.sum(axis=-1, keepdims=True)
    return h


def make_mlp(out, name, sizes, acts, biases, softmax, seed, inp, outp):
    rng = np.random.default_rng(seed)
    tensors, layers, cfg_layers = {}, [], []
    for i, act in enumerate(acts):
        n_in, n_out = sizes[i], sizes[i + 1]
        w = f32(rng, n_out, n_in, scale=1.0 / math.sqrt(n_in))
        tensors["fc%d.weight" % (i + 1)] = w
        layer = {"weight": "fc%d.weight" % (i + 1)}
        b = None
        if biases[i]:
            b = f32(rng, n_out, scale=0.1)
            tensors["fc%d.bias" % (i + 1)] = b
            layer["bias"] = "fc%d.bias" % (i + 1)
        layer["activation"] = act
        cfg_layers.append(layer)
        layers.append((w, b, act))
    mdir = os.path.join(out, "models", name)
    write(os.path.join(mdir, "model.safetensors"),
          st_bytes(tensors, {"format": "pt", "generator": "gen_dense.py"}))
    write_json(os.path.join(mdir, "config.json"), {
        "backend": "mlp",
        "version": "1",
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
        "weights": "model.safetensors",
        "input": inp,
        "output": outp,
        "layers": cfg_layers,
        "softmax": softmax,
    })
    return rng, layers


def mlp_cases(out, name, sizes, acts, biases, softmax, seed, inp="x",
              outp="y"):
    rng, layers = make_mlp(out, name, sizes, acts, biases, softmax, seed,
                           inp, outp)
    n_in = sizes[0]
    cases = []

    def ok(label, x, datatype="FP32", rid=None):
        rid = rid or "%s-%d" % (name, len(cases))
        y = mlp_forward(layers, softmax, x)
        cases.append({
            "name": label,
            "request": request(name, rid, [tensor_json(inp, datatype, x)]),
            "outputs": [tensor_json(outp, "FP32", y)],
        })

    def bad(label, inputs, error):
        cases.append({
            "name": label,
            "request": request(name, "%s-%d" % (name, len(cases)), inputs),
            "error": error,
        })

    # The first eight are the batch-invariance set of the C tests.
    ok("one row, 1-D", f32(rng, n_in))
    ok("three rows", f32(rng, 3, n_in))
    ok("one row, 2-D", f32(rng, 1, n_in))
    ok("five rows", f32(rng, 5, n_in, scale=2.0))
    ok("two rows", f32(rng, 2, n_in))
    ok("FP64 input", f32(rng, 2, n_in).astype(np.float64), "FP64")
    ok("seven rows", f32(rng, 7, n_in))
    ok("large values", f32(rng, 4, n_in, scale=8.0))
    ok("no rows", np.zeros((0, n_in), dtype=np.float32))
    bad("too few features",
        [tensor_json(inp, "FP32", f32(rng, 2, n_in - 1))],
        'input "%s": expected FP32 or FP64 of shape [n,%d] or [%d], got '
        'FP32 [2,%d]' % (inp, n_in, n_in, n_in - 1))
    bad("rank 3",
        [tensor_json(inp, "FP32", f32(rng, 1, 2, n_in))],
        'got FP32 [1,2,%d]' % n_in)
    bad("integer input",
        [tensor_json(inp, "INT64", np.arange(n_in, dtype=np.int64))],
        'got INT64 [%d]' % n_in)
    bad("wrong input name",
        [tensor_json(inp + "_other", "FP32", f32(rng, n_in))],
        'model needs input "%s"' % inp)
    return cases


# ---------------------------------------------------------------- topk

def topk_ref(items, queries, k, exclude=()):
    """ids and float64 scores of the k best items per query, best first,
    ties by the lower id; excluded ids never appear."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    keep = np.ones(items.shape[0], dtype=bool)
    keep[list(exclude)] = False
    cand = np.nonzero(keep)[0]
    k = min(k, len(cand))
    ids, vals = [], []
    for row in scores:
        s = row[cand]
        order = np.lexsort((cand, -s))[:k]
        ids.append(cand[order])
        vals.append(s[order])
    return (np.array(ids, dtype=np.int64).reshape(len(scores), k),
            np.array(vals, dtype=np.float64).reshape(len(scores), k))


def well_separated(items, queries, k, exclude=(), gap=1e-3):
    """True when float32 rounding cannot reorder the answer: the scores of
    the first k+1 candidates differ pairwise by more than gap."""
    _, vals = topk_ref(items, queries, k + 1, exclude)
    return all(np.all(np.abs(np.diff(v)) > gap) for v in vals)


def make_topk(out, name, items, users, k=None):
    mdir = os.path.join(out, "models", name)
    tensors = {"items": items}
    cfg = {
        "backend": "topk",
        "version": "1",
        "max_batch_size": 8,
        "max_queue_delay_us": 1000,
        "weights": "embeddings.safetensors",
        "item_embeddings": "items",
        "input": "input",
        "exclude_input": "exclude",
    }
    if users is not None:
        tensors["users"] = users
        cfg["user_embeddings"] = "users"
    if k is not None:
        cfg["k"] = k
    write(os.path.join(mdir, "embeddings.safetensors"), st_bytes(tensors))
    write_json(os.path.join(mdir, "config.json"), cfg)


def topk_case(name, rid, items, label, query, k, k_param=None, exclude=None,
              datatype="FP32"):
    inputs = [tensor_json("input", datatype, query)]
    if exclude is not None:
        inputs.append(tensor_json("exclude", "INT64",
                                  np.array(exclude, dtype=np.int64)))
    params = {"k": k_param} if k_param is not None else None
    q = np.asarray(query, dtype=np.float64).reshape(-1, items.shape[1])
    ids, vals = topk_ref(items, q, k, exclude or ())
    return {
        "name": label,
        "request": request(name, rid, inputs, params),
        "outputs": [tensor_json("items", "INT64", ids),
                    tensor_json("scores", "FP32", vals)],
    }


def recsys_cases(out):
    name = "recsys"
    rng = np.random.default_rng(SEED + 3)
    n_items, n_users, dim = 1000, 200, 32
    items = f32(rng, n_items, dim, scale=1.0 / math.sqrt(dim))
    users = f32(rng, n_users, dim)
    make_topk(out, name, items, users)
    cases = []

    def rid():
        return "%s-%d" % (name, len(cases))

    def vectors(n, k, exclude=()):
        # Draw until float32 rounding cannot change the expected order.
        while True:
            q = f32(rng, n, dim)
            if well_separated(items, q.astype(np.float64), k, exclude):
                return q

    def user_ids(n, k, exclude=()):
        ids = []
        for u in range(n_users):
            if well_separated(items, users[u:u + 1], k, exclude):
                ids.append(u)
        picked = rng.choice(ids, size=n, replace=False)
        return np.array(picked, dtype=np.int64)

    def by_user(label, ids, k, k_param=None, exclude=None):
        inputs = [tensor_json("input", "INT64", ids)]
        if exclude is not None:
            inputs.append(tensor_json("exclude", "INT64",
                                      np.array(exclude, dtype=np.int64)))
        q = users[ids].astype(np.float64)
        got_ids, vals = topk_ref(items, q, k, exclude or ())
        cases.append({
            "name": label,
            "request": request(name, rid(), inputs,
                               {"k": k_param} if k_param else None),
            "outputs": [tensor_json("items", "INT64", got_ids),
                        tensor_json("scores", "FP32", vals)],
        })

    def by_vec(label, q, k, **kw):
        cases.append(topk_case(name, rid(), items, label, q, k, **kw))

    def bad(label, inputs, error, params=None):
        cases.append({"name": label,
                      "request": request(name, rid(), inputs, params),
                      "error": error})

    # The first eight are the batch-invariance set of the C tests.
    by_vec("one vector, 1-D, default k", vectors(1, 10)[0], 10)
    by_vec("three vectors, k=5", vectors(3, 5), 5, k_param=5)
    by_user("one user id", user_ids(1, 10), 10)
    by_user("four user ids, k=3", user_ids(4, 3), 3, k_param=3)
    excl = [int(i) for i in rng.choice(n_items, size=40, replace=False)]
    while True:
        # Also exclude what would otherwise be the best items of both rows.
        q = f32(rng, 2, dim)
        best, _ = topk_ref(items, q.astype(np.float64), 3)
        q_excl = excl + [int(i) for i in best.reshape(-1)]
        if well_separated(items, q.astype(np.float64), 10, q_excl):
            break
    by_vec("exclude, with duplicates", q, 10, exclude=q_excl + q_excl[:5])
    by_vec("FP64 vector, k=1", vectors(1, 1).astype(np.float64), 1,
           k_param=1, datatype="FP64")
    by_user("user ids with exclude", user_ids(2, 7, excl[:10]), 7,
            k_param=7, exclude=excl[:10])
    by_vec("k = 20", vectors(2, 20), 20, k_param=20)
    bad("unknown user id",
        [tensor_json("input", "INT64", np.array([3, 200], dtype=np.int64))],
        "unknown user id 200")
    bad("negative user id",
        [tensor_json("input", "INT64", np.array([-1], dtype=np.int64))],
        "unknown user id -1")
    bad("k = 0", [tensor_json("input", "FP32", f32(rng, dim))],
        'parameter "k" must be an integer in [1, 1000]', {"k": 0})
    bad("k too large", [tensor_json("input", "FP32", f32(rng, dim))],
        'parameter "k" must be an integer in [1, 1000]', {"k": 1001})
    bad("k not a number", [tensor_json("input", "FP32", f32(rng, dim))],
        'parameter "k" must be an integer', {"k": "ten"})
    bad("exclude id out of range",
        [tensor_json("input", "FP32", f32(rng, dim)),
         tensor_json("exclude", "INT64", np.array([5, 1000], dtype=np.int64))],
        'input "exclude": item id 1000 is not in [0, 1000)')
    bad("wrong dimension", [tensor_json("input", "FP32", f32(rng, 2, 31))],
        'expected vectors of shape [n,32] or [32], got FP32 [2,31]')
    bad("missing input", [tensor_json("query", "FP32", f32(rng, dim))],
        'model needs input "input"')
    return cases


def recsys_ties_cases(out):
    """Integer embeddings: every dot product is exact in float32, so equal
    scores are truly equal and the lower-id rule decides."""
    name = "recsys_ties"
    rng = np.random.default_rng(SEED + 4)
    n_items, dim = 40, 4
    items = rng.integers(-1, 2, size=(n_items, dim)).astype(np.float32)
    items[20:30] = items[0:10]          # duplicate rows: guaranteed ties
    make_topk(out, name, items, None, k=6)
    cases = []

    def rid():
        return "%s-%d" % (name, len(cases))

    queries = rng.integers(-2, 3, size=(6, dim)).astype(np.float32)
    cases.append(topk_case(name, rid(), items, "ties, default k",
                           queries[0], 6))
    cases.append(topk_case(name, rid(), items, "ties, three rows, k=12",
                           queries[1:4], 12, k_param=12))
    cases.append(topk_case(name, rid(), items, "all-zero query: id order",
                           np.zeros(dim, dtype=np.float32), 8, k_param=8))
    cases.append(topk_case(name, rid(), items, "ties with exclude",
                           queries[4], 6, exclude=[0, 1, 20, 21, 39]))
    cases.append(topk_case(name, rid(), items,
                           "exclude leaves fewer than k",
                           queries[5], 6, exclude=list(range(2, 40))))
    cases.append(topk_case(name, rid(), items,
                           "duplicated exclusions leave fewer than k",
                           queries[2], 6,
                           exclude=list(range(3, 40)) + [3, 4, 5, 39] * 3))
    cases.append(topk_case(name, rid(), items, "exclude everything",
                           queries[5], 6, exclude=list(range(40))))
    cases.append(topk_case(name, rid(), items, "k = all items",
                           queries[0], 40, k_param=40))
    cases.append({"name": "user ids without a user table",
                  "request": request(name, rid(), [tensor_json(
                      "input", "INT64", np.array([1], dtype=np.int64))]),
                  "error": "this model has no user table"})
    return cases


# ---------------------------------------------------------------- parser cases

def st_header(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def tensor_entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def invalid_cases():
    f4 = struct.pack("<4f", 1, 2, 3, 4)
    one = {"a": tensor_entry("F32", [2, 2], 0, 16)}

    def with_a(entry):
        return raw_st(st_header({"a": entry}), f4)

    return {
        "empty_file": (b"", "shorter than the 8-byte header length"),
        "too_short": (b"\x10\x00\x00\x00\x00",
                      "file is 5 bytes, shorter than the 8-byte header "
                      "length"),
        "header_over_limit": (struct.pack("<Q", 100000001) + b"{}",
                              "header length 100000001 is over the "
                              "100000000-byte limit"),
        "header_length_max_u64": (b"\xff" * 8 + b"{}",
                                  "is over the 100000000-byte limit"),
        "header_past_eof": (struct.pack("<Q", 64) + b"{}      ",
                            "header length 64 runs past the end of the "
                            "16-byte file"),
        "header_empty": (struct.pack("<Q", 0), "header is not a JSON object"),
        "header_array": (raw_st(b"[1,2]", b""),
                         "header is not a JSON object"),
        "header_not_json": (raw_st(b"{\"a\": ", b""),
                            "header is not valid JSON"),
        "header_trailing_text": (raw_st(b"{} x", b""),
                                 "header is not valid JSON"),
        "header_bad_utf8": (raw_st(b"{\"\xff\": 1}", b""),
                            "header is not valid JSON"),
        "duplicate_tensor": (raw_st(
            b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            b'"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', f4),
            "duplicate object key"),
        "tensor_not_object": (raw_st(st_header({"a": [1, 2]}), b""),
                              'tensor "a": entry must be an object'),
        "dtype_missing": (raw_st(st_header(
            {"a": {"shape": [2, 2], "data_offsets": [0, 16]}}), f4),
            'tensor "a": "dtype" must be a string'),
        "dtype_not_string": (with_a({"dtype": 32, "shape": [2, 2],
                                     "data_offsets": [0, 16]}),
                             'tensor "a": "dtype" must be a string'),
        "dtype_unknown": (with_a(tensor_entry("F33", [2, 2], 0, 16)),
                          'tensor "a": unknown dtype "F33"'),
        "dtype_lower_case": (with_a(tensor_entry("f32", [2, 2], 0, 16)),
                             'tensor "a": unknown dtype "f32"'),
        "shape_not_array": (with_a({"dtype": "F32", "shape": 4,
                                    "data_offsets": [0, 16]}),
                            'tensor "a": "shape" must be an array of '
                            'non-negative integers'),
        "shape_negative": (with_a(tensor_entry("F32", [-2, -2], 0, 16)),
                           '"shape" must be an array of non-negative '
                           'integers'),
        "shape_real": (with_a(tensor_entry("F32", [2.0, 2], 0, 16)),
                       '"shape" must be an array of non-negative integers'),
        "shape_string": (with_a(tensor_entry("F32", ["2", 2], 0, 16)),
                         '"shape" must be an array of non-negative integers'),
        "shape_count_overflow": (with_a(tensor_entry(
            "F32", [4294967296, 4294967296, 16], 0, 16)),
            'tensor "a": shape [4294967296,4294967296,16] overflows the '
            'element count'),
        "shape_bytes_overflow": (with_a(tensor_entry(
            "F64", [4611686018427387904], 0, 16)),
            'tensor "a": shape [4611686018427387904] of F64 overflows the '
            'byte count'),
        "offsets_missing": (with_a({"dtype": "F32", "shape": [2, 2]}),
                            '"data_offsets" must be [begin, end]'),
        "offsets_one_value": (with_a({"dtype": "F32", "shape": [2, 2],
                                      "data_offsets": [16]}),
                              '"data_offsets" must be [begin, end]'),
        "offsets_three_values": (with_a({"dtype": "F32", "shape": [2, 2],
                                         "data_offsets": [0, 8, 16]}),
                                 '"data_offsets" must be [begin, end]'),
        "offsets_negative": (with_a(tensor_entry("F32", [2, 2], -16, 0)),
                             '"data_offsets" must be two non-negative '
                             'integers'),
        "offsets_string": (with_a(tensor_entry("F32", [2, 2], "0", 16)),
                           '"data_offsets" must be two non-negative '
                           'integers'),
        "offsets_end_before_begin": (with_a(tensor_entry("F32", [0], 16, 0)),
                                     'tensor "a": data_offsets [16, 0] end '
                                     'before begin'),
        "offsets_past_data": (with_a(tensor_entry("F32", [2, 2], 8, 24)),
                              'tensor "a": data_offsets [8, 24] run past '
                              'the end of the 16-byte data area'),
        "offsets_huge": (with_a(tensor_entry("F32", [2, 2], 0,
                                             9223372036854775807)),
                         'run past the end of the 16-byte data area'),
        "size_mismatch": (with_a(tensor_entry("F32", [2, 2], 0, 12)),
                          'tensor "a": data_offsets [0, 12] hold 12 bytes '
                          'but shape [2,2] of F32 needs 16'),
        "size_mismatch_dtype": (with_a(tensor_entry("F64", [2, 2], 0, 16)),
                                'hold 16 bytes but shape [2,2] of F64 needs '
                                '32'),
        "overlap": (raw_st(st_header({
            "a": tensor_entry("F32", [2], 0, 8),
            "b": tensor_entry("F32", [2], 4, 12),
            "c": tensor_entry("F32", [1], 12, 16)}), f4),
            'tensor "b": data_offsets [4, 12] overlap tensor "a"'),
        "overlap_same_range": (raw_st(st_header({
            "a": tensor_entry("F32", [4], 0, 16),
            "b": tensor_entry("I32", [4], 0, 16)}), f4),
            'overlap tensor "a"'),
        "empty_inside_other": (raw_st(st_header({
            "a": tensor_entry("F32", [4], 0, 16),
            "e": tensor_entry("F32", [0], 8, 8)}), f4),
            'tensor "e": data_offsets [8, 8] overlap tensor "a"'),
        "hole": (raw_st(st_header({
            "a": tensor_entry("F32", [1], 0, 4),
            "b": tensor_entry("F32", [2], 8, 16)}), f4),
            'data bytes [4, 8) belong to no tensor (a hole before tensor '
            '"b")'),
        "hole_at_start": (raw_st(st_header({
            "a": tensor_entry("F32", [3], 4, 16)}), f4),
            'data bytes [0, 4) belong to no tensor'),
        "trailing_bytes": (raw_st(st_header({
            "a": tensor_entry("F32", [3], 0, 12)}), f4),
            'data bytes [12, 16) belong to no tensor (trailing bytes'),
        "data_without_tensors": (raw_st(b"{}", f4),
                                 "16 bytes of data but no tensor describes "
                                 "them"),
        "metadata_not_object": (raw_st(st_header(
            {"__metadata__": "pt", **one}), f4),
            '"__metadata__" must be an object of strings'),
        "metadata_value_number": (raw_st(st_header(
            {"__metadata__": {"epoch": 3}, **one}), f4),
            '"__metadata__" entry "epoch" must be a string'),
    }


def valid_cases():
    rng = np.random.default_rng(SEED + 5)
    cases = {}
    basic = {
        "w": f32(rng, 2, 3),
        "b": f32(rng, 3).astype(np.float64),
        "i": np.array([[1, -2], [3, 2147483647]], dtype=np.int32),
        "l": np.array([-9007199254740993, 0, 1, 7], dtype=np.int64),
    }
    cases["basic"] = (st_bytes(basic, {"format": "pt", "note": "é ☃"}),
                      basic, {"format": "pt", "note": "é ☃"})
    cases["no_tensors"] = (st_bytes({}), {}, {})
    empty = {
        "empty": np.zeros((0, 3), dtype=np.float32),
        "scalar": np.array(2.5, dtype=np.float32),
        "v": np.array([1.5, -2.5], dtype=np.float64),
    }
    cases["empty_and_scalar"] = (st_bytes(empty), empty, {})
    # No header padding: the data area starts 1 byte past a 4-byte
    # boundary, so F32/I64 data is misaligned and must be copied.
    mis = {"m32": f32(rng, 5), "m64": np.arange(3, dtype=np.int64) - 1}
    hdr = {}
    blob = b""
    for name in sorted(mis):
        data = mis[name].tobytes()
        hdr[name] = tensor_entry(ST_DTYPES[mis[name].dtype],
                                 list(mis[name].shape), len(blob),
                                 len(blob) + len(data))
        blob += data
    h = st_header(hdr)
    h += b" " * ((1 - (8 + len(h))) % 8)   # 8 + len(h) == 1 (mod 8)
    cases["misaligned"] = (raw_st(h, blob, align=None), mis, {})
    # Header entries listed in another order than their data.
    order = {"z": f32(rng, 2), "a": f32(rng, 3)}
    za = st_header({
        "a": tensor_entry("F32", [3], 8, 20),
        "z": tensor_entry("F32", [2], 0, 8)})
    cases["unsorted_offsets"] = (raw_st(za, order["z"].tobytes() +
                                        order["a"].tobytes()), order, {})
    # Every dtype the format names, as raw bytes.
    alld = {}
    hdr = {}
    blob = b""
    sizes = [("BOOL", 1), ("U8", 1), ("I8", 1), ("F8_E5M2", 1),
             ("F8_E4M3", 1), ("F8_E8M0", 1), ("I16", 2), ("U16", 2),
             ("F16", 2), ("BF16", 2), ("I32", 4), ("U32", 4), ("F32", 4),
             ("C64", 8), ("F64", 8), ("I64", 8), ("U64", 8)]
    for dt, size in sorted(sizes, key=lambda s: -s[1]):
        n = 3 * size
        hdr["t_" + dt] = tensor_entry(dt, [3], len(blob), len(blob) + n)
        alld["t_" + dt] = (dt, [3])
        blob += bytes((len(blob) + j) % 256 for j in range(n))
    cases["all_dtypes"] = (raw_st(st_header(hdr), blob), alld, {})
    return cases


def expect_json(tensors, metadata):
    out = {"tensors": {}, "metadata": metadata}
    for name, t in tensors.items():
        if isinstance(t, tuple):
            out["tensors"][name] = {"dtype": t[0], "shape": t[1]}
            continue
        entry = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape)}
        if t.dtype.kind == "i":
            # int64 beyond 2^53 survives as a decimal string.
            entry["values"] = [str(v) for v in t.reshape(-1).tolist()]
        else:
            entry["values"] = flat(t)
        out["tensors"][name] = entry
    return out


def write_parser_cases(out):
    base = os.path.join(out, "expected", "safetensors")
    shutil.rmtree(base, ignore_errors=True)
    for case, (content, error) in sorted(invalid_cases().items()):
        write(os.path.join(base, "invalid", case, "input"), content)
        write(os.path.join(base, "invalid", case, "error"), error + "\n")
    for case, (content, tensors, meta) in sorted(valid_cases().items()):
        write(os.path.join(base, "valid", case, "input"), content)
        write_json(os.path.join(base, "valid", case, "expect.json"),
                   expect_json(tensors, meta))


# ---------------------------------------------------------------- main

def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s OUTDIR\n" % argv[0])
        return 2
    out = argv[1]
    for name in ("mlp", "mlp_acts", "recsys", "recsys_ties"):
        shutil.rmtree(os.path.join(out, "models", name), ignore_errors=True)

    expected = {
        "mlp": mlp_cases(out, "mlp", [16, 32, 16, 4],
                         ["relu", "gelu", "none"], [True, True, True],
                         True, SEED + 1),
        "mlp_acts": mlp_cases(out, "mlp_acts", [8, 12, 10, 6, 5],
                              ["tanh", "sigmoid", "gelu_tanh", "none"],
                              [True, False, True, True], False, SEED + 2,
                              inp="input", outp="output"),
        "recsys": recsys_cases(out),
        "recsys_ties": recsys_ties_cases(out),
    }
    for name, cases in expected.items():
        write_json(os.path.join(out, "expected", name + ".json"), cases)
    write_parser_cases(out)
    print("gen_dense: wrote %s/models/{%s} and %s/expected" %
          (out, ",".join(expected), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
