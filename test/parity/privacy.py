#!/usr/bin/env python3
"""Plain-PyTorch reference of DP-SGD (request `privacy`, issue 14) for the parity fixtures
fixtures/privacy.json, with noise_multiplier 0 and poisson_sampling false, where the update is
deterministic.

Opacus is not installable here. The step follows Opacus's published source (pytorch/opacus@4d0ebc8):
opacus/optimizers/optimizer.py DPOptimizer.clip_and_accumulate (flat clipping: the per-sample norm
is the norm of the per-parameter norms, clip factor (max_grad_norm / (norm + 1e-6)).clamp(max=1)),
add_noise (std noise_multiplier * max_grad_norm, 0 here) and scale_grad (loss_reduction "mean":
divided by expected_batch_size = int(N * sample_rate)), then the wrapped optimizer's step. The
per-sample gradients are computed the slow, obvious way: one forward and backward per sample
(the loss of a batch of one, so the "mean" reduction's per-sample gradient).

    /usr/bin/python3 test/parity/privacy.py     # writes fixtures/privacy.json

The models, data and optimizers come from generate.py's builders (the same state_dict names).
"""
import json
import math
import os
import sys
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate as g  # noqa: E402

torch.set_num_threads(1)


def dp_train(request, init_state, dtype):
    tr = request["training"]
    p = request["privacy"]
    model = g.build_request_model(request["model"]).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in init_state.items()})
    params = [prm for _, prm in model.named_parameters()]
    opt = g.make_optimizer(tr["optimizer"], params)
    loss_fn = g.make_loss(tr["loss"], dtype)
    causal = g.hf_task(request) == "causal-lm"
    ds = request["data"]["train"]
    x, mask = g.model_inputs(request, ds, dtype)
    y = g.dataset_targets(request, ds, tr["loss"]["type"], dtype)
    n = g.rows_of(x)
    bs = tr["batch_size"]
    sample_rate = bs / n
    expected_batch = int(n * sample_rate)
    C = p["max_grad_norm"]
    history = []
    steps = 0
    clipped = 0
    total = 0
    for epoch in range(1, tr["epochs"] + 1):
        model.train()
        loss_sum = 0.0
        for lo in range(0, n, bs):
            hi = min(n, lo + bs)
            summed = [torch.zeros_like(prm) for prm in params]
            batch_loss = 0.0
            for i in range(lo, hi):
                model.zero_grad(set_to_none=True)
                xi = g.take(x, i, i + 1)
                mi = None if mask is None else mask[i:i + 1]
                out = g.forward(model, xi, mi)
                yi = y[i:i + 1]
                if causal:  # the logit at t predicts labels[t + 1] (hf.causal_lm_loss), over every token
                    out, yi = out[:, :-1].reshape(-1, out.shape[-1]), yi[:, 1:].reshape(-1)
                loss = loss_fn(out, yi)
                loss.backward()
                batch_loss += float(loss.item())
                grads = [prm.grad.detach().clone() if prm.grad is not None else torch.zeros_like(prm) for prm in params]
                # Opacus: per-parameter norms, then their norm; factor = (C / (norm + 1e-6)).clamp(max=1)
                per_param = torch.stack([gr.reshape(-1).norm(2) for gr in grads])
                norm = per_param.norm(2)
                factor = (C / (norm + 1e-6)).clamp(max=1.0)
                total += 1
                clipped += int(float(factor) < 1.0)
                for s, gr in zip(summed, grads):
                    s.add_(gr * factor)
            for prm, s in zip(params, summed):
                prm.grad = s / expected_batch
            opt.step()
            steps += 1
            # the engine's train_loss: the batch's mean loss, weighted by its rows
            loss_sum += batch_loss
        history.append(OrderedDict(epoch=epoch, train_loss=loss_sum / n, lr=opt.param_groups[0]["lr"]))
    expected = OrderedDict(weights=g.state_to_json(model.state_dict()), history=history, steps=steps, best_epoch=None)
    return expected, clipped / max(1, total)


