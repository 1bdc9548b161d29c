#!/usr/bin/env python3
"""Reference explanations for the engine's `explain` (issue 18), in plain PyTorch.

    /usr/bin/python3 test/parity/explain.py            # writes fixtures/explain.json
    /usr/bin/python3 test/parity/explain.py --print    # prints the cases, writes nothing

Integrated gradients as Captum's IntegratedGradients computes them
(captum/attr/_core/integrated_gradients.py, captum/attr/_utils/approximation_methods.py):
the points baseline + alpha_k (x - baseline), alpha_k and weights w_k from
numpy.polynomial.legendre.leggauss(n) (alphas 0.5 (1 + x), weights 0.5 w) or Captum's
riemann_trapezoid (linspace(0, 1, n), 1/n halved at both ends); attribution = (x - baseline) *
sum_k w_k df/dx(point_k); delta = sum(attribution) - (f(x) - f(baseline)). For the token model,
x is the output of the token embedding (model[0], as LayerIntegratedGradients on that layer),
replaced through a forward hook, and a token's attribution is the sum over the embedding dim.

Exact Shapley values by enumerating all 2^M coalitions with the interventional value function
v(S) = mean over the background rows b of f(x_S, b_rest), phi_i = sum_S |S|!(M-|S|-1)!/M!
(v(S + i) - v(S)): what KernelSHAP with every coalition (2^M - 2 <= samples) must give.

Everything is computed in float64 from float32 weights and inputs (the reference is the exact
value; the engine's float32 result is compared against it). The models are built by
generate.py's build_model, so their state_dict names are the engine's.
"""
import argparse
import json
import math
import os
import sys
from collections import OrderedDict
from itertools import combinations

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate as g  # noqa: E402  (build_model, write_json, state_to_json)

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "explain.json")


def grid(t, step):
    """Values on a 1/step grid: exact float32 numbers, short JSON."""
    return torch.round(t * step) / step


def ig_points(method, n):
    """Captum's approximation_parameters(method)(n): (alphas, weights)."""
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return [float(a) for a in 0.5 * (1 + x)], [float(v) for v in 0.5 * w]
    alphas = torch.linspace(0, 1, n).tolist()
    weights = [1 / n] * n
    weights[0] /= 2
    weights[-1] /= 2
    return alphas, weights


def output_of(model, x, mask):
    return model(x, mask) if mask is not None else model(x)


def integrated_gradients(model, x, baseline, target, method, n, mask=None, embed_ids=None):
    """One row. Feature rows: x [F]. Token rows: x, baseline the embedding outputs [T, D] of ids embed_ids [T]."""
    alphas, weights = ig_points(method, n)
    a = torch.tensor(alphas, dtype=torch.float64).reshape(-1, *([1] * x.dim()))
    points = (baseline + a * (x - baseline)).detach().requires_grad_(True)
    if embed_ids is None:
        out = model(points)
    else:
        out = with_embedding(model, embed_ids.repeat(n, 1), points, mask.repeat(n, 1))
    grads, = torch.autograd.grad(out[:, target].sum(), points)
    total = (grads * torch.tensor(weights, dtype=torch.float64).reshape(-1, *([1] * x.dim()))).sum(0)
    attribution = total * (x - baseline)
    if embed_ids is None:
        fx, fb = model(x[None])[0, target], model(baseline[None])[0, target]
    else:
        fx = with_embedding(model, embed_ids[None], x[None], mask[None])[0, target]
        fb = with_embedding(model, embed_ids[None], baseline[None], mask[None])[0, target]
    delta = attribution.sum() - (fx - fb)
    per = attribution.sum(-1) if embed_ids is not None else attribution
    return per.tolist(), float(delta), float(fx - fb)


def with_embedding(model, ids, emb, mask):
    """model(ids, mask) with the token embedding's output replaced by emb (Captum's layer hook)."""
    handle = model[0].register_forward_hook(lambda m, i, o: emb)
    try:
        return model(ids, mask)
    finally:
        handle.remove()


