"""Pretrains the example's small CNN in PyTorch and writes what the example sends to edgetune.

    /usr/bin/python3 examples/digits-cnn/pretrain.py

Data: scikit-learn's 8x8 digits (UCI optdigits: 1,797 images, 10 classes; Debian's
python3-sklearn ships them as sklearn/datasets/data/digits.csv.gz), pixels scaled to [0, 1].
The images are shuffled with a fixed seed; the first 1,000 pretrain the model. The other 797
play a new user whose pen draws thicker strokes (each pixel the maximum of its 2x2
neighbourhood): 400 of them are the user's training data (train.csv), 397 are held out
(holdout.csv). The pretrained model reads the thick digits poorly; fine-tuning on the user's
400 examples fixes that, which holdout.csv measures.

Writes weights.safetensors (the pretrained state_dict, nn.Sequential names), train.csv and
holdout.csv (64 pixel columns p0..p63, then the label y), and prints the pretrained model's
accuracy on the original and the thick digits. Deterministic (seeded, one thread).
"""
import csv
import gzip
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "seed-mlp"))
from safetensors_lite import save_file  # noqa: E402

DIGITS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"


def model():
    """The layers of request.json, as PyTorch builds them."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 8, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(8, 16, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), head=nn.Linear(64, 10)))


def thick(x):
    """A thicker pen: each pixel becomes the maximum of its 2x2 neighbourhood (down-right)."""
    p = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))
    return np.maximum.reduce([p[:, :, :-1, :-1], p[:, :, 1:, :-1], p[:, :, :-1, 1:], p[:, :, 1:, 1:]])


def accuracy(m, x, y):
    with torch.no_grad():
        return float((m(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy() == y).mean())


def write_csv(path, x, y):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["p%d" % i for i in range(64)] + ["y"])
        for row, label in zip(x.reshape(len(x), 64), y):
            w.writerow(["%.4g" % v for v in row] + [int(label)])


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    raw = np.loadtxt(gzip.open(DIGITS), delimiter=",")
    x = (raw[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    y = raw[:, 64].astype(int)
    order = np.random.RandomState(0).permutation(len(x))
    x, y = x[order], y[order]
    base_x, base_y = x[:1000], y[:1000]
    user_x, user_y = thick(x[1000:]), y[1000:]

    m = model()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    xt, yt = torch.tensor(base_x, dtype=torch.float32), torch.tensor(base_y)
    for _ in range(15):
        for i in range(0, len(xt), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(m(xt[i:i + 32]), yt[i:i + 32]).backward()
            opt.step()

    save_file(m.state_dict(), os.path.join(HERE, "weights.safetensors"), metadata={"format": "pt"})
    write_csv(os.path.join(HERE, "train.csv"), user_x[:400], user_y[:400])
    write_csv(os.path.join(HERE, "holdout.csv"), user_x[400:], user_y[400:])
    print("pretrained: accuracy %.3f on the original digits it did not see, %.3f on the thick held-out digits"
          % (accuracy(m, x[1000:], y[1000:]), accuracy(m, user_x[400:], user_y[400:])))


if __name__ == "__main__":
    main()
