"""Loads edgetune's fine-tuned weights back into PyTorch with load_state_dict(strict=True) and
compares the loss on train.csv before (the exported weights) and after.

    /usr/bin/python3 examples/seed-mlp/check.py result.json        # the JSON of POST /v1/fine-tunes
    /usr/bin/python3 examples/seed-mlp/check.py tuned.safetensors  # or a downloaded weights file
"""
import base64
import csv
import json
import os
import sys
from collections import OrderedDict

import torch
from torch import nn

from safetensors_lite import load_bytes, load_file

HERE = os.path.dirname(os.path.abspath(__file__))


def make_model():
    return nn.Sequential(OrderedDict(fc1=nn.Linear(10, 10), relu=nn.ReLU(), fc2=nn.Linear(10, 1)))


def loss_with(state):
    model = make_model()
    model.load_state_dict(state, strict=True)
    with open(os.path.join(HERE, "train.csv")) as f:
        rows = list(csv.reader(f))[1:]
    x = torch.tensor([[float(v) for v in r[:10]] for r in rows])
    y = torch.tensor([[float(r[10])] for r in rows])
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item()


path = sys.argv[1] if len(sys.argv) > 1 else "result.json"
if path.endswith(".json"):
    with open(path) as f:
        result = json.load(f)
    if "weights" not in result:
        sys.exit(f"{path} has no weights: {json.dumps(result)[:500]}")
    tuned = load_bytes(base64.b64decode(result["weights"]))
    print(f"status {result['status']}, {result['metrics']['steps']} steps in {result['metrics']['duration_ms']:.0f} ms")
else:
    tuned = load_file(path)

before = loss_with(load_file(os.path.join(HERE, "weights.safetensors")))
after = loss_with(tuned)
print(f"MSE on train.csv: before {before:.5f}, after {after:.5f}")
if not after < before:
    sys.exit("the loss did not fall")
print("the fine-tuned weights load into PyTorch and the loss fell")
