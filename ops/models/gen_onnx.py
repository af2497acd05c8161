#!/usr/bin/python3
"""Build two small ONNX models and the answers an independent
implementation gives for a fixed set of requests, so kinfer's "onnx"
plugin (OpenCV DNN) can be checked through a worker.

usage: gen_onnx.py OUTDIR
writes OUTDIR/models/onnx_mlp/  a graph written node by node with
                                onnx.helper: x FP32 [n,8] -> Gemm, Relu,
                                Gemm -> logits FP32 [n,4] -> Softmax ->
                                probs FP32 [n,4]; answers from NumPy
       OUTDIR/models/onnx_cnn/  a PyTorch CNN exported with
                                torch.onnx.export (dynamic batch):
                                image FP32 [n,1,16,16] -> logits FP32
                                [n,10]; answers from eager PyTorch
       OUTDIR/expected/<model>.json  (format: gen_dense.py's docstring)
needs: python3, numpy, python3-onnx, python3-torch

onnx 1.12 has no reference evaluator (onnx.reference came in 1.13), so
the answers come from NumPy (float64 from the float32 weights) for the
graph built by hand and from PyTorch for the exported one: neither shares
code with OpenCV.  Both graphs pass onnx.checker.  Fixed seeds.
"""

import json
import os
import shutil
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

SEED = 20261201


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


def port(name, shape):
    return {"name": name, "datatype": "FP32", "shape": shape}


# ------------------------------------------------------------ onnx_mlp

def mlp_graph(rng):
    # Weights [out, in] with transB=1, as PyTorch exports them (OpenCV
    # 4.6's Gemm import mishandles the bias of an untransposed B).
    w1 = (rng.standard_normal((16, 8)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((4, 16)) * 0.5).astype(np.float32)
    b2 = (rng.standard_normal(4) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1,
                         name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1,
                         name="fc2"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1,
                         name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "kinfer_onnx_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["n", 4]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT,
                                       ["n", 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")])
    model = helper.make_model(graph, producer_name="kinfer gen_onnx.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)

    def forward(x):
        h = np.maximum(x.astype(np.float64) @ w1.astype(np.float64).T + b1,
                       0)
        logits = h @ w2.astype(np.float64).T + b2
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return logits, e / e.sum(axis=1, keepdims=True)
    return model, forward


def mlp_cases(forward, rng):
    out = []
    for i, n in enumerate([1, 3, 7]):
        x = rng.standard_normal((n, 8)).astype(np.float32)
        logits, probs = forward(x)
        out.append({"name": "%d row(s)" % n,
                    "request": request("onnx_mlp", "o-mlp-%d" % i,
                                       [tensor_json("x", "FP32", x)]),
                    "outputs": [tensor_json("logits", "FP32",
                                            logits.astype(np.float32)),
                                tensor_json("probs", "FP32",
                                            probs.astype(np.float32))]})
    out.append({"name": "FP64 rows",
                "request": request("onnx_mlp", "o-mlp-f64",
                                   [tensor_json("x", "FP64",
                                                np.zeros((1, 8)))]),
                "error": "input \"x\": expected FP32 [-1,8], got FP64 [1,8]"})
    out.append({"name": "rows too wide",
                "request": request("onnx_mlp", "o-mlp-wide",
                                   [tensor_json("x", "FP32",
                                                np.zeros((2, 9),
                                                         np.float32))]),
                "error": "got FP32 [2,9]"})
    return out


# ------------------------------------------------------------ onnx_cnn

class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, image):
        x = torch.max_pool2d(torch.relu(self.conv1(image)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def cnn_cases(cnn, rng):
    out = []
    for i, n in enumerate([1, 2, 6]):
        img = rng.random((n, 1, 16, 16), dtype=np.float32)
        with torch.no_grad():
            logits = cnn(torch.from_numpy(img)).numpy()
        out.append({"name": "%d image(s)" % n,
                    "request": request("onnx_cnn", "o-cnn-%d" % i,
                                       [tensor_json("image", "FP32", img)]),
                    "outputs": [tensor_json("logits", "FP32", logits)]})
    out.append({"name": "image missing",
                "request": request("onnx_cnn", "o-cnn-none",
                                   [tensor_json("x", "FP32",
                                                np.zeros((1, 1, 16, 16),
                                                         np.float32))]),
                "error": "model needs input \"image\" (FP32 [-1,1,16,16])"})
    return out


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: gen_onnx.py OUTDIR")
    outdir = sys.argv[1]
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    models = os.path.join(outdir, "models")
    for name in ("onnx_mlp", "onnx_cnn"):
        shutil.rmtree(os.path.join(models, name), ignore_errors=True)

    model, forward = mlp_graph(rng)
    d = os.path.join(models, "onnx_mlp")
    os.makedirs(d)
    onnx.save(model, os.path.join(d, "model.onnx"))
    write_json(os.path.join(d, "config.json"),
               {"backend": "onnx", "model": "model.onnx",
                "inputs": [port("x", [-1, 8])],
                "outputs": [port("logits", [-1, 4]), port("probs", [-1, 4])],
                "instances": 2, "max_batch_size": 8,
                "max_queue_delay_us": 1000})
    write_json(os.path.join(outdir, "expected", "onnx_mlp.json"),
               mlp_cases(forward, rng))

    cnn = SmallCNN().eval()
    d = os.path.join(models, "onnx_cnn")
    os.makedirs(d)
    path = os.path.join(d, "model.onnx")
    torch.onnx.export(cnn, torch.zeros((2, 1, 16, 16)), path,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
                      opset_version=13)
    onnx.checker.check_model(onnx.load(path))
    write_json(os.path.join(d, "config.json"),
               {"backend": "onnx", "model": "model.onnx",
                "inputs": [port("image", [-1, 1, 16, 16])],
                "outputs": [port("logits", [-1, 10])],
                "version": 3, "max_batch_size": 4,
                "max_queue_delay_us": 500})
    write_json(os.path.join(outdir, "expected", "onnx_cnn.json"),
               cnn_cases(cnn, rng))


if __name__ == "__main__":
    main()