def exact_shapley(model, x, background, target):
    M = x.shape[0]
    B = background.shape[0]
    v = {}
    for k in range(M + 1):
        for S in combinations(range(M), k):
            mixed = background.clone()
            mixed[:, list(S)] = x[list(S)]
            v[S] = float(model(mixed)[:, target].mean())
    phi = [0.0] * M
    for S, value in v.items():
        for i in range(M):
            if i in S:
                continue
            with_i = tuple(sorted(S + (i,)))
            s = len(S)
            phi[i] += math.factorial(s) * math.factorial(M - s - 1) / math.factorial(M) * (v[with_i] - value)
    fx = float(model(x[None])[0, target])
    fnull = float(model(background)[:, target].mean())
    return phi, fx, fnull


def mlp_case(seed):
    torch.manual_seed(seed)
    layers = [dict(type="linear", name="fc1", in_features=5, out_features=12), dict(type="tanh"),
              dict(type="linear", name="fc2", in_features=12, out_features=8), dict(type="gelu"),
              dict(type="linear", name="fc3", in_features=8, out_features=3)]
    model = g.build_model(layers)
    x = grid(torch.rand(24, 5) * 4 - 2, 256)
    return layers, model, x


def ig_mlp_cases():
    cases = []
    for name, method, steps, baseline, target in [
        ("mlp_gausslegendre_zeros", "gausslegendre", 128, "zeros", "predicted"),
        ("mlp_gausslegendre_mean", "gausslegendre", 50, "mean", 1),
        ("mlp_trapezoid_row", "riemann_trapezoid", 64, "row", 2),
    ]:
        layers, model, x = mlp_case(11)
        sd = model.state_dict()
        model = model.double()
        X = x.double()
        rows = X[:6]
        if baseline == "zeros":
            b = torch.zeros(5, dtype=torch.float64)
        elif baseline == "mean":
            b = X.mean(0)
        else:
            b = X[-1]
        spec = OrderedDict(method="integrated_gradients", rows=rows.tolist(), target=target,
                           baseline=b.tolist() if baseline == "row" else baseline, steps=steps, integration=method)
        attrs, deltas, changes, targets = [], [], [], []
        for r in range(rows.shape[0]):
            t = int(model(rows[r][None])[0].argmax()) if target == "predicted" else target
            a, d, c = integrated_gradients(model, rows[r], b, t, method, steps)
            attrs.append(a), deltas.append(d), changes.append(c), targets.append(t)
        cases.append(case(name, "IG (%s, %d steps, baseline %s) of a 5-12-8-3 tanh/GELU MLP" % (method, steps, baseline),
                          layers, dict(x=x.tolist(), y=[0] * x.shape[0]), spec, sd,
                          OrderedDict(attributions=attrs, convergence_delta=deltas, output_change=changes, targets=targets)))
    return cases


