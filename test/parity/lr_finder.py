#!/usr/bin/env python3
"""Reference learning-rate range tests (lr "auto", issue 15), in plain PyTorch: fastai's
`Learner.lr_find` transcribed (fastai/callback/schedule.py: LRFinder, SchedExp; fastai/learner.py:
AvgSmoothLoss, Recorder), with the suggestion rule of docs/strategy.md.

    /usr/bin/python3 test/parity/lr_finder.py            # writes fixtures/lr_finder.json
    /usr/bin/python3 test/parity/lr_finder.py --print    # prints the cases, writes nothing

Per step i (0-based): every param group's lr = 1e-7 * (10 / 1e-7) ** (i / 100) (SchedExp at
pos = train_iter / num_it); one batch (rows in order, passes repeated: shuffle is off in these
cases so that the order is the engine's); zero_grad, backward, step; then AvgSmoothLoss:
val = torch.lerp(loss, val, 0.98) in float32, smooth = val / (1 - 0.98 ** count); Recorder appends
(lr, smooth); LRFinder stops when smooth > 4 * best (best the lowest smooth so far) or after 100
steps. The suggestion: lrs[10:-5] and losses[10:-5] (lr_find's num_it // 10 and skip_end 5);
`steep`, argmin of diff(losses) / diff(log(lrs)) in float32 as fastai computes it on tensors;
when that slope is not negative, or the window has fewer than 2 points, `minimum`: a tenth of the
rate at the lowest loss (of the window, or of the whole curve when the window is empty).
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate as g  # noqa: E402  (build_model, make_loss, make_optimizer, make_data, state_to_json, write_json)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "lr_finder.json")

START, END, NUM_IT, BETA = 1e-7, 10.0, 100, 0.98

ADAM = OrderedDict(type="adam", lr="auto", betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False)
ADAMW = OrderedDict(type="adamw", lr="auto", betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, amsgrad=False, maximize=False)
SGD = OrderedDict(type="sgd", lr="auto", momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False)


def mlp(d_in, hidden, out, act="relu"):
    return [
        OrderedDict(type="linear", name="fc1", in_features=d_in, out_features=hidden),
        OrderedDict(type=act),
        OrderedDict(type="linear", name="fc2", in_features=hidden, out_features=out),
    ]


CASES = [
    # name, layers, data (make_data args), loss, optimizer, batch size
    ("adam_cross_entropy", mlp(6, 16, 3), dict(seed=11, task="class", n_train=96, k=3), OrderedDict(type="cross_entropy"), ADAM, 16),
    ("sgd_momentum_mse", mlp(6, 12, 1, "tanh"), dict(seed=12, task="regression", n_train=64), OrderedDict(type="mse"), SGD, 32),
    ("adamw_bce_partial_batches", mlp(6, 8, 1), dict(seed=13, task="binary", n_train=60), OrderedDict(type="bce_with_logits"), ADAMW, 8),
]


def loss_spec(spec):
    full = {
        "mse": OrderedDict(type="mse"),
        "cross_entropy": OrderedDict(type="cross_entropy", weight=None, ignore_index=-100, label_smoothing=0.0),
        "bce_with_logits": OrderedDict(type="bce_with_logits", pos_weight=None),
    }
    return full[spec["type"]]


def range_test(model, opt, loss_fn, x, y, batch):
    lrs, losses = [], []
    val = torch.tensor(0.0)
    best = float("inf")
    n = x.shape[0]
    starts = list(range(0, n, batch))
    i = 0
    while i < NUM_IT:
        for s in starts:
            lr = START * (END / START) ** (i / NUM_IT)
            for group in opt.param_groups:
                group["lr"] = lr
            out = model(x[s:s + batch])
            loss = loss_fn(out, y[s:s + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            i += 1
            val = torch.lerp(loss.detach().mean(), val, BETA)
            smooth = val / (1 - BETA ** i)
            if not math.isfinite(float(smooth)):
                return lrs, losses  # lr_find drops NaN points
            lrs.append(lr)
            losses.append(float(smooth))
            if float(smooth) < best:
                best = float(smooth)
            if float(smooth) > 4 * best or i >= NUM_IT:
                return lrs, losses
    return lrs, losses


def suggest(lrs, losses):
    lo, hi = NUM_IT // 10, len(losses) - 5
    wl = torch.tensor(lrs[lo:hi]) if lo < hi else torch.tensor([])
    wv = torch.tensor(losses[lo:hi]) if lo < hi else torch.tensor([])
    if len(wl) >= 2:
        grads = (wv[1:] - wv[:-1]) / (wl[1:].log() - wl[:-1].log())
        idx = int(grads.argmin())
        if float(grads[idx]) < 0:
            return OrderedDict(index=lo + idx, method="steep")
    if len(wl) > 0:
        return OrderedDict(index=lo + int(wv.argmin()), method="minimum")
    return OrderedDict(index=int(torch.tensor(losses).argmin()), method="minimum")


def run_case(name, layers, data_args, loss, optimizer, batch):
    torch.manual_seed(sum(map(ord, name)))
    model = g.build_model(layers)
    state = g.state_to_json(model.state_dict())
    data = g.make_data(**data_args)
    x = torch.tensor(data["train"]["x"], dtype=torch.float32)
    lt = loss["type"]
    if lt == "cross_entropy":
        y = torch.tensor(data["train"]["y"], dtype=torch.long)
    else:
        y = torch.tensor(data["train"]["y"], dtype=torch.float32).reshape(-1, 1)
    spec = dict(optimizer, lr=START)
    opt = g.make_optimizer(spec, list(model.parameters()))
    lrs, losses = range_test(model, opt, g.make_loss(loss_spec(loss), torch.float32), x, y, batch)
    request = OrderedDict(
        model=OrderedDict(layers=layers),
        data=data,
        training=OrderedDict(epochs=1, batch_size=batch, shuffle=False, seed=0, loss=loss, optimizer=optimizer),
    )
    return OrderedDict(name=name, request=request, weights=state,
                       expected=OrderedDict(lrs=lrs, losses=losses, suggestion=suggest(lrs, losses)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--print", action="store_true")
    args = parser.parse_args()
    cases = [run_case(*c) for c in CASES]
    for c in cases:
        e = c["expected"]
        s = e["suggestion"]
        print("%-28s %3d steps, suggestion %s at %d: lr %.4g" % (c["name"], len(e["lrs"]), s["method"], s["index"], e["lrs"][s["index"]] / (10 if s["method"] == "minimum" else 1)))
    if not args.print:
        g.write_json(OUT, OrderedDict(torch=torch.__version__, cases=cases))
        print("wrote", OUT)


if __name__ == "__main__":
    main()
