"""Loads the fine-tuned weights back into the PyTorch model of pretrain.py with
load_state_dict(strict=True) and measures the held-out accuracy there, before and after.

    /usr/bin/python3 examples/digits-cnn/check.py digits-tuned.safetensors
"""
import csv
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "seed-mlp"))
from pretrain import model  # noqa: E402
from safetensors_lite import load_file  # noqa: E402


def holdout():
    with open(os.path.join(HERE, "holdout.csv")) as f:
        rows = list(csv.reader(f))[1:]
    x = np.array([[float(v) for v in r[:64]] for r in rows], dtype=np.float32).reshape(-1, 1, 8, 8)
    y = np.array([int(r[64]) for r in rows])
    return torch.tensor(x), y


def accuracy(path):
    m = model()
    m.load_state_dict(load_file(path), strict=True)
    x, y = holdout()
    with torch.no_grad():
        return float((m(x).argmax(1).numpy() == y).mean())


before = accuracy(os.path.join(HERE, "weights.safetensors"))
after = accuracy(sys.argv[1] if len(sys.argv) > 1 else "digits-tuned.safetensors")
print("PyTorch, held-out accuracy: %.3f pretrained, %.3f fine-tuned by edgetune" % (before, after))
if after <= before:
    raise SystemExit("the fine-tuned weights are not better on the held-out digits")
