"""Writes train.csv and holdout.csv of this example from scikit-learn's 8x8 digits.

    /usr/bin/python3 examples/digits-mlp-auto-lr/split.py [path/to/digits.csv.gz]

Data: UCI optdigits as scikit-learn ships them (sklearn/datasets/data/digits.csv.gz, 1,797
images of 64 pixels in 0..16 and a label; Debian's python3-sklearn installs it under
/usr/lib/python3/dist-packages). Pixels are scaled to [0, 1] (/16). The rows are shuffled with
numpy's RandomState(0); the first 1,437 (80%) are train.csv, the other 360 holdout.csv, each with
64 pixel columns p0..p63 and the label y.
"""
import csv
import gzip
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"

with gzip.open(SOURCE, "rt") as f:
    rows = np.array([[float(v) for v in line.split(",")] for line in f if line.strip()])
x, y = rows[:, :64] / 16.0, rows[:, 64].astype(int)
order = np.random.RandomState(0).permutation(len(rows))
cut = int(len(rows) * 0.8)
for name, idx in (("train.csv", order[:cut]), ("holdout.csv", order[cut:])):
    with open(os.path.join(HERE, name), "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([f"p{i}" for i in range(64)] + ["y"])
        for i in idx:
            out.writerow([f"{v:g}" for v in x[i]] + [int(y[i])])
    print(name, len(idx))
