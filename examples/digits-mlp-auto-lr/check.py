"""Loads the weights that finetune.mjs wrote into the PyTorch model of request.json with
load_state_dict(strict=True) and measures the held-out accuracy there.

    /usr/bin/python3 examples/digits-mlp-auto-lr/check.py digits-mlp.safetensors
"""
import csv
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "seed-mlp"))
from safetensors_lite import load_file  # noqa: E402


def model():
    """The layers of request.json, as PyTorch builds them."""
    return nn.Sequential(OrderedDict(fc1=nn.Linear(64, 32), relu=nn.ReLU(), fc2=nn.Linear(32, 10)))


with open(os.path.join(HERE, "holdout.csv")) as f:
    rows = list(csv.reader(f))[1:]
x = torch.tensor(np.array([[float(v) for v in r[:64]] for r in rows], dtype=np.float32))
y = np.array([int(r[64]) for r in rows])
m = model()
m.load_state_dict(load_file(sys.argv[1] if len(sys.argv) > 1 else "digits-mlp.safetensors"), strict=True)
with torch.no_grad():
    accuracy = float((m(x).argmax(1).numpy() == y).mean())
print("PyTorch, held-out accuracy: %.3f" % accuracy)
if accuracy < 0.88:
    raise SystemExit("below the 0.88 of docs/strategy.md")