def dp_case(name, description, layers, data, training, seed, privacy, input=None, huggingface=None):
    c = g.case(name, description, layers=layers, data=data, training=training, seed=seed, input=input, huggingface=huggingface)
    request, init_state, _ = g.realize(c, seed)
    request["privacy"] = OrderedDict(type="dp-sgd", max_grad_norm=privacy, noise_multiplier=0.0, delta=1e-5,
                                     poisson_sampling=False, accountant="rdp", secure_mode=False)
    e32, frac = dp_train(request, init_state, torch.float32)
    e64, _ = dp_train(request, {k: v.double() for k, v in init_state.items()}, torch.float64)
    # float32 against float64: the case is well-conditioned when they agree within a quarter of the tolerance
    worst = 0.0
    for k, t in e32["weights"].items():
        for a, b in zip(t["data"], e64["weights"][k]["data"]):
            worst = max(worst, abs(a - b) / (g.ATOL + g.RTOL * abs(b)))
    assert worst <= g.SHADOW_FRACTION, "%s: float32 and float64 differ by %.2f of the tolerance" % (name, worst)
    assert 0.2 <= frac <= 0.95, "%s: %.2f of the per-sample gradients clipped; pick max_grad_norm so that clipping matters" % (name, frac)
    assert e32["steps"] >= g.MIN_STEPS
    best = min(range(len(e32["history"])), key=lambda i: e32["history"][i]["train_loss"])
    e32["best_epoch"] = e32["history"][best]["epoch"]
    print("%s: %d steps, %.0f%% clipped, float64 deviation %.3f of tolerance" % (name, e32["steps"], 100 * frac, worst))
    return OrderedDict(
        name=name, description=description, request=request,
        initial_weights=g.state_to_json(init_state), expected=e32,
        meta=OrderedDict(init_seed=seed, clipped_fraction=frac, float64_deviation=worst),
    )


def cases():
    T, D = 6, 8
    lin = lambda i, o, name=None: OrderedDict([("type", "linear")] + ([("name", name)] if name else []) +
                                              [("in_features", i), ("out_features", o)])
    return [
        dp_case("mlp_sgd", "an MLP 6-8-1 (tanh) on MSE, SGD; 60 rows in batches of 8 (a partial last batch), max_grad_norm 0.5",
                layers=g.mlp(act={"type": "tanh"}), data=dict(d_in=6, n_train=60),
                training=dict(epochs=14, batch_size=8, loss={"type": "mse"}, optimizer={"type": "sgd", "lr": 0.05}),
                seed=901, privacy=0.5),
        dp_case("mlp_adam_ce", "an MLP 6-8-3 (GELU, fc1 without bias) on cross-entropy, Adam; max_grad_norm 1",
                layers=g.mlp(k=3, act={"type": "gelu"}, bias1=False), data=dict(d_in=6, n_train=64, task="class", k=3),
                training=dict(epochs=13, batch_size=8, loss={"type": "cross_entropy"}, optimizer={"type": "adam", "lr": 0.01}),
                seed=902, privacy=1.0),
        dp_case("cnn", "a CNN: conv2d 1->3 3x3 (padding 1), tanh, avg_pool2d 2, flatten, linear; cross-entropy, Adam",
                input=[1, 6, 6],
                layers=[OrderedDict(type="conv2d", name="conv", in_channels=1, out_channels=3, kernel_size=3, padding=1),
                        {"type": "tanh"}, OrderedDict(type="avg_pool2d", kernel_size=2), {"type": "flatten"}, lin(27, 3, "head")],
                data=dict(d_in=36, n_train=32, task="class", k=3),
                training=dict(epochs=26, batch_size=8, loss={"type": "cross_entropy"}, optimizer={"type": "adam", "lr": 0.01}),
                seed=903, privacy=0.5),
        dp_case("encoder", "token ids with padding: embedding, position_embedding, a TransformerEncoderLayer (2 heads, "
                "layer norms, dropout 0) given the mask, mean pooling, a 3-class head; SGD with momentum",
                layers=[OrderedDict(type="embedding", name="emb", num_embeddings=16, embedding_dim=D),
                        OrderedDict(type="position_embedding", name="pos", num_embeddings=T, embedding_dim=D),
                        OrderedDict(type="transformer_encoder_layer", name="encoder", d_model=D, nhead=2, dim_feedforward=16, dropout=0.0),
                        OrderedDict(type="pool", mode="mean"), lin(D, 3, "head")],
                data=dict(task="tokens", n_train=64, T=T, vocab=16, k=3),
                training=dict(epochs=13, batch_size=8, loss={"type": "cross_entropy"}, optimizer={"type": "sgd", "lr": 0.05, "momentum": 0.9}),
                seed=904, privacy=0.5),
        # a tied parameter: GPT-2's lm_head is wte itself, so each sample's wte gradient is the sum of the
        # embedding's and the lm_head's, and its norm has their cross term (autograd sums them here)
        dp_case("gpt2_tied", "GPT2LMHeadModel (n_embd 16, 2 layers, 4 heads) with lm_head tied to wte, trainable: "
                "per-sample norms of wte sum both uses; full-length rows of 8 tokens (no padding), causal-LM "
                "cross-entropy over every token, SGD",
                layers=None, huggingface=g.hf_model(g.hf_gpt2(), "causal-lm"),
                data=dict(task="hf_lm", n_train=32, T=8, vocab=24, min_len=8),
                training=dict(epochs=25, batch_size=8, loss={"type": "cross_entropy"}, optimizer={"type": "sgd", "lr": 0.05}),
                seed=905, privacy=4.5),
    ]


def main():
    out = OrderedDict(generator="test/parity/privacy.py", torch=torch.__version__, cases=cases())
    path = os.path.join(g.FIXTURES, "privacy.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