def ig_encoder_case():
    torch.manual_seed(5)
    layers = [dict(type="embedding", name="emb", num_embeddings=16, embedding_dim=8),
              dict(type="position_embedding", name="pos", num_embeddings=6, embedding_dim=8),
              dict(type="transformer_encoder_layer", name="encoder", d_model=8, nhead=2, dim_feedforward=16, dropout=0.0),
              dict(type="pool", mode="mean"),
              dict(type="linear", name="head", in_features=8, out_features=3)]
    model = g.build_model(layers)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(grid(p, 1024))
    model.eval()
    sd = model.state_dict()
    model = model.double()
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 16, (8, 6), generator=gen)
    lengths = [6, 4, 3, 5, 6, 2, 4, 6]
    mask = torch.zeros(8, 6, dtype=torch.long)
    for r, L in enumerate(lengths):
        mask[r, :L] = 1
        ids[r, L:] = 0
    out = []
    for name, method, steps, baseline in [("encoder_gausslegendre_zeros", "gausslegendre", 128, "zeros"),
                                          ("encoder_trapezoid_mean", "riemann_trapezoid", 50, "mean")]:
        rows = ids[:4]
        embedded = model[0](ids).detach()
        if baseline == "zeros":
            b = torch.zeros(6, 8, dtype=torch.float64)
        else:
            b = embedded.mean(0)  # the training rows' embeddings, as the engine's "mean" for token rows
        attrs, deltas, changes, targets = [], [], [], []
        for r in range(rows.shape[0]):
            logits = model(rows[r][None], mask[r][None])[0]
            t = int(logits.argmax())
            a, d, c = integrated_gradients(model, embedded[r], b, t, method, steps, mask=mask[r], embed_ids=rows[r])
            attrs.append(a), deltas.append(d), changes.append(c), targets.append(t)
        spec = OrderedDict(method="integrated_gradients", rows=rows.tolist(), attention_mask=mask[:4].tolist(),
                           target="predicted", baseline=baseline, steps=steps, integration=method)
        out.append(case(name, "LayerIntegratedGradients on the token embedding (%s, %d steps, baseline %s) of embedding + "
                        "position_embedding + TransformerEncoderLayer + mean pool + linear, padded rows" % (method, steps, baseline),
                        layers, dict(input_ids=ids.tolist(), attention_mask=mask.tolist(), y=[0] * 8), spec, sd,
                        OrderedDict(attributions=attrs, convergence_delta=deltas, output_change=changes, targets=targets)))
    return out


def shap_case():
    torch.manual_seed(23)
    layers = [dict(type="linear", name="fc1", in_features=6, out_features=10), dict(type="tanh"),
              dict(type="linear", name="fc2", in_features=10, out_features=2)]
    model = g.build_model(layers)
    sd = model.state_dict()
    model = model.double()
    x = grid(torch.rand(20, 6, dtype=torch.float64) * 2 - 1, 256)
    background = x[10:18]
    rows = x[:4]
    attrs, targets, fxs, fnulls = [], [], [], []
    for r in range(rows.shape[0]):
        t = 1
        phi, fx, fnull = exact_shapley(model, rows[r], background, t)
        attrs.append(phi), targets.append(t), fxs.append(fx), fnulls.append(fnull)
    spec = OrderedDict(method="kernel_shap", rows=rows.tolist(), target=1, background=background.tolist(), samples=2048, seed=0)
    return [case("mlp6_exact_shapley", "KernelSHAP with all 62 coalitions vs exact Shapley values by enumeration "
                 "(interventional, 8 background rows) of a 6-10-2 tanh MLP", layers, dict(x=x.tolist(), y=[0] * 20), spec, sd,
                 OrderedDict(attributions=attrs, targets=targets, fx=fxs, fnull=fnulls))]


def case(name, description, layers, train, spec, sd, expected):
    return OrderedDict(name=name, description=description,
                       request=OrderedDict(model=OrderedDict(layers=layers), data=OrderedDict(train=train),
                                           training=OrderedDict(loss=OrderedDict(type="cross_entropy")), explain=spec),
                       weights=g.state_to_json(sd), expected=expected)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--print", action="store_true", help="print the cases, write nothing")
    args = ap.parse_args()
    cases = ig_mlp_cases() + ig_encoder_case() + shap_case()
    for c in cases:
        e = c["expected"]
        worst = max((abs(d) / max(abs(ch), 1e-12) for d, ch in zip(e.get("convergence_delta", []), e.get("output_change", []))), default=0)
        print("%-30s rows %d  worst |delta|/|f(x)-f(b)| %.2g" % (c["name"], len(e["attributions"]), worst))
    if not args.print:
        g.write_json(OUT, OrderedDict(generator="test/parity/explain.py", torch_version=torch.__version__, cases=cases))
        print("wrote", OUT)


if __name__ == "__main__":
    main()
