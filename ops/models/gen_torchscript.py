#!/usr/bin/python3
"""Build two small PyTorch models, trace them to TorchScript, and write the
answers PyTorch gives for a fixed set of requests, so kinfer's
"torchscript" plugin can be checked through a worker.

usage: gen_torchscript.py OUTDIR
writes OUTDIR/models/cnn/      a CNN on UINT8 grey images [n,1,16,16] ->
                               (logits FP32 [n,10], probabilities FP32
                               [n,10]) as a tuple, mapped by position;
                               dynamic batching
       OUTDIR/models/cnn_b1/   the same module without batching (version 2)
       OUTDIR/models/embed/    a text embedder: forward(mask, tokens) with
                               INT64 token ids [n,L] and a BOOL mask [n,L]
                               -> Dict{"embedding": FP32 [n,32] (unit
                               length), "length": INT64 [n]}, mapped by
                               name, any L; dynamic batching
       OUTDIR/expected/<model>.json  (format: gen_dense.py's docstring)
needs: python3, numpy, python3-torch

The answers are PyTorch's: each request runs alone through the Python
module that was traced (not the traced file), in float32, so they check
the plugin's loading, datatype mapping, batching and splitting against
eager PyTorch.  Fixed seeds: two runs write the same answers.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
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


def port(name, datatype, shape):
    return {"name": name, "datatype": datatype, "shape": shape}


class SmallCNN(nn.Module):
    """Grey 16x16 UINT8 images: scale to [0,1], two conv blocks, a linear
    head; returns (logits, softmax probabilities)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, image):
        x = image.float() / 255.0
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        logits = self.head(x.flatten(1))
        return logits, torch.softmax(logits, dim=1)


class Embedder(nn.Module):
    """Mean of the embeddings of the unmasked tokens, a tanh projection,
    scaled to unit length; also the number of tokens used."""

    def __init__(self, vocab=1000, dim=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, mask, tokens):
        m = mask.unsqueeze(-1).float()
        length = mask.sum(dim=1)
        mean = (self.emb(tokens) * m).sum(dim=1) / \
            length.clamp(min=1).unsqueeze(-1).float()
        h = torch.tanh(self.proj(mean))
        h = h / h.norm(dim=1, keepdim=True).clamp(min=1e-6)
        return {"embedding": h, "length": length}


def run(module, *args):
    with torch.no_grad():
        return module(*[torch.from_numpy(np.ascontiguousarray(a))
                        for a in args])


def cnn_cases(model, cnn, rng, prefix):
    out = []
    for i, n in enumerate([1, 2, 5]):
        img = rng.integers(0, 256, size=(n, 1, 16, 16), dtype=np.uint8)
        logits, probs = run(cnn, img)
        out.append({"name": "%d image(s)" % n,
                    "request": request(model, "%s-%d" % (prefix, i),
                                       [tensor_json("image", "UINT8", img)]),
                    "outputs": [tensor_json("logits", "FP32", logits.numpy()),
                                tensor_json("probabilities", "FP32",
                                            probs.numpy())]})
    out.append({"name": "FP32 image",
                "request": request(model, prefix + "-fp32",
                                   [tensor_json("image", "FP32",
                                                np.zeros((1, 1, 16, 16),
                                                         np.float32))]),
                "error": "input \"image\": expected UINT8 [-1,1,16,16], "
                         "got FP32 [1,1,16,16]"})
    out.append({"name": "image of the wrong size",
                "request": request(model, prefix + "-size",
                                   [tensor_json("image", "UINT8",
                                                np.zeros((1, 1, 15, 16),
                                                         np.uint8))]),
                "error": "got UINT8 [1,1,15,16]"})
    return out


def embed_cases(emb, rng):
    out = []
    for i, (n, length) in enumerate([(1, 12), (3, 12), (2, 7), (4, 20)]):
        tokens = rng.integers(0, 1000, size=(n, length), dtype=np.int64)
        used = rng.integers(1, length + 1, size=n)
        mask = np.arange(length)[None, :] < used[:, None]
        r = run(emb, mask, tokens)
        out.append({"name": "%d text(s) of %d tokens" % (n, length),
                    # Inputs in the order of the config, not of forward():
                    # the plugin maps them by name.
                    "request": request("embed", "t-embed-%d" % i,
                                       [tensor_json("tokens", "INT64",
                                                    tokens),
                                        tensor_json("mask", "BOOL", mask)]),
                    "outputs": [tensor_json("embedding", "FP32",
                                            r["embedding"].numpy()),
                                tensor_json("length", "INT64",
                                            r["length"].numpy())]})
    tokens = np.zeros((1, 4), dtype=np.int64)
    out.append({"name": "mask missing",
                "request": request("embed", "t-embed-nomask",
                                   [tensor_json("tokens", "INT64", tokens)]),
                "error": "model needs input \"mask\""})
    out.append({"name": "rows differ between inputs",
                "request": request("embed", "t-embed-rows",
                                   [tensor_json("tokens", "INT64",
                                                np.zeros((2, 4), np.int64)),
                                    tensor_json("mask", "BOOL",
                                                np.ones((1, 4), bool))]),
                "error": "input \"mask\": 1 rows, but the inputs before it "
                         "have 2"})
    return out


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: gen_torchscript.py OUTDIR")
    outdir = sys.argv[1]
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    models = os.path.join(outdir, "models")
    for name in ("cnn", "cnn_b1", "embed"):
        shutil.rmtree(os.path.join(models, name), ignore_errors=True)

    cnn = SmallCNN().eval()
    example = torch.zeros((2, 1, 16, 16), dtype=torch.uint8)
    traced = torch.jit.trace(cnn, (example,))
    cnn_io = {"inputs": [port("image", "UINT8", [-1, 1, 16, 16])],
              "outputs": [port("logits", "FP32", [-1, 10]),
                          port("probabilities", "FP32", [-1, 10])]}
    for name, extra in (("cnn", {"max_batch_size": 8,
                                 "max_queue_delay_us": 1000}),
                        ("cnn_b1", {"version": 2})):
        d = os.path.join(models, name)
        os.makedirs(d)
        traced.save(os.path.join(d, "model.pt"))
        write_json(os.path.join(d, "config.json"),
                   dict({"backend": "torchscript", "model": "model.pt"},
                        **cnn_io, **extra))
        write_json(os.path.join(outdir, "expected", name + ".json"),
                   cnn_cases(name, cnn, rng, "t-" + name))

    emb = Embedder().eval()
    ex_mask = torch.ones((2, 5), dtype=torch.bool)
    ex_tok = torch.zeros((2, 5), dtype=torch.int64)
    traced = torch.jit.trace(emb, (ex_mask, ex_tok), strict=False)
    d = os.path.join(models, "embed")
    os.makedirs(d)
    traced.save(os.path.join(d, "model.pt"))
    write_json(os.path.join(d, "config.json"),
               {"backend": "torchscript", "model": "model.pt", "map": "name",
                "inputs": [port("tokens", "INT64", [-1, -1]),
                           port("mask", "BOOL", [-1, -1])],
                "outputs": [port("embedding", "FP32", [-1, 32]),
                            port("length", "INT64", [-1])],
                "max_batch_size": 8, "max_queue_delay_us": 1000})
    write_json(os.path.join(outdir, "expected", "embed.json"),
               embed_cases(emb, rng))


if __name__ == "__main__":
    main()
