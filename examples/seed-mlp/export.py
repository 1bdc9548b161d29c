"""Exports the seed example: a PyTorch Linear(10,10)-ReLU-Linear(10,1) "pretrained" on one
task, its weights as safetensors with state_dict names (fc1.*, fc2.*), a CSV of a related task
to fine-tune on, and the request JSON for edgetune.

    /usr/bin/python3 examples/seed-mlp/export.py
"""
import csv
import json
import os
from collections import OrderedDict

import torch
from torch import nn

from safetensors_lite import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)


def make_model():
    return nn.Sequential(OrderedDict(fc1=nn.Linear(10, 10), relu=nn.ReLU(), fc2=nn.Linear(10, 1)))


def task(x, shift):
    # a smooth target; the fine-tuning task differs from the pretraining one by `shift`
    return (x[:, :5].sum(1, keepdim=True) * 0.5 - x[:, 5:].pow(2).mean(1, keepdim=True) + shift).tanh()


model = make_model()
# "pretraining": a few hundred Adam steps on task A
x_a = torch.randn(2000, 10)
y_a = task(x_a, 0.0)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(300):
    opt.zero_grad()
    nn.functional.mse_loss(model(x_a), y_a).backward()
    opt.step()
save_file(OrderedDict((k, v) for k, v in model.state_dict().items()), os.path.join(HERE, "weights.safetensors"))

# the fine-tuning data: task B, 1,000 rows
x_b = torch.randn(1000, 10)
y_b = task(x_b, 0.4)
with open(os.path.join(HERE, "train.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([f"x{i}" for i in range(10)] + ["y"])
    for row, target in zip(x_b.tolist(), y_b.squeeze(1).tolist()):
        w.writerow([f"{v:.6g}" for v in row] + [f"{target:.6g}"])

request = {
    "model": {"layers": [
        {"type": "linear", "name": "fc1", "in_features": 10, "out_features": 10},
        {"type": "relu"},
        {"type": "linear", "name": "fc2", "in_features": 10, "out_features": 1},
    ]},
    "data": {"target": "y", "validation_split": 0.1},
    "training": {"epochs": 20, "batch_size": 32, "loss": {"type": "mse"}, "optimizer": {"type": "adam", "lr": 0.001}},
}
with open(os.path.join(HERE, "request.json"), "w") as f:
    json.dump(request, f, indent=2)
    f.write("\n")
print("wrote weights.safetensors, train.csv, request.json in", HERE)
