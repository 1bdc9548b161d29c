#!/usr/bin/env python3
"""Generate the PyTorch parity fixtures under test/parity/fixtures/.

Run with the interpreter that has PyTorch 1.13 (Debian's python3-torch):

    /usr/bin/python3 test/parity/generate.py            # all groups
    /usr/bin/python3 test/parity/generate.py --only adam_amsgrad,l1   # print only, write nothing

Every case is trained with PyTorch's own nn / optim / lr_scheduler classes, in float32,
on one thread, with the training-loop semantics that edgetune implements (see
test/parity/README.md). Each case is also re-run in float64 from the same initial
weights, and a case is only accepted when it is well conditioned: the float64 run agrees
with the float32 run to within a quarter of the parity tolerance, every discrete decision
(ReLU/L1/hinge kinks, argmax for accuracy, plateau / early-stopping / best-epoch
comparisons) has a safe margin, and nothing is NaN. A case that fails is retried with
another seed (the seed used is recorded); a case that never passes aborts the script.
"""
import argparse
import copy
import json
import math
import os
import sys
import warnings
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import huggingface as hf  # noqa: E402  (the plain-PyTorch Hugging Face references, next to this file)
import lora  # noqa: E402  (the plain-PyTorch reference of PEFT's LoRA, next to this file)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
GENERATOR = "test/parity/generate.py"

# The parity tolerance of SPEC section 4: |a-b| <= ATOL + RTOL*|b|.
ATOL, RTOL = 1e-5, 1e-4
# A case is accepted when float32 and float64 runs agree within this fraction of it.
SHADOW_FRACTION = 0.25
# Minimum distance of any gradient kink (ReLU input, L1 residual, hinge margin, ...) from 0.
KINK_MARGIN = 1e-5
# Minimum distance of logits from an accuracy decision (argmax gap, logit sign).
ACC_MARGIN = 1e-4
# Minimum relative margin of plateau / early-stopping / best-epoch comparisons.
DECISION_MARGIN = 2e-5
MIN_STEPS = 100

CLASS_LOSSES = ("cross_entropy", "multi_margin")
BINARY_LOSSES = ("bce_with_logits", "hinge")

# --------------------------------------------------------------------------- defaults
# The explicit values written into every request (they equal PyTorch's defaults and the
# schema's defaults, but the fixtures never rely on defaults).

OPT_DEFAULTS = {
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False),
    "adam": dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False),
    "adamw": dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, maximize=False),
}
LOSS_DEFAULTS = {
    "mse": {},
    "l1": {},
    "huber": dict(delta=1.0),
    "smooth_l1": dict(beta=1.0),
    "cross_entropy": dict(weight=None, ignore_index=-100, label_smoothing=0.0),
    "bce_with_logits": dict(pos_weight=None),
    "hinge": {},
    "multi_margin": dict(p=1, margin=1.0, weight=None),
}
SCHED_DEFAULTS = {
    "constant": dict(factor=1.0, total_iters=5),
    "step": dict(gamma=0.1),
    "multistep": dict(gamma=0.1),
    "exponential": {},
    "cosine": dict(eta_min=0.0),  # T_max: derived when absent
    "linear": dict(start_factor=1.0 / 3, end_factor=1.0, total_iters=5),
    "onecycle": dict(pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                     max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False),
    "plateau": dict(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                    cooldown=0, min_lr=0.0, eps=1e-8),
    "sequential": {},
}
ES_DEFAULTS = dict(monitor="val_loss", patience=3, min_delta=0.0, mode="auto", restore_best_weights=True)


def with_defaults(defaults, spec):
    out = dict(type=spec["type"])
    out.update(copy.deepcopy(defaults[spec["type"]]))
    out.update(copy.deepcopy(spec))
    return out


def full_schedule(spec):
    s = with_defaults(SCHED_DEFAULTS, spec)
    if s["type"] == "sequential":
        s["schedulers"] = [with_defaults(SCHED_DEFAULTS, sub) for sub in s["schedulers"]]
    if "interval" not in s:
        s["interval"] = "step" if s["type"] == "onecycle" else "epoch"
    if s["type"] == "plateau":
        assert s["interval"] == "epoch"
    return s


def full_training(t):
    t = copy.deepcopy(t)
    out = OrderedDict()
    out["epochs"] = t.pop("epochs")
    out["batch_size"] = t.pop("batch_size", 8)
    out["shuffle"] = False
    out["drop_last"] = t.pop("drop_last", False)
    out["seed"] = t.pop("seed")
    loss = t.pop("loss", None)
    if loss is not None:  # absent: a Hugging Face head picks its own (task_loss)
        out["loss"] = with_defaults(LOSS_DEFAULTS, loss)
    out["optimizer"] = with_defaults(OPT_DEFAULTS, t.pop("optimizer"))
    out["schedule"] = full_schedule(t.pop("schedule", {"type": "constant"}))
    clip = t.pop("clip_grad_norm", None)
    if isinstance(clip, dict):
        clip = dict(dict(norm_type=2, error_if_nonfinite=False), **clip)
    out["clip_grad_norm"] = clip
    es = t.pop("early_stopping", None)
    out["early_stopping"] = dict(ES_DEFAULTS, **es) if es is not None else None
    assert not t, "unknown training fields: %r" % (t,)
    return out


# --------------------------------------------------------------------------- data

def q(a, step):
    """Round to a binary grid: exact in float32 and short in JSON."""
    return np.round(np.asarray(a, dtype=np.float64) / step) * step


def make_data(seed, task, n_train=64, n_val=0, d_in=6, k=1, noise=0.1, ignore=None, hidden=8, labels01=True):
    """x ~ N(0,1) (on a 1/256 grid), targets from a random tanh teacher network plus noise.

    task: regression (float targets, 1/1024 grid) | class (argmax of k teacher outputs) |
    binary (k 0/1 labels, or -1/+1 when labels01 is False).
    ignore: (label, every) relabels rows i with i % every == 3 to `label` (class tasks).
    """
    rs = np.random.RandomState(seed)
    n = n_train + n_val
    x = q(rs.randn(n, d_in), 1.0 / 256)
    w1 = rs.randn(d_in, hidden) / math.sqrt(d_in)
    b1 = 0.3 * rs.randn(hidden)
    w2 = rs.randn(hidden, k) * (1.5 / math.sqrt(hidden))
    t = np.tanh(x @ w1 + b1) @ w2 + noise * rs.randn(n, k)
    if task == "regression":
        yv = q(t, 1.0 / 1024)
        y = [float(v[0]) for v in yv] if k == 1 else [[float(a) for a in v] for v in yv]
    elif task == "class":
        lab = np.argmax(t, axis=1)
        y = [int(v) for v in lab]
        if ignore is not None:
            label, every = ignore
            for i in range(n):
                if i % every == 3:
                    y[i] = label
    elif task == "binary":
        pos = t > np.median(t, axis=0, keepdims=True) * 0.5
        neg = 0 if labels01 else -1
        yv = np.where(pos, 1, neg)
        y = [int(v[0]) for v in yv] if k == 1 else [[int(a) for a in v] for v in yv]
    else:
        raise ValueError(task)
    xs = [[float(a) for a in row] for row in x]
    data = OrderedDict(train=OrderedDict(x=xs[:n_train], y=y[:n_train]))
    if n_val:
        data["validation"] = OrderedDict(x=xs[n_train:], y=y[n_train:])
    return data


def make_token_data(seed, n_train=64, n_val=0, T=6, vocab=16, k=3, per_token=False, mask=True, min_len=2,
                    hidden=6, noise=0.3, task="tokens"):
    """Token rows: ids uniform in [1, vocab), right-padded with id 0 to T (lengths uniform in
    [min_len, T]), with the attention mask when `mask`; without a mask every row is full length.
    Labels from a random teacher: an embedding table E [vocab, hidden] and a projection W
    [hidden, k]; per sample the argmax of mean(E[ids]) W + noise, or per token (per_token) the
    argmax of E[id] W + noise, with -100 (ignore_index) on padding."""
    assert task == "tokens"
    rs = np.random.RandomState(seed)
    n = n_train + n_val
    emb = rs.randn(vocab, hidden)
    w = rs.randn(hidden, k)
    ids, masks, ys = [], [], []
    for _ in range(n):
        length = int(rs.randint(min_len, T + 1)) if mask else T
        row = [int(v) for v in rs.randint(1, vocab, size=length)] + [0] * (T - length)
        ids.append(row)
        masks.append([1] * length + [0] * (T - length))
        if per_token:
            logits = emb[row[:length]] @ w + noise * rs.randn(length, k)
            ys.append([int(v) for v in np.argmax(logits, axis=1)] + [-100] * (T - length))
        else:
            logits = emb[row[:length]].mean(0) @ w + noise * rs.randn(k)
            ys.append(int(np.argmax(logits)))

    def part(a, b):
        d = OrderedDict(input_ids=ids[a:b])
        if mask:
            d["attention_mask"] = masks[a:b]
        d["y"] = ys[a:b]
        return d

    data = OrderedDict(train=part(0, n_train))
    if n_val:
        data["validation"] = part(n_train, n)
    return data


def make_lm_data(seed, n_train=64, n_val=0, T=8, vocab=12, min_len=4, task="lm"):
    """Next-token prediction: sequences from a random first-order Markov chain over ids [1, vocab)
    (each id prefers a few successors), right-padded with id 0 to T, with the attention mask; the
    target of token t is token t+1, and -100 (ignore_index) after the last real token."""
    assert task == "lm"
    rs = np.random.RandomState(seed)
    logits = 2.5 * rs.randn(vocab, vocab)
    logits[:, 0] = -np.inf  # never the padding id
    trans = np.exp(logits - logits.max(1, keepdims=True))
    trans /= trans.sum(1, keepdims=True)
    ids, masks, ys = [], [], []
    for _ in range(n_train + n_val):
        length = int(rs.randint(min_len, T + 1))
        row = [int(rs.randint(1, vocab))]
        while len(row) < length:
            row.append(int(rs.choice(vocab, p=trans[row[-1]])))
        ids.append(row + [0] * (T - length))
        masks.append([1] * length + [0] * (T - length))
        ys.append(row[1:] + [-100] * (T - length + 1))
    part = lambda a, b: OrderedDict(input_ids=ids[a:b], attention_mask=masks[a:b], y=ys[a:b])
    data = OrderedDict(train=part(0, n_train))
    if n_val:
        data["validation"] = part(n_train, n_train + n_val)
    return data


def make_hf_cls_data(seed, n_train=64, n_val=0, T=8, vocab=30, k=3, min_len=4, pairs=False, hidden=6, noise=0.3,
                     task="hf_cls", labels="class"):
    """Sequence classification rows as a BERT tokenizer gives them, with the ids of a tiny vocabulary:
    0 = [PAD], 1 = [CLS], 2 = [SEP], words uniform in [3, vocab). A row is `[CLS] a [SEP]`, or with
    `pairs` `[CLS] a [SEP] b [SEP]` with token_type_ids 0 up to the first [SEP] and 1 after it;
    lengths uniform in [min_len, T], right-padded with 0 (token type 0, attention_mask 0). Labels
    from a random teacher: the argmax over k of mean(E[a]) W_a (+ mean(E[b]) W_b with pairs) + noise;
    with labels="multi" the k values (score + noise > 0) as floats (multi-hot rows), with labels="value"
    the first score + noise (one float per row: regression)."""
    assert task == "hf_cls"
    rs = np.random.RandomState(seed)
    emb = rs.randn(vocab, hidden)
    wa, wb = rs.randn(hidden, k), rs.randn(hidden, k)
    ids, masks, types, ys = [], [], [], []
    for _ in range(n_train + n_val):
        length = int(rs.randint(min_len, T + 1))
        if pairs:
            la = int(rs.randint(1, length - 3))  # both segments at least one word
            lb = length - 3 - la
            a, b = [int(v) for v in rs.randint(3, vocab, size=la)], [int(v) for v in rs.randint(3, vocab, size=lb)]
            row = [1] + a + [2] + b + [2]
            tt = [0] * (la + 2) + [1] * (lb + 1)
            score = emb[a].mean(0) @ wa + emb[b].mean(0) @ wb
        else:
            a = [int(v) for v in rs.randint(3, vocab, size=length - 2)]
            row, tt = [1] + a + [2], [0] * length
            score = emb[a].mean(0) @ wa
        ids.append(row + [0] * (T - length))
        masks.append([1] * length + [0] * (T - length))
        types.append(tt + [0] * (T - length))
        noisy = score + noise * rs.randn(k)
        if labels == "multi":
            ys.append([float(v > 0) for v in noisy])
        elif labels == "value":
            ys.append(float(noisy[0]))
        else:
            ys.append(int(np.argmax(noisy)))

    def part(lo, hi):
        d = OrderedDict(input_ids=ids[lo:hi], attention_mask=masks[lo:hi])
        if pairs:
            d["token_type_ids"] = types[lo:hi]
        d["y"] = ys[lo:hi]
        return d

    data = OrderedDict(train=part(0, n_train))
    if n_val:
        data["validation"] = part(n_train, n_train + n_val)
    return data


def make_hf_lm_data(seed, n_train=64, n_val=0, T=8, vocab=24, min_len=4, first_id=1, task="hf_lm"):
    """Causal-LM rows without `y` (the labels are input_ids with padding set to -100): sequences of a
    random first-order Markov chain over ids [first_id, vocab) (each id prefers a few successors),
    lengths uniform in [min_len, T], right-padded with id 0 and attention_mask 0."""
    assert task == "hf_lm"
    rs = np.random.RandomState(seed)
    logits = 2.5 * rs.randn(vocab, vocab)
    logits[:, :first_id] = -np.inf
    trans = np.exp(logits - logits.max(1, keepdims=True))
    trans /= trans.sum(1, keepdims=True)
    ids, masks = [], []
    for _ in range(n_train + n_val):
        length = int(rs.randint(min_len, T + 1))
        row = [int(rs.randint(first_id, vocab))]
        while len(row) < length:
            row.append(int(rs.choice(vocab, p=trans[row[-1]])))
        ids.append(row + [0] * (T - length))
        masks.append([1] * length + [0] * (T - length))
    part = lambda lo, hi: OrderedDict(input_ids=ids[lo:hi], attention_mask=masks[lo:hi])
    data = OrderedDict(train=part(0, n_train))
    if n_val:
        data["validation"] = part(n_train, n_train + n_val)
    return data


# --------------------------------------------------------------------------- model / loss / optim

def layer_name(i, layer):
    return layer.get("name", str(i))


class Sequential(nn.Sequential):
    """nn.Sequential that hands the attention mask (1 = token, 0 = padding) to the children that
    take one (their `takes_mask` is True). Its state_dict keys are nn.Sequential's."""

    def forward(self, x, mask=None):
        for m in self:
            x = m(x, mask) if getattr(m, "takes_mask", False) else m(x)
        return x

    takes_mask = True


class Residual(Sequential):
    """x + f(x), f = the Sequential of its layers (edgetune's `residual`)."""

    def forward(self, x, mask=None):
        return x + super().forward(x, mask)


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention(batch_first=True) used as self-attention (edgetune's
    `multihead_attention`): attn(x, x, x, key_padding_mask=(mask == 0), attn_mask=causal mask)[0].
    A subclass rather than a wrapper, so its state_dict keys are nn.MultiheadAttention's
    (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias)."""

    takes_mask = True

    def __init__(self, L):
        super().__init__(L["embed_dim"], L["num_heads"], dropout=L.get("dropout", 0.0), bias=L.get("bias", True),
                         batch_first=True)
        self.causal = L.get("causal", False)

    def forward(self, x, mask=None):
        T = x.shape[1]
        # nn.Transformer.generate_square_subsequent_mask(T), in the input's dtype (float64 shadow runs)
        causal = torch.triu(torch.full((T, T), float("-inf"), dtype=x.dtype), diagonal=1) if self.causal else None
        kpm = None if mask is None else (mask == 0)
        return super().forward(x, x, x, key_padding_mask=kpm, attn_mask=causal, need_weights=False)[0]


class EncoderLayer(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer(batch_first=True) (edgetune's `transformer_encoder_layer`): the data's
    mask as src_key_padding_mask (mask == 0), `causal` as src_mask = generate_square_subsequent_mask(T).
    A subclass, so its state_dict keys are PyTorch's (self_attn.*, linear1.*, linear2.*, norm1.*, norm2.*)."""

    takes_mask = True

    def __init__(self, L):
        super().__init__(L["d_model"], L["nhead"], dim_feedforward=L.get("dim_feedforward", 2048),
                         dropout=L.get("dropout", 0.1), activation=L.get("activation", "relu"),
                         layer_norm_eps=L.get("layer_norm_eps", 1e-5), batch_first=True,
                         norm_first=L.get("norm_first", False))
        self.causal = L.get("causal", False)

    def forward(self, x, mask=None):
        T = x.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf"), dtype=x.dtype), diagonal=1) if self.causal else None
        kpm = None if mask is None else (mask == 0)
        return super().forward(x, src_mask=causal, src_key_padding_mask=kpm)


class RMSNorm(nn.Module):
    """torch.nn.RMSNorm (torch >= 2.4; 1.13 lacks it) in plain PyTorch, as its docs define it:
    y = x * rsqrt(mean(x^2 over the normalized dims) + eps) * weight, eps None meaning
    torch.finfo(float32).eps (the float32 run's eps: the float64 shadow run keeps it, so that
    both runs compute the same function)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None

    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        eps = self.eps if self.eps is not None else torch.finfo(torch.float32).eps
        y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return y * self.weight if self.weight is not None else y


def batch_norm(cls, L):
    return cls(L["num_features"], eps=L.get("eps", 1e-5), momentum=L.get("momentum", 0.1), affine=L.get("affine", True),
               track_running_stats=L.get("track_running_stats", True))


def build_layers(layers):
    return OrderedDict((layer_name(i, L), build_module(L)) for i, L in enumerate(layers))


class PositionEmbedding(nn.Module):
    """edgetune's position_embedding: learned positions added to the input, x + weight[:T], with
    weight [num_embeddings, embedding_dim] initialised as nn.Embedding's (normal_(0, 1))."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))
        nn.init.normal_(self.weight)

    def forward(self, x):
        return x + self.weight[: x.shape[1]]


class Pool(nn.Module):
    """edgetune's pool: [N, T, D] -> [N, D] over the tokens whose mask is 1 (every token without a
    mask): mean = sum / count, max (the gradient goes to the first maximum, as torch.max(dim)
    returns it), cls = token 0, last = the last token with mask 1."""

    takes_mask = True

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x, mask=None):
        n, t = x.shape[0], x.shape[1]
        if mask is None:
            mask = torch.ones(n, t, dtype=x.dtype)
        if self.mode == "mean":
            return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        if self.mode == "max":
            return x.masked_fill(mask[..., None] == 0, float("-inf")).max(dim=1).values
        if self.mode == "cls":
            return x[:, 0]
        last = (mask * torch.arange(t, dtype=mask.dtype)).argmax(1)
        return x[torch.arange(n), last]


# One factory per layer type: the PyTorch module that an edgetune layer spec describes, with
# PyTorch's names and defaults. A layer family adds its entries here.
MODULES = {
    "linear": lambda L: nn.Linear(L["in_features"], L["out_features"], bias=L.get("bias", True)),
    "relu": lambda L: nn.ReLU(),
    "leaky_relu": lambda L: nn.LeakyReLU(L.get("negative_slope", 0.01)),
    "gelu": lambda L: nn.GELU(approximate=L.get("approximate", "none")),
    "tanh": lambda L: nn.Tanh(),
    "sigmoid": lambda L: nn.Sigmoid(),
    "silu": lambda L: nn.SiLU(),
    "mish": lambda L: nn.Mish(),
    "dropout": lambda L: nn.Dropout(L.get("p", 0.5)),
    "flatten": lambda L: nn.Flatten(L.get("start_dim", 1), L.get("end_dim", -1)),
    "sequential": lambda L: Sequential(build_layers(L["layers"])),
    "residual": lambda L: Residual(build_layers(L["layers"])),
    "multihead_attention": SelfAttention,
    "transformer_encoder_layer": EncoderLayer,
    "layer_norm": lambda L: nn.LayerNorm(L["normalized_shape"], eps=L.get("eps", 1e-5),
                                         elementwise_affine=L.get("elementwise_affine", True)),
    "rms_norm": lambda L: RMSNorm(L["normalized_shape"], eps=L.get("eps"), elementwise_affine=L.get("elementwise_affine", True)),
    "batch_norm1d": lambda L: batch_norm(nn.BatchNorm1d, L),
    "batch_norm2d": lambda L: batch_norm(nn.BatchNorm2d, L),
    "embedding": lambda L: nn.Embedding(L["num_embeddings"], L["embedding_dim"], padding_idx=L.get("padding_idx")),
    "position_embedding": lambda L: PositionEmbedding(L["num_embeddings"], L["embedding_dim"]),
    "pool": lambda L: Pool(L.get("mode", "mean")),
    "conv1d": lambda L: conv_module(nn.Conv1d, L),
    "conv2d": lambda L: conv_module(nn.Conv2d, L),
    "max_pool1d": lambda L: max_pool_module(nn.MaxPool1d, L),
    "max_pool2d": lambda L: max_pool_module(nn.MaxPool2d, L),
    "avg_pool1d": lambda L: nn.AvgPool1d(tup(L["kernel_size"]), stride=tup(L.get("stride")), padding=tup(L.get("padding", 0)),
                                         ceil_mode=L.get("ceil_mode", False), count_include_pad=L.get("count_include_pad", True)),
    "avg_pool2d": lambda L: nn.AvgPool2d(tup(L["kernel_size"]), stride=tup(L.get("stride")), padding=tup(L.get("padding", 0)),
                                         ceil_mode=L.get("ceil_mode", False), count_include_pad=L.get("count_include_pad", True),
                                         divisor_override=L.get("divisor_override")),
    "adaptive_avg_pool1d": lambda L: nn.AdaptiveAvgPool1d(tup(L["output_size"])),
    "adaptive_avg_pool2d": lambda L: nn.AdaptiveAvgPool2d(tup(L["output_size"])),
}


def tup(v):
    """A JSON list argument as the tuple torch takes (ints, strings and None pass through)."""
    return tuple(v) if isinstance(v, list) else v


def conv_module(cls, L):
    return cls(L["in_channels"], L["out_channels"], tup(L["kernel_size"]), stride=tup(L.get("stride", 1)),
               padding=tup(L.get("padding", 0)), dilation=tup(L.get("dilation", 1)), groups=L.get("groups", 1),
               bias=L.get("bias", True), padding_mode=L.get("padding_mode", "zeros"))


def max_pool_module(cls, L):
    return cls(tup(L["kernel_size"]), stride=tup(L.get("stride")), padding=tup(L.get("padding", 0)),
               dilation=tup(L.get("dilation", 1)), ceil_mode=L.get("ceil_mode", False))


def max_pool_margin(m, x):
    """The smallest gap between the largest and the second largest tap of any window of a max
    pool (its kink: the gradient goes to the argmax). Exact ties of zeros (ReLU outputs) are
    left out: the ReLU before the pool sends no gradient through them whichever wins."""
    x = x.detach()
    if isinstance(m, nn.MaxPool1d):
        x = x.unsqueeze(-2)
        pair = lambda v: (1, v[0] if isinstance(v, tuple) else v)
        k, s, p, d = pair(m.kernel_size), pair(m.stride), (0, pair(m.padding)[1]), pair(m.dilation)
    else:
        pair = lambda v: v if isinstance(v, tuple) else (v, v)
        k, s, p, d = pair(m.kernel_size), pair(m.stride), pair(m.padding), pair(m.dilation)
    if k[0] * k[1] < 2:
        return math.inf
    x = x.reshape(-1, 1, x.shape[-2], x.shape[-1])
    H, W = x.shape[-2:]
    out = torch.nn.functional.max_pool2d(x, k, s, p, d, ceil_mode=m.ceil_mode)
    OH, OW = out.shape[-2:]
    # -inf padding, enough on the bottom and right for ceil_mode's last windows
    extra = [max(0, (o - 1) * st + dd * (kk - 1) + 1 - n - pp) for o, st, dd, kk, n, pp in
             ((OH, s[0], d[0], k[0], H, p[0]), (OW, s[1], d[1], k[1], W, p[1]))]
    xp = torch.nn.functional.pad(x, (p[1], extra[1], p[0], extra[0]), value=-math.inf)
    cols = torch.nn.functional.unfold(xp, k, dilation=d, stride=s)  # [planes, taps, windows]
    lh = (xp.shape[-2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    lw = (xp.shape[-1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    cols = cols.reshape(cols.shape[0], cols.shape[1], lh, lw)[:, :, :OH, :OW]
    top = cols.topk(2, dim=1).values
    gap = top[:, 0] - top[:, 1]
    relu_tie = (top[:, 0] == 0) & (top[:, 1] == 0)
    gap = gap[~relu_tie & torch.isfinite(gap)]
    return float(gap.min()) if gap.numel() else math.inf


def build_module(L):
    return MODULES[L["type"]](L)


def build_model(layers):
    return Sequential(build_layers(layers))


def build_request_model(model):
    """The PyTorch model of a request's `model`: a layer list, or `huggingface: {config, task}` (the
    plain-PyTorch reference of test/parity/huggingface.py, with Hub state_dict names)."""
    if "huggingface" in model:
        spec = model["huggingface"]
        m = hf.build(spec["config"])
        assert m.config.task == spec["task"], "task %r for %s" % (spec["task"], m.config.architecture)
        return m
    return build_model(model["layers"])


def hf_task(request):
    return request["model"].get("huggingface", {}).get("task")


def model_inputs(request, ds, dtype):
    """The model's input tensors for a dataset: x (reshaped to model.input.shape) or token ids, and the mask.
    A Hugging Face model's x is the tuple (input_ids, token_type_ids) when the data has token_type_ids."""
    shape = request["model"].get("input", {}).get("shape")
    if hf_task(request) is not None:
        x = torch.tensor(ds["input_ids"], dtype=torch.long)
        mask = torch.tensor(ds["attention_mask"], dtype=dtype) if "attention_mask" in ds else None
        if "token_type_ids" in ds:
            x = (x, torch.tensor(ds["token_type_ids"], dtype=torch.long))
        return x, mask
    if "input_ids" in ds:
        x = torch.tensor(ds["input_ids"], dtype=torch.long)
        mask = torch.tensor(ds["attention_mask"], dtype=dtype) if "attention_mask" in ds else None
        return x, mask
    x = torch.tensor(np.asarray(ds["x"], dtype=np.float64), dtype=dtype)
    if shape:
        x = x.reshape(-1, *shape)
    return x, None


class Hinge(nn.Module):
    """Binary SVM hinge: mean(clamp(1 - t*x, min=0)), t = +1 where y == 1 else -1."""

    def forward(self, out, y):
        t = torch.where(y == 1, torch.ones_like(y), -torch.ones_like(y))
        return torch.clamp(1 - t * out, min=0).mean()


def make_loss(spec, dtype):
    t = spec["type"]
    if t == "mse":
        return nn.MSELoss()
    if t == "l1":
        return nn.L1Loss()
    if t == "huber":
        return nn.HuberLoss(delta=spec["delta"])
    if t == "smooth_l1":
        return nn.SmoothL1Loss(beta=spec["beta"])
    if t == "cross_entropy":
        w = None if spec["weight"] is None else torch.tensor(spec["weight"], dtype=dtype)
        return nn.CrossEntropyLoss(weight=w, ignore_index=spec["ignore_index"],
                                   label_smoothing=spec["label_smoothing"])
    if t == "bce_with_logits":
        pw = spec["pos_weight"]
        if pw is not None:
            pw = torch.tensor([pw] if isinstance(pw, (int, float)) else pw, dtype=dtype)
        return nn.BCEWithLogitsLoss(pos_weight=pw)
    if t == "hinge":
        return Hinge()
    if t == "multi_margin":
        w = None if spec["weight"] is None else torch.tensor(spec["weight"], dtype=dtype)
        return nn.MultiMarginLoss(p=spec["p"], margin=spec["margin"], weight=w)
    raise ValueError(t)


def make_targets(y, loss_type, dtype):
    if loss_type in CLASS_LOSSES:
        return torch.tensor(y, dtype=torch.long)  # [N], or [N, T] per token
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    return torch.tensor(a, dtype=dtype)


def task_loss(request):
    """A request without training.loss: the loss its Hugging Face sequence classifier's forward takes for
    the training labels as transformers gets them (hf.sequence_classification_loss): torch.tensor(y), so
    integer class indices are torch.long and rows of float values torch.float32."""
    config = request["model"]["huggingface"]["config"]
    spec = hf.sequence_classification_loss(config, torch.tensor(request["data"]["train"]["y"]))
    return with_defaults(LOSS_DEFAULTS, spec)


def dataset_targets(request, ds, loss_type, dtype):
    """A dataset's targets; a causal LM's data without `y` has the labels input_ids with padding set to
    -100 (hf.causal_labels), and the model shifts them."""
    if "y" not in ds and hf_task(request) == "causal-lm":
        ids = torch.tensor(ds["input_ids"], dtype=torch.long)
        mask = torch.tensor(ds["attention_mask"]) if "attention_mask" in ds else torch.ones_like(ids)
        return hf.causal_labels(ids, mask)
    return make_targets(ds["y"], loss_type, dtype)


def take(x, lo, hi):
    """Rows lo:hi of a model input (a tensor, or a tuple of tensors)."""
    return tuple(t[lo:hi] for t in x) if isinstance(x, tuple) else x[lo:hi]


def rows_of(x):
    return (x[0] if isinstance(x, tuple) else x).shape[0]


def forward(model, x, mask):
    """model(x, mask); a tuple x = (input_ids, token_type_ids) goes in as model(input_ids, mask, token_type_ids)."""
    return model(x[0], mask, *x[1:]) if isinstance(x, tuple) else model(x, mask)


def make_optimizer(spec, params):
    s = dict(spec)
    t = s.pop("type")
    if t == "sgd":
        return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], dampening=s["dampening"],
                               weight_decay=s["weight_decay"], nesterov=s["nesterov"], maximize=s["maximize"])
    if t in ("adam", "adamw"):
        cls = torch.optim.Adam if t == "adam" else torch.optim.AdamW
        return cls(params, lr=s["lr"], betas=tuple(s["betas"]), eps=s["eps"], weight_decay=s["weight_decay"],
                   amsgrad=s["amsgrad"], maximize=s["maximize"])
    if t == "rmsprop":
        return torch.optim.RMSprop(params, lr=s["lr"], alpha=s["alpha"], eps=s["eps"],
                                   weight_decay=s["weight_decay"], momentum=s["momentum"],
                                   centered=s["centered"], maximize=s["maximize"])
    if t == "adagrad":
        return torch.optim.Adagrad(params, lr=s["lr"], lr_decay=s["lr_decay"], weight_decay=s["weight_decay"],
                                   initial_accumulator_value=s["initial_accumulator_value"], eps=s["eps"],
                                   maximize=s["maximize"])
    raise ValueError(t)


LR = torch.optim.lr_scheduler


def make_closed_form(spec, opt, total):
    t = spec["type"]
    if t == "constant":
        return LR.ConstantLR(opt, factor=spec["factor"], total_iters=spec["total_iters"])
    if t == "step":
        return LR.StepLR(opt, step_size=spec["step_size"], gamma=spec["gamma"])
    if t == "multistep":
        return LR.MultiStepLR(opt, milestones=spec["milestones"], gamma=spec["gamma"])
    if t == "exponential":
        return LR.ExponentialLR(opt, gamma=spec["gamma"])
    if t == "cosine":
        if spec.get("T_max") is None and total is None:
            raise ValueError("cosine inside sequential needs an explicit T_max in these fixtures")
        return LR.CosineAnnealingLR(opt, T_max=spec.get("T_max") or total, eta_min=spec["eta_min"])
    if t == "linear":
        return LR.LinearLR(opt, start_factor=spec["start_factor"], end_factor=spec["end_factor"],
                           total_iters=spec["total_iters"])
    raise ValueError(t)


def make_scheduler(spec, opt, total):
    """Returns the scheduler or None (constant with factor 1)."""
    t = spec["type"]
    if t == "constant" and spec["factor"] == 1:
        return None
    if t == "onecycle":
        return LR.OneCycleLR(
            opt, max_lr=spec.get("max_lr") or opt.param_groups[0]["lr"],
            total_steps=spec.get("total_steps") or total, pct_start=spec["pct_start"],
            anneal_strategy=spec["anneal_strategy"], cycle_momentum=spec["cycle_momentum"],
            base_momentum=spec["base_momentum"], max_momentum=spec["max_momentum"],
            div_factor=spec["div_factor"], final_div_factor=spec["final_div_factor"],
            three_phase=spec["three_phase"])
    if t == "plateau":
        return LR.ReduceLROnPlateau(
            opt, mode=spec["mode"], factor=spec["factor"], patience=spec["patience"],
            threshold=spec["threshold"], threshold_mode=spec["threshold_mode"], cooldown=spec["cooldown"],
            min_lr=spec["min_lr"], eps=spec["eps"])
    if t == "sequential":
        subs = [make_closed_form(s, opt, None) for s in spec["schedulers"]]
        return LR.SequentialLR(opt, schedulers=subs, milestones=spec["milestones"])
    return make_closed_form(spec, opt, total)


# --------------------------------------------------------------------------- training loop

def state_to_json(sd):
    return OrderedDict((k, OrderedDict(shape=list(v.shape), data=v.detach().to(torch.float32).reshape(-1).tolist()))
                       for k, v in sd.items())


def resolve_trainable(names, trainable):
    if trainable is None:
        return list(names)
    sel = set()
    for t in trainable:
        hit = [n for n in names if n == t or n.startswith(t + ".")]
        assert hit, "trainable entry %r matches no parameter" % t
        sel.update(hit)
    return [n for n in names if n in sel]


class Margins:
    """The closest any discrete decision came to flipping during a run."""

    def __init__(self):
        self.kink = math.inf
        self.acc = math.inf
        self.decision = math.inf
        self.clipped = 0

    def as_json(self):
        f = lambda v: None if v == math.inf else float("%.3g" % v)
        return OrderedDict(kink=f(self.kink), accuracy=f(self.acc), decision=f(self.decision))


def rel_margin(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def is_better_es(cur, best, mode, min_delta):
    return cur < best - min_delta if mode == "min" else cur > best + min_delta


def train(request, init_state, dtype, adapter_state=None):
    """Run the edgetune training-loop semantics with PyTorch. Returns (expected, margins).
    With `request.adapter` (LoRA), the base model gets PEFT's adapter layers (lora.py), loaded from
    `adapter_state` (PEFT's adapter_model.safetensors names); only the adapter's trainable parameters
    train, and `expected` has `adapter`, `adapter_config` and `merged` instead of `weights`."""
    tr = request["training"]
    loss_spec, opt_spec, sched_spec = tr.get("loss") or task_loss(request), tr["optimizer"], tr["schedule"]
    lt = loss_spec["type"]
    margins = Margins()

    model = build_request_model(request["model"]).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in init_state.items()})
    adapter = request.get("adapter")
    if adapter is not None:
        with torch.random.fork_rng(devices=[]):  # the fresh adapter's draws are overwritten by adapter_state
            model = lora.get_lora_model(model, adapter, hf_task(request)).to(dtype)
        lora.load_adapter_state(model, OrderedDict((k, v.to(dtype)) for k, v in adapter_state.items()))
    causal_lm = hf_task(request) == "causal-lm"
    names = [n for n, _ in model.named_parameters()]
    if adapter is not None:
        train_names = [n for n, p in model.named_parameters() if p.requires_grad]
    else:
        train_names = resolve_trainable(names, request.get("trainable"))
    params = []
    for n, p in model.named_parameters():
        if n in train_names:
            params.append(p)
        else:
            p.requires_grad_(False)

    # kink tracking on ReLU / LeakyReLU inputs during training forwards
    tracking = {"on": False}

    def hook(_mod, inp):
        if tracking["on"]:
            margins.kink = min(margins.kink, float(inp[0].detach().abs().min()))

    def pool_hook(mod, inp):
        if tracking["on"]:
            margins.kink = min(margins.kink, max_pool_margin(mod, inp[0]))

    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            m.register_forward_pre_hook(hook)
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            m.register_forward_pre_hook(pool_hook)

    def max_pool_hook(mod, inp, _out):
        # pool(max) picks one token per feature: the runner-up must stay clear of it
        if tracking["on"] and mod.mode == "max" and inp[0].shape[1] > 1:
            x = inp[0].detach()
            mask = inp[1] if len(inp) > 1 and inp[1] is not None else torch.ones(x.shape[:2], dtype=x.dtype)
            top2 = x.masked_fill(mask[..., None] == 0, float("-inf")).topk(2, dim=1).values
            gap = (top2[:, 0] - top2[:, 1])[torch.isfinite(top2[:, 1])]
            if gap.numel():
                margins.kink = min(margins.kink, float(gap.min()))

    for m in model.modules():
        if isinstance(m, Pool):
            m.register_forward_hook(max_pool_hook)

    base_loss = make_loss(loss_spec, dtype)

    def loss_fn(out, y):
        if causal_lm:  # Hugging Face causal LM: the logit at t predicts labels[t + 1] (hf.causal_lm_loss)
            out, y = out[:, :-1], y[:, 1:]
        # a per-token output [N, T, C] with per-token targets [N, T]: the loss runs over every token
        if out.dim() == 3:
            return base_loss(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return base_loss(out, y)

    train_set = request["data"]["train"]
    X, M = model_inputs(request, train_set, dtype)
    Y = dataset_targets(request, train_set, lt, dtype)
    val = request["data"].get("validation")
    if val is not None:
        Xv, Mv = model_inputs(request, val, dtype)
        Yv = dataset_targets(request, val, lt, dtype)

    n = rows_of(X)
    bs = tr["batch_size"]
    spe = n // bs if tr["drop_last"] else -(-n // bs)
    epochs = tr["epochs"]
    interval = sched_spec["interval"]
    total_sched = epochs if interval == "epoch" else epochs * spe

    opt = make_optimizer(opt_spec, params)
    sched = make_scheduler(sched_spec, opt, total_sched)
    plateau = isinstance(sched, LR.ReduceLROnPlateau)
    plateau_monitor = sched_spec.get("monitor") or ("val_loss" if val is not None else "train_loss")

    clip = tr["clip_grad_norm"]
    if clip is not None and not isinstance(clip, dict):
        clip = dict(max_norm=clip, norm_type=2, error_if_nonfinite=False)

    es = tr["early_stopping"]
    if es is not None:
        es_mode = es["mode"] if es["mode"] != "auto" else ("max" if es["monitor"] == "val_accuracy" else "min")
        es_best = math.inf if es_mode == "min" else -math.inf
        es_wait, es_best_epoch, es_snapshot = 0, None, None

    history, steps = [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        total, rows = 0.0, 0
        for b in range(spe):
            xb, yb = take(X, b * bs, (b + 1) * bs), Y[b * bs:(b + 1) * bs]
            mb = None if M is None else M[b * bs:(b + 1) * bs]
            opt.zero_grad()
            tracking["on"] = True
            out = forward(model, xb, mb)
            tracking["on"] = False
            loss = loss_fn(out, yb)
            loss.backward()
            if out.dim() == 3:
                track_loss_kinks(loss_spec, out.detach().reshape(-1, out.shape[-1]), yb.reshape(-1), margins)
            else:
                track_loss_kinks(loss_spec, out.detach(), yb, margins)
            if clip is not None:
                nt = float("inf") if clip["norm_type"] == "inf" else float(clip["norm_type"])
                tn = torch.nn.utils.clip_grad_norm_(params, clip["max_norm"], nt, clip["error_if_nonfinite"])
                if float(tn) > clip["max_norm"]:
                    margins.clipped += 1
            opt.step()
            steps += 1
            lr_now = opt.param_groups[0]["lr"]
            if sched is not None and not plateau and interval == "step":
                sched.step()
            lv = loss.item()
            assert math.isfinite(lv), "non-finite loss"
            total += lv * rows_of(xb)
            rows += rows_of(xb)
        rec = OrderedDict(epoch=epoch, train_loss=total / rows)
        if val is not None:
            model.eval()
            with torch.no_grad():
                out = forward(model, Xv, Mv)
                rec["val_loss"] = loss_fn(out, Yv).item()
                Yv_flat = Yv
                if causal_lm:
                    out, Yv_flat = out[:, :-1], Yv[:, 1:]
                if out.dim() == 3:
                    out, Yv_flat = out.reshape(-1, out.shape[-1]), Yv_flat.reshape(-1)
                acc = accuracy(loss_spec, out, Yv_flat, margins)
                if acc is not None:
                    rec["val_accuracy"] = acc
        rec["lr"] = lr_now
        if sched is not None:
            if plateau:
                metric = rec[plateau_monitor]
                if sched.best not in (math.inf, -math.inf) and not (plateau_monitor == "val_accuracy" and
                                                                      metric == sched.best):
                    thr = sched.threshold
                    if sched.threshold_mode == "rel":
                        bound = sched.best * (1 - thr) if sched.mode == "min" else sched.best * (1 + thr)
                    else:
                        bound = sched.best - thr if sched.mode == "min" else sched.best + thr
                    margins.decision = min(margins.decision, rel_margin(metric, bound))
                sched.step(metric)
            elif interval == "epoch":
                sched.step()
        history.append(rec)
        if es is not None:
            cur = rec[es["monitor"]]
            if es_best not in (math.inf, -math.inf) and not (es["monitor"] == "val_accuracy" and cur == es_best):
                # (an exact accuracy tie is exact: accuracies are ratios of counts)
                bound = es_best - es["min_delta"] if es_mode == "min" else es_best + es["min_delta"]
                margins.decision = min(margins.decision, rel_margin(cur, bound))
            if is_better_es(cur, es_best, es_mode, es["min_delta"]):
                es_best, es_best_epoch, es_wait = cur, epoch, 0
                es_snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                es_wait += 1
                if es_wait >= es["patience"]:
                    break

    if es is not None:
        best_epoch = es_best_epoch
        if es["restore_best_weights"] and es_snapshot is not None:
            model.load_state_dict(es_snapshot)
    else:
        key = "val_loss" if val is not None else "train_loss"
        vals = [h[key] for h in history]
        best_epoch = 1 + int(np.argmin(vals))  # first minimum
        m = vals[best_epoch - 1]
        others = [v for i, v in enumerate(vals) if i != best_epoch - 1]
        if others:
            margins.decision = min(margins.decision, min(rel_margin(m, v) for v in others))

    if adapter is not None:
        expected = OrderedDict(adapter=lora.peft_state_dict(model), adapter_config=lora.adapter_config(model),
                               merged=lora.merged_state_dict(model), history=history, steps=steps, best_epoch=best_epoch)
    else:
        expected = OrderedDict(weights=model.state_dict(), history=history, steps=steps, best_epoch=best_epoch)
    for part in STATE_PARTS:
        for k, v in expected.get(part, {}).items():
            assert torch.isfinite(v).all(), "non-finite weight %s %s" % (part, k)
    return expected, margins


# the tensor dicts of a run's result: `weights`, or for an adapter run the PEFT adapter state and the merged model
STATE_PARTS = ("weights", "adapter", "merged")


def track_loss_kinks(spec, out, y, margins):
    t = spec["type"]
    if t == "l1" or (t == "smooth_l1" and spec["beta"] == 0):
        margins.kink = min(margins.kink, float((out - y).abs().min()))
    elif t == "hinge":
        s = torch.where(y == 1, torch.ones_like(y), -torch.ones_like(y))
        margins.kink = min(margins.kink, float((1 - s * out).abs().min()))
    elif t == "multi_margin" and spec["p"] == 1:
        xy = out.gather(1, y[:, None])
        m = (spec["margin"] - xy + out).abs()
        m = m.masked_fill(torch.nn.functional.one_hot(y, out.shape[1]).bool(), math.inf)
        margins.kink = min(margins.kink, float(m.min()))


def accuracy(spec, out, y, margins):
    t = spec["type"]
    if t in CLASS_LOSSES:
        mask = torch.ones_like(y, dtype=torch.bool)
        if t == "cross_entropy":
            mask = y != spec["ignore_index"]
        top2 = out[mask].topk(2, dim=1).values
        margins.acc = min(margins.acc, float((top2[:, 0] - top2[:, 1]).min()))
        pred = out.argmax(1)
        correct = int(((pred == y) & mask).sum())
        return correct / int(mask.sum())
    if t in BINARY_LOSSES:
        pos = y > 0.5 if t == "bce_with_logits" else y == 1
        margins.acc = min(margins.acc, float(out.abs().min()))
        return int(((out > 0) == pos).sum()) / y.numel()
    return None


# --------------------------------------------------------------------------- stability check

def close(a, b, frac):
    return abs(a - b) <= frac * (ATOL + RTOL * abs(b))


def compare(e32, e64):
    """Largest deviation of the float64 run from the float32 run, as a fraction of the tolerance."""
    if e32["steps"] != e64["steps"] or e32["best_epoch"] != e64["best_epoch"] or len(e32["history"]) != len(e64["history"]):
        return math.inf
    worst = 0.0
    for part in STATE_PARTS:
        for k, v in e32.get(part, {}).items():
            a = v.double().reshape(-1)
            b = e64[part][k].reshape(-1)
            d = ((a - b).abs() / (ATOL + RTOL * a.abs())).max().item() if a.numel() else 0.0
            worst = max(worst, d)
    for h32, h64 in zip(e32["history"], e64["history"]):
        for k, v in h32.items():
            if k == "epoch":
                continue
            if k not in h64:
                return math.inf
            worst = max(worst, abs(v - h64[k]) / (ATOL + RTOL * abs(v)))
    return worst


def check(case, request, init_state, e32, m32, e64, adapter_state=None):
    problems = []
    if e32["steps"] < MIN_STEPS:
        problems.append("only %d steps" % e32["steps"])
    dev = compare(e32, e64)
    if dev > SHADOW_FRACTION:
        problems.append("float64 deviation %.3g of tolerance" % dev)
    if m32.kink < KINK_MARGIN:
        problems.append("kink margin %.3g" % m32.kink)
    if m32.acc < ACC_MARGIN:
        problems.append("accuracy margin %.3g" % m32.acc)
    if m32.decision < DECISION_MARGIN:
        problems.append("decision margin %.3g" % m32.decision)
    for fn in case.get("checks", []):
        if getattr(fn, "wants_adapter", False):
            msg = fn(request, init_state, e32, m32, adapter_state)
        else:
            msg = fn(request, init_state, e32, m32)
        if msg:
            problems.append(msg)
    return problems, dev


# --------------------------------------------------------------------------- case building

def mlp(d_in=6, h=8, k=1, act=None, bias1=True):
    fc1 = OrderedDict(type="linear", name="fc1", in_features=d_in, out_features=h)
    if not bias1:
        fc1["bias"] = False
    return [fc1, act or {"type": "relu"}, OrderedDict(type="linear", name="fc2", in_features=h, out_features=k)]


def case(name, description, layers=None, data=None, training=None, trainable=None, checks=(), seed=0, input=None,
         huggingface=None, adapter=None, adapter_given=None):
    """A case; `huggingface` ({config, task}) replaces `layers` with a Hugging Face reference model.
    `adapter`: a LoRA adapter spec (request.adapter); `adapter_given` ({b_std, saved_std}): start from a
    given adapter (non-zero lora_B, perturbed modules_to_save copies) instead of a fresh one."""
    return dict(name=name, description=description, layers=None if huggingface else layers or mlp(), data=data or {},
                training=training, trainable=trainable, checks=list(checks), seed=seed, input=input,
                huggingface=huggingface, adapter=adapter, adapter_given=adapter_given)


def realize(c, seed):
    """The request, the initial weights and the initial adapter state (None without an adapter) of a case
    for a given seed."""
    d = dict(task="regression")
    d.update(c["data"])
    makers = dict(tokens=make_token_data, lm=make_lm_data, hf_cls=make_hf_cls_data, hf_lm=make_hf_lm_data)
    data = makers.get(d["task"], make_data)(seed + 1000, **d)
    t = dict(c["training"])
    t["seed"] = seed
    training = full_training(t)
    if c.get("huggingface") is not None:
        model = OrderedDict(huggingface=copy.deepcopy(c["huggingface"]))
    elif c.get("input") is not None:
        model = OrderedDict(input=OrderedDict(shape=c["input"]), layers=c["layers"])
    else:
        model = OrderedDict(layers=c["layers"])
    request = OrderedDict(model=model, data=data, training=training)
    if c["trainable"] is not None:
        request["trainable"] = c["trainable"]
    if c.get("huggingface") is not None:
        # transformers' _init_weights rules after torch.manual_seed(seed) (hf.init_weights); a tied
        # lm_head is the embedding, so it is not among the weights
        state = hf.init_weights(hf.build(c["huggingface"]["config"]), seed).state_dict()
    else:
        torch.manual_seed(seed)
        state = build_model(c["layers"]).state_dict()
    init_state = OrderedDict((k, v.detach().clone()) for k, v in state.items())
    adapter_state = None
    if c.get("adapter") is not None:
        request["adapter"] = full_adapter(c["adapter"])
        request, adapter_state = realize_adapter(c, request, init_state, seed)
    return request, init_state, adapter_state


ADAPTER_DEFAULTS = OrderedDict(type="lora", r=8, lora_alpha=8, lora_dropout=0.0, target_modules=None, use_rslora=False,
                               modules_to_save=None, bias="none")


def full_adapter(spec):
    """request.adapter with every field explicit (LoraConfig's defaults, as the schema's)."""
    out = OrderedDict((k, copy.deepcopy(spec.get(k, v))) for k, v in ADAPTER_DEFAULTS.items())
    assert set(spec) <= set(out), "unknown adapter fields: %r" % (set(spec) - set(out))
    return out


def realize_adapter(c, request, init_state, seed):
    """The initial adapter state, in adapter_model.safetensors names: PEFT's fresh adapter after
    torch.manual_seed(training.seed) (lora_A kaiming_uniform_, lora_B zeros, lora_embedding_A zeros,
    lora_embedding_B normal_, modules_to_save copies of the base modules), or with `adapter_given` a
    given adapter: lora_B ~ N(0, b_std) and modules_to_save copies + N(0, saved_std), drawn from
    numpy's RandomState(seed + 2000) and rounded to float32."""
    with torch.random.fork_rng(devices=[]):
        base = build_request_model(request["model"])
        base.load_state_dict(init_state)
        pm = lora.get_lora_model(base, request["adapter"], hf_task(request), seed=seed)
    state = lora.peft_state_dict(pm)
    given = c.get("adapter_given")
    if given is not None:
        rs = np.random.RandomState(seed + 2000)
        for k, v in state.items():
            if k.endswith(".lora_B.weight"):
                noise, keep = given["b_std"], 0.0
            elif ".lora_" not in k and ".base_layer." not in k:  # a modules_to_save copy
                noise, keep = given["saved_std"], 1.0
            else:
                continue
            new = keep * v.double() + noise * torch.tensor(rs.randn(*v.shape))
            state[k] = new.to(torch.float32)
    return request, OrderedDict((k, v.detach().clone()) for k, v in state.items())


LOGIT_ROWS = 4


def reference_logits(request, weights, dtype=torch.float32):
    """A Hugging Face case's logits from the reference model with `weights` loaded strictly, in eval
    mode: of the validation rows, or of the first LOGIT_ROWS training rows without validation data.
    Returns (rows, logits tensor)."""
    m = build_request_model(request["model"])
    m.load_state_dict(OrderedDict((k, v.to(dtype)) for k, v in weights.items()), strict=True)
    m = m.to(dtype).eval()
    val = request["data"].get("validation")
    if val is not None:
        rows, ds = "validation", val
    else:
        rows = "train[:%d]" % LOGIT_ROWS
        ds = OrderedDict((k, v[:LOGIT_ROWS]) for k, v in request["data"]["train"].items())
    x, mask = model_inputs(request, ds, dtype)
    with torch.no_grad():
        return rows, forward(m, x, mask)


def logits_json(request, weights):
    rows, out = reference_logits(request, weights)
    return OrderedDict(rows=rows, shape=list(out.shape), data=out.reshape(-1).tolist())


def run_case(c, seeds=12):
    last = None
    for attempt in range(seeds):
        seed = c["seed"] + 101 * attempt
        request, init_state, adapter_state = realize(c, seed)
        try:
            with warnings.catch_warnings(record=True) as wl:
                warnings.simplefilter("always")
                e32, m32 = train(request, init_state, torch.float32, adapter_state)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e64, _ = train(request, init_state, torch.float64, adapter_state)
        except AssertionError as err:
            last = ["seed %d: %s" % (seed, err)]
            print("  retry %s: %s" % (c["name"], last[0]), file=sys.stderr)
            continue
        problems, dev = check(c, request, init_state, e32, m32, e64, adapter_state)
        if not problems:
            if "weights" in e64:
                e32["float64_weights"] = e64["weights"]  # for fixture_case's logits_shadow_deviation
            warn_msgs = sorted(set(str(w.message).split("\n")[0][:160] for w in wl))
            return request, init_state, adapter_state, e32, m32, dev, seed, warn_msgs
        last = ["seed %d: %s" % (seed, "; ".join(problems))]
        print("  retry %s: %s" % (c["name"], last[0]), file=sys.stderr)
    raise SystemExit("case %s: no well-conditioned seed found (%s)" % (c["name"], last))


def fixture_case(c, request, init_state, expected, margins, dev, seed, adapter_state=None):
    hist = []
    for h in expected["history"]:
        hist.append(OrderedDict((k, v) for k, v in h.items()))
    meta = OrderedDict(init_seed=seed, data_seed=seed + 1000, float64_deviation=float("%.3g" % dev),
                       margins=margins.as_json(), clipped_steps=margins.clipped)
    if adapter_state is not None:
        exp = OrderedDict(adapter=state_to_json(expected["adapter"]), adapter_config=expected["adapter_config"],
                          merged=state_to_json(expected["merged"]), history=hist, steps=expected["steps"],
                          best_epoch=expected["best_epoch"])
        # what the adapter did: the modules it adapted (in module order), its scaling, whether the initial
        # adapter is PEFT's fresh one after torch.manual_seed(training.seed) or a given one
        with torch.random.fork_rng(devices=[]):
            pm = lora.get_lora_model(build_request_model(request["model"]), request["adapter"], hf_task(request))
        layers = [m for m in pm.modules() if isinstance(m, lora.LORA_LAYERS)]
        meta["adapter_init"] = "given" if c.get("adapter_given") else "peft: torch.manual_seed(training.seed), get_peft_model"
        meta["targeted_modules"] = pm.peft_config["targeted"]
        meta["modules_to_save"] = pm.peft_config["saved_modules"]
        meta["scaling"] = layers[0].scaling
        meta["trainable_parameters"] = sum(p.numel() for p in pm.parameters() if p.requires_grad)
        return OrderedDict(name=c["name"], description=c["description"], request=request,
                           initial_weights=state_to_json(init_state),
                           initial_adapter_weights=state_to_json(adapter_state), expected=exp, meta=meta)
    exp = OrderedDict(weights=state_to_json(expected["weights"]), history=hist,
                      steps=expected["steps"], best_epoch=expected["best_epoch"])
    if "huggingface" in request["model"]:
        # the reference's logits for the expected weights: weights trained by the engine, loaded
        # strictly into the reference, give these. meta records, as fractions of the tolerance, how
        # far from them are a float64 forward of the same weights (logits_float64_deviation) and the
        # float32 forward of the float64 run's final weights (logits_shadow_deviation: what weights
        # trained with other rounding give)
        exp["logits"] = logits_json(request, expected["weights"])
        _, l32 = reference_logits(request, expected["weights"])
        _, l64 = reference_logits(request, expected["weights"], torch.float64)
        dev_of = lambda a: float("%.3g" % ((a.double() - l32.double()).abs() / (ATOL + RTOL * l32.double().abs())).max())
        meta["logits_float64_deviation"] = dev_of(l64)
        if "float64_weights" in expected:
            shadow = OrderedDict((k, v.to(torch.float32)) for k, v in expected["float64_weights"].items())
            meta["logits_shadow_deviation"] = dev_of(reference_logits(request, shadow)[1])
    return OrderedDict(name=c["name"], description=c["description"], request=request,
                       initial_weights=state_to_json(init_state), expected=exp, meta=meta)


# --------------------------------------------------------------------------- checks used by cases

def lr_changes(req, init, e, m):
    lrs = [h["lr"] for h in e["history"]]
    if len(set(lrs)) < 2:
        return "lr never changed"


def lr_reduced_twice(req, init, e, m):
    lrs = [h["lr"] for h in e["history"]]
    if len(set(lrs)) < 3:
        return "plateau reduced the lr fewer than 2 times (%r)" % sorted(set(lrs))


def clipped(req, init, e, m):
    if m.clipped < 10:
        return "clipping happened only %d times" % m.clipped


def stopped_early(req, init, e, m):
    if len(e["history"]) >= req["training"]["epochs"]:
        return "early stopping did not trigger"


def restored(req, init, e, m):
    if e["best_epoch"] == len(e["history"]):
        return "best epoch is the last epoch (restore does nothing)"


def frozen(prefixes):
    def fn(req, init, e, m):
        for k, v in init.items():
            if any(k == p or k.startswith(p + ".") for p in prefixes):
                if not torch.equal(v, e["weights"][k]):
                    return "frozen %s changed" % k
    return fn


def not_frozen(req, init, e, m):
    for k, v in init.items():
        if torch.equal(v, e["weights"][k]):
            return "%s did not change" % k


# --------------------------------------------------------------------------- the cases

def optimizer_cases():
    def c(name, desc, opt, epochs=15, data=None, **kw):
        return case(name, desc, data=data or dict(n_train=64, k=1),
                    training=dict(epochs=epochs, batch_size=8, loss={"type": "mse"}, optimizer=opt), **kw)
    return [
        c("sgd_plain", "SGD without momentum", {"type": "sgd", "lr": 0.05}, seed=1),
        c("sgd_momentum", "SGD momentum 0.9", {"type": "sgd", "lr": 0.02, "momentum": 0.9}, seed=2),
        c("sgd_momentum_dampening", "SGD momentum 0.9 with dampening 0.3 (first step: buf = g, no dampening)",
          {"type": "sgd", "lr": 0.02, "momentum": 0.9, "dampening": 0.3}, seed=3),
        c("sgd_nesterov", "SGD Nesterov momentum 0.9", {"type": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": True}, seed=4),
        c("sgd_weight_decay", "SGD with L2 weight decay 0.05", {"type": "sgd", "lr": 0.05, "weight_decay": 0.05}, seed=5),
        c("sgd_maximize", "SGD maximize (gradient ascent on MSE, tiny lr)", {"type": "sgd", "lr": 1e-3, "maximize": True}, seed=6),
        c("sgd_maximize_momentum_wd", "SGD maximize with momentum 0.5 and weight decay 0.1: torch 1.13 negates the "
          "gradient before adding weight decay", {"type": "sgd", "lr": 1e-3, "momentum": 0.5, "weight_decay": 0.1,
                                                  "maximize": True}, seed=7),
        c("adam_default", "Adam, default betas/eps", {"type": "adam", "lr": 0.005}, seed=8),
        c("adam_weight_decay", "Adam with L2 weight decay 0.05 (added to the gradient)",
          {"type": "adam", "lr": 0.005, "weight_decay": 0.05}, seed=9),
        c("adam_amsgrad", "Adam amsgrad", {"type": "adam", "lr": 0.01, "amsgrad": True}, seed=10),
        c("adam_maximize", "Adam maximize (tiny lr)", {"type": "adam", "lr": 1e-4, "maximize": True}, seed=11),
        c("adamw_default", "AdamW with its default weight decay 0.01", {"type": "adamw", "lr": 0.005}, seed=12),
        c("adamw_amsgrad_betas_eps", "AdamW amsgrad, betas (0.8, 0.99), eps 1e-6, weight decay 0.1",
          {"type": "adamw", "lr": 0.005, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1, "amsgrad": True}, seed=13),
        c("rmsprop_default", "RMSprop, default alpha/eps", {"type": "rmsprop", "lr": 0.002}, seed=14),
        c("rmsprop_centered", "RMSprop centered", {"type": "rmsprop", "lr": 0.001, "centered": True}, seed=15),
        c("rmsprop_momentum", "RMSprop momentum 0.9", {"type": "rmsprop", "lr": 0.001, "momentum": 0.9}, seed=16),
        c("rmsprop_centered_momentum_wd", "RMSprop centered + momentum 0.8 + weight decay 0.01, alpha 0.95",
          {"type": "rmsprop", "lr": 5e-4, "alpha": 0.95, "centered": True, "momentum": 0.8, "weight_decay": 0.01}, seed=17),
        c("rmsprop_maximize", "RMSprop maximize (tiny lr)", {"type": "rmsprop", "lr": 1e-4, "maximize": True}, seed=18),
        c("adagrad_default", "Adagrad", {"type": "adagrad", "lr": 0.05}, seed=19),
        c("adagrad_options", "Adagrad with lr_decay 0.01, initial_accumulator_value 0.1, weight decay 0.01, eps 1e-8",
          {"type": "adagrad", "lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01,
           "eps": 1e-8}, seed=20),
        c("adagrad_maximize", "Adagrad maximize (tiny lr)", {"type": "adagrad", "lr": 1e-3, "maximize": True}, seed=21),
        case("adam_classification", "Adam on a 3-class cross-entropy problem with validation",
             layers=mlp(k=3), data=dict(task="class", k=3, n_train=64, n_val=32),
             training=dict(epochs=15, batch_size=8, loss={"type": "cross_entropy"},
                           optimizer={"type": "adam", "lr": 0.01}), seed=22),
    ]


def loss_cases():
    def c(name, desc, loss, data, k=1, opt=None, epochs=15, **kw):
        return case(name, desc, layers=kw.pop("layers", mlp(k=k)), data=dict(data, k=k),
                    training=dict(epochs=epochs, batch_size=8, loss=loss,
                                  optimizer=opt or {"type": "adam", "lr": 0.01}), **kw)
    reg = dict(task="regression", n_train=64, n_val=32)
    cls = dict(task="class", n_train=64, n_val=32)
    binary = dict(task="binary", n_train=64, n_val=32)
    sgd = lambda lr: {"type": "sgd", "lr": lr}
    return [
        c("mse_multi_output", "MSE on 3 regression outputs, y rows", {"type": "mse"}, reg, k=3, seed=31),
        c("l1", "L1 loss (small lr: sign gradient)", {"type": "l1"}, reg, opt=sgd(0.02), seed=32),
        c("huber_delta_0_5", "Huber delta 0.5, 2 outputs", {"type": "huber", "delta": 0.5}, reg, k=2,
          opt=sgd(0.1), seed=33),
        c("smooth_l1_beta_0_5", "SmoothL1 beta 0.5", {"type": "smooth_l1", "beta": 0.5}, reg, opt=sgd(0.1), seed=34),
        c("smooth_l1_beta_0", "SmoothL1 beta 0 (= L1)", {"type": "smooth_l1", "beta": 0.0}, reg, opt=sgd(0.02), seed=35),
        c("cross_entropy_plain", "cross-entropy, 3 classes, validation accuracy", {"type": "cross_entropy"}, cls, k=3,
          seed=36),
        c("cross_entropy_weight", "cross-entropy with class weights (mean divides by the sum of target weights)",
          {"type": "cross_entropy", "weight": [1.0, 2.0, 0.5]}, cls, k=3, seed=37),
        c("cross_entropy_ignore_index_minus1", "cross-entropy, rows labelled -1 ignored (ignore_index -1), "
          "in training and in validation loss/accuracy", {"type": "cross_entropy", "ignore_index": -1},
          dict(cls, ignore=(-1, 7)), k=3, seed=38),
        c("cross_entropy_ignore_index_default", "cross-entropy, rows labelled -100 present in the data, "
          "default ignore_index -100", {"type": "cross_entropy", "ignore_index": -100},
          dict(cls, ignore=(-100, 7)), k=3, seed=39),
        c("cross_entropy_ignore_index_in_range", "cross-entropy with ignore_index 1, a real class: rows of class 1 "
          "are ignored", {"type": "cross_entropy", "ignore_index": 1}, cls, k=3, seed=40),
        c("cross_entropy_label_smoothing", "cross-entropy with label smoothing 0.1",
          {"type": "cross_entropy", "label_smoothing": 0.1}, cls, k=3, seed=41),
        c("cross_entropy_weight_smoothing_ignore", "cross-entropy with class weights, label smoothing 0.2 and "
          "ignore_index -1 together, 4 classes",
          {"type": "cross_entropy", "weight": [0.5, 1.5, 1.0, 2.0], "ignore_index": -1, "label_smoothing": 0.2},
          dict(cls, ignore=(-1, 6)), k=4, seed=42),
        c("bce_single", "BCE with logits, one output, scalar 0/1 targets", {"type": "bce_with_logits"}, binary, seed=43),
        c("bce_multilabel", "BCE with logits, 3 outputs (multi-label), y rows",
          {"type": "bce_with_logits"}, binary, k=3, seed=44),
        c("bce_pos_weight_scalar", "BCE with logits, pos_weight 2.0 (a number, broadcast)",
          {"type": "bce_with_logits", "pos_weight": 2.0}, binary, k=2, seed=45),
        c("bce_pos_weight_list", "BCE with logits, pos_weight per output [0.5, 2.0, 1.5]",
          {"type": "bce_with_logits", "pos_weight": [0.5, 2.0, 1.5]}, binary, k=3, seed=46),
        c("hinge_01", "binary hinge with 0/1 labels (0 -> -1)", {"type": "hinge"}, binary, opt=sgd(0.02), seed=47),
        c("hinge_pm1", "binary hinge with -1/+1 labels, 2 outputs", {"type": "hinge"},
          dict(binary, labels01=False), k=2, opt=sgd(0.02), seed=48),
        c("multi_margin_p1", "MultiMarginLoss p=1 margin 1, 4 classes", {"type": "multi_margin", "p": 1, "margin": 1.0},
          cls, k=4, opt=sgd(0.02), seed=49),
        c("multi_margin_p2_margin_0_5", "MultiMarginLoss p=2 margin 0.5",
          {"type": "multi_margin", "p": 2, "margin": 0.5}, cls, k=4, opt=sgd(0.05), seed=50),
        c("multi_margin_weight", "MultiMarginLoss p=1 with class weights",
          {"type": "multi_margin", "p": 1, "margin": 1.0, "weight": [1.0, 0.5, 2.0, 1.0]}, cls, k=4,
          opt=sgd(0.02), seed=51),
        c("multi_margin_p2_weight", "MultiMarginLoss p=2 margin 1 with class weights",
          {"type": "multi_margin", "p": 2, "margin": 1.0, "weight": [2.0, 1.0, 0.5]}, cls, k=3,
          opt=sgd(0.03), seed=52),
    ]


def schedule_cases():
    def c(name, desc, sched, opt=None, epochs=16, data=None, loss=None, k=1, checks=(lr_changes,), **kw):
        return case(name, desc, layers=kw.pop("layers", mlp(k=k)),
                    data=data or dict(task="regression", n_train=64, n_val=32, k=k),
                    training=dict(epochs=epochs, batch_size=8, loss=loss or {"type": "mse"},
                                  optimizer=opt or {"type": "sgd", "lr": 0.05, "momentum": 0.5},
                                  schedule=sched), checks=checks, **kw)
    adam = lambda lr: {"type": "adam", "lr": lr}
    cls = dict(task="class", n_train=64, n_val=32, k=3)
    return [
        c("constant_default", "constant schedule with factor 1 (no scheduler)",
          {"type": "constant", "factor": 1, "total_iters": 5}, checks=(), seed=61),
        c("step_lr", "StepLR step_size 4 gamma 0.5, per epoch", {"type": "step", "step_size": 4, "gamma": 0.5}, seed=62),
        c("multistep_lr", "MultiStepLR milestones [3, 7, 12] gamma 0.3",
          {"type": "multistep", "milestones": [3, 7, 12], "gamma": 0.3}, seed=63),
        c("exponential_lr", "ExponentialLR gamma 0.85", {"type": "exponential", "gamma": 0.85}, seed=64),
        c("cosine_epoch_past_tmax", "CosineAnnealingLR T_max 6 eta_min 0.001 over 16 epochs (the recursive form "
          "goes back up past T_max)", {"type": "cosine", "T_max": 6, "eta_min": 0.001}, opt=adam(0.01), seed=65),
        c("cosine_step_default_tmax", "CosineAnnealingLR per step, T_max absent = epochs * steps_per_epoch",
          {"type": "cosine", "eta_min": 0.0, "interval": "step"}, opt=adam(0.01), seed=66),
        c("linear_warmup", "LinearLR start 0.25 end 1.0 over 6 epochs",
          {"type": "linear", "start_factor": 0.25, "end_factor": 1.0, "total_iters": 6}, seed=67),
        c("linear_step_decay", "LinearLR per step from 1.0 to 0.1 over 80 steps",
          {"type": "linear", "start_factor": 1.0, "end_factor": 0.1, "total_iters": 80, "interval": "step"},
          opt=adam(0.01), seed=68),
        c("constant_factor", "ConstantLR factor 0.5 for 3 epochs", {"type": "constant", "factor": 0.5, "total_iters": 3},
          seed=69),
        c("onecycle_cos_adam", "OneCycleLR cos per step with Adam (beta1 cycles 0.95 -> 0.85 -> 0.95); max_lr and "
          "total_steps absent = optimizer lr and epochs * steps_per_epoch",
          {"type": "onecycle", "anneal_strategy": "cos"}, opt=adam(0.01), seed=70),
        c("onecycle_linear_sgd_momentum", "OneCycleLR linear with SGD momentum 0.9 (momentum cycles), explicit "
          "max_lr 0.1 and total_steps = the run's steps",
          {"type": "onecycle", "max_lr": 0.1, "total_steps": 128, "anneal_strategy": "linear"},
          opt={"type": "sgd", "lr": 0.05, "momentum": 0.9}, seed=71),
        c("onecycle_three_phase", "OneCycleLR three_phase, pct_start 0.25, div_factor 10, final_div_factor 100",
          {"type": "onecycle", "max_lr": 0.02, "three_phase": True, "pct_start": 0.25, "div_factor": 10.0,
           "final_div_factor": 100.0}, opt=adam(0.01), seed=72),
        c("onecycle_no_cycle_momentum", "OneCycleLR with cycle_momentum false (SGD momentum stays 0.9), total_steps "
          "200 larger than the run",
          {"type": "onecycle", "max_lr": 0.05, "total_steps": 200, "cycle_momentum": False},
          opt={"type": "sgd", "lr": 0.05, "momentum": 0.9}, seed=73),
        c("onecycle_rmsprop_momentum", "OneCycleLR with RMSprop: cycles RMSprop's momentum (base 0.8, max 0.9)",
          {"type": "onecycle", "max_lr": 0.002, "base_momentum": 0.8, "max_momentum": 0.9},
          opt={"type": "rmsprop", "lr": 0.001, "momentum": 0.9}, seed=74),
        c("onecycle_sgd_zero_momentum", "OneCycleLR (cycle_momentum true, the default) with SGD momentum 0: torch "
          "sets and cycles SGD's momentum anyway (0.95 -> 0.85 -> 0.95), so this SGD runs with momentum",
          {"type": "onecycle", "max_lr": 0.05}, opt={"type": "sgd", "lr": 0.05, "momentum": 0.0}, seed=82),
        c("onecycle_epoch_interval", "OneCycleLR stepped per epoch (total_steps absent = epochs), div_factor 5, "
          "final_div_factor 5",
          {"type": "onecycle", "interval": "epoch", "max_lr": 0.01, "div_factor": 5.0,
                                               "final_div_factor": 5.0}, opt=adam(0.01), seed=75),
        c("plateau_val_loss", "ReduceLROnPlateau min on val_loss, patience 1, factor 0.5",
          {"type": "plateau", "mode": "min", "patience": 1, "factor": 0.5}, opt=adam(0.03), epochs=20,
          checks=(lr_reduced_twice,), seed=76),
        c("plateau_val_accuracy_max", "ReduceLROnPlateau max on val_accuracy, threshold 0.01 abs, cooldown 1, "
          "patience 1, factor 0.5", {"type": "plateau", "monitor": "val_accuracy", "mode": "max", "patience": 1,
                                     "factor": 0.5, "threshold": 0.01, "threshold_mode": "abs", "cooldown": 1},
          opt=adam(0.01), data=cls, k=3, loss={"type": "cross_entropy"}, epochs=20,
          checks=(lr_reduced_twice,), seed=77),
        c("plateau_train_loss", "ReduceLROnPlateau without validation data: monitors train_loss; threshold 0.1 rel, "
          "patience 1, factor 0.3, min_lr 0.002",
          {"type": "plateau", "patience": 1, "factor": 0.3, "threshold": 0.1, "min_lr": 0.002},
          opt=adam(0.02), data=dict(task="regression", n_train=64), epochs=20, checks=(lr_reduced_twice,), seed=78),
        c("sequential_warmup_cosine_epoch", "SequentialLR: LinearLR warm-up (0.1 -> 1 over 3 epochs), then "
          "CosineAnnealingLR T_max 12 eta_min 1e-4, milestone 3, per epoch",
          {"type": "sequential", "schedulers": [
              {"type": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 3},
              {"type": "cosine", "T_max": 12, "eta_min": 1e-4}], "milestones": [3], "interval": "epoch"},
          opt=adam(0.01), seed=79),
        c("sequential_step_milestones", "SequentialLR per step: ConstantLR 0.5 (10 its), LinearLR 0.5 -> 1 "
          "(20 its), ExponentialLR 0.99; milestones [10, 30]",
          {"type": "sequential", "schedulers": [
              {"type": "constant", "factor": 0.5, "total_iters": 10},
              {"type": "linear", "start_factor": 0.5, "end_factor": 1.0, "total_iters": 20},
              {"type": "exponential", "gamma": 0.99}], "milestones": [10, 30], "interval": "step"},
          opt=adam(0.01), seed=80),
        c("sequential_step_cosine", "SequentialLR per step: StepLR (step 5, gamma 0.5) for 20 steps, then "
          "CosineAnnealingLR T_max 60 eta_min 0.001 (past T_max at the end)",
          {"type": "sequential", "schedulers": [
              {"type": "step", "step_size": 5, "gamma": 0.5},
              {"type": "cosine", "T_max": 60, "eta_min": 0.001}], "milestones": [20], "interval": "step"},
          opt={"type": "sgd", "lr": 0.05, "momentum": 0.9}, seed=81),
    ]


def training_cases():
    def c(name, desc, layers=None, data=None, opt=None, loss=None, epochs=15, bs=8, **kw):
        t = dict(epochs=epochs, batch_size=bs, loss=loss or {"type": "mse"},
                 optimizer=opt or {"type": "adam", "lr": 0.01})
        for key in ("drop_last", "clip_grad_norm", "early_stopping", "schedule"):
            if key in kw:
                t[key] = kw.pop(key)
        return case(name, desc, layers=layers, data=data or dict(task="regression", n_train=64, n_val=32),
                    training=t, **kw)
    act = lambda a, **kw: mlp(act=dict(type=a, **kw))
    sgd = lambda lr, **kw: dict(type="sgd", lr=lr, **kw)
    return [
        c("clip_norm_2_number", "clip_grad_norm 0.5 given as a number (2-norm); clips most steps",
          opt=sgd(0.1, momentum=0.5), clip_grad_norm=0.5, checks=(clipped,), seed=91),
        c("clip_norm_1", "clip_grad_norm max_norm 1.0, norm_type 1, error_if_nonfinite true",
          opt=sgd(0.1), clip_grad_norm={"max_norm": 1.0, "norm_type": 1, "error_if_nonfinite": True},
          checks=(clipped,), seed=92),
        c("clip_norm_inf", "clip_grad_norm max_norm 0.1, norm_type \"inf\" (max |g|)",
          opt=sgd(0.2), clip_grad_norm={"max_norm": 0.1, "norm_type": "inf"}, checks=(clipped,), seed=93),
        c("clip_adam", "clip_grad_norm 0.3 with Adam", clip_grad_norm={"max_norm": 0.3},
          checks=(clipped,), seed=94),
        c("trainable_fc2", "trainable [\"fc2\"]: fc1 stays equal to its initial values", trainable=["fc2"],
          checks=(frozen(["fc1"]),), seed=95),
        c("trainable_fc1_bias_fc2", "trainable [\"fc1.bias\", \"fc2\"]: fc1.weight frozen",
          trainable=["fc1.bias", "fc2"], opt=sgd(0.05, momentum=0.9), checks=(frozen(["fc1.weight"]),), seed=96),
        c("act_leaky_relu_0_2", "LeakyReLU negative_slope 0.2", layers=act("leaky_relu", negative_slope=0.2), seed=97),
        c("act_gelu_none", "GELU exact (erf)", layers=act("gelu", approximate="none"), seed=98),
        c("act_gelu_tanh", "GELU tanh approximation", layers=act("gelu", approximate="tanh"), seed=99),
        c("act_tanh", "Tanh", layers=act("tanh"), seed=100),
        c("act_sigmoid", "Sigmoid", layers=act("sigmoid"), opt={"type": "adam", "lr": 0.02}, seed=101),
        c("act_relu", "ReLU", layers=act("relu"), seed=102),
        c("no_bias_layer", "fc1 with bias false (no fc1.bias in the state_dict)", layers=mlp(bias1=False), seed=103),
        c("unnamed_3_layer", "3 linear layers without names and a dropout p=0: state_dict keys 0., 3., 5.",
          layers=[dict(type="linear", in_features=6, out_features=10), dict(type="tanh"),
                  dict(type="dropout", p=0.0), dict(type="linear", in_features=10, out_features=6),
                  dict(type="relu"), dict(type="linear", in_features=6, out_features=2)],
          data=dict(task="regression", n_train=64, n_val=32, k=2), seed=104),
        c("mixed_names", "named and unnamed layers mixed, 2 outputs",
          layers=[dict(type="linear", name="encoder", in_features=6, out_features=8), dict(type="gelu"),
                  dict(type="linear", in_features=8, out_features=2)],
          data=dict(task="regression", n_train=64, n_val=32, k=2), seed=105),
        c("drop_last", "60 rows, batch 8, drop_last true: 7 steps per epoch, the last 4 rows never used",
          data=dict(task="regression", n_train=60, n_val=16), drop_last=True, epochs=16, seed=106),
        c("partial_last_batch", "60 rows, batch 8, drop_last false: a last batch of 4 rows; train_loss weights "
          "batches by rows", data=dict(task="regression", n_train=60, n_val=16), epochs=13, seed=107),
        c("batch_size_1", "batch_size 1, 50 rows, 3 epochs (150 steps)", data=dict(task="regression", n_train=50),
          opt=sgd(0.01), bs=1, epochs=3, seed=108),
        c("full_batch", "one batch per epoch (batch_size 64 = rows), 100 epochs",
          data=dict(task="regression", n_train=64, n_val=16), bs=64, epochs=100, seed=109),
        c("validation_regression_best_epoch", "validation without early stopping: best_epoch is the epoch of the "
          "lowest val_loss", data=dict(task="regression", n_train=48, n_val=32, noise=0.5),
          layers=mlp(h=24), opt={"type": "adam", "lr": 0.03}, epochs=20, seed=110),
        c("early_stopping_restore", "early stopping on val_loss, patience 2, restore_best_weights: triggers, and the "
          "weights are those of the best epoch", data=dict(task="regression", n_train=48, n_val=32, noise=0.6),
          layers=mlp(h=32), opt={"type": "adam", "lr": 0.004}, bs=4, epochs=40,
          early_stopping={"monitor": "val_loss", "patience": 2, "restore_best_weights": True},
          checks=(stopped_early, restored), seed=111),
        c("early_stopping_val_accuracy", "early stopping on val_accuracy (mode auto = max), patience 3, no restore",
          data=dict(task="class", n_train=64, n_val=32, k=3, noise=0.3), layers=mlp(k=3),
          loss={"type": "cross_entropy"}, opt={"type": "adam", "lr": 0.005}, bs=4, epochs=40,
          early_stopping={"monitor": "val_accuracy", "patience": 3, "restore_best_weights": False},
          checks=(stopped_early,), seed=112),
        c("early_stopping_train_loss_min_delta", "early stopping on train_loss (no validation), min_delta 0.002, "
          "mode min, patience 2, restore", data=dict(task="regression", n_train=64),
          opt=sgd(0.05), epochs=60,
          early_stopping={"monitor": "train_loss", "patience": 2, "min_delta": 0.002, "mode": "min",
                          "restore_best_weights": True},
          checks=(stopped_early,), seed=113),
        c("early_stopping_with_schedule", "early stopping on val_loss with a per-epoch StepLR and clipping together",
          data=dict(task="regression", n_train=48, n_val=32, noise=0.6), layers=mlp(h=32),
          opt={"type": "adam", "lr": 0.006}, bs=4, epochs=40, schedule={"type": "step", "step_size": 3, "gamma": 0.7},
          clip_grad_norm=1.0,
          early_stopping={"monitor": "val_loss", "patience": 3, "min_delta": 0.001},
          checks=(stopped_early,), seed=114),
    ]


def graph_cases():
    """The module graph: nesting, residual connections, flatten and shaped inputs, SiLU."""
    lin = lambda i, o, name=None: OrderedDict([("type", "linear")] + ([("name", name)] if name else []) +
                                              [("in_features", i), ("out_features", o)])
    adam = lambda lr=0.01: {"type": "adam", "lr": lr}
    return [
        case("residual_silu", "a residual block x + Linear(SiLU(Linear(x))) between two linear layers",
             layers=[lin(6, 8, "inp"), {"type": "silu"},
                     OrderedDict(type="residual", name="block", layers=[lin(8, 8), {"type": "silu"}, lin(8, 8)]),
                     lin(8, 1, "head")],
             data=dict(n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()), seed=201),
        case("nested_sequential_trainable", "nested sequential containers (state_dict keys body.0.weight, body.2.1.weight) "
             "with only the body trained (trainable: a container's name)",
             layers=[OrderedDict(type="sequential", name="body", layers=[
                         lin(6, 8), {"type": "tanh"},
                         OrderedDict(type="sequential", layers=[{"type": "gelu"}, lin(8, 8)])]),
                     {"type": "relu"}, lin(8, 3, "head")],
             data=dict(task="class", k=3, n_train=64, n_val=16), trainable=["body"],
             training=dict(epochs=15, batch_size=8, loss={"type": "cross_entropy"}, optimizer=adam()),
             checks=(frozen(["head"]),), seed=202),
        case("shaped_input_flatten", "rows read as [2, 3, 2] samples (model.input.shape): a linear over the last "
             "dimension, then flatten and a linear head",
             input=[2, 3, 2], layers=[lin(2, 4, "per_position"), {"type": "silu"}, {"type": "flatten"}, lin(24, 1, "head")],
             data=dict(d_in=12, n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()), seed=203),
        case("mish", "nn.Mish between two linear layers, a second Mish after a residual block",
             layers=[lin(6, 8, "fc1"), {"type": "mish"},
                     OrderedDict(type="residual", name="block", layers=[lin(8, 8), {"type": "mish"}]), lin(8, 1, "fc2")],
             data=dict(n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()), seed=205),
        case("two_residuals", "two residual blocks in a row, the second reading the first's output twice (x + f(x))",
             layers=[lin(6, 8, "inp"),
                     OrderedDict(type="residual", name="r1", layers=[{"type": "tanh"}, lin(8, 8)]),
                     OrderedDict(type="residual", name="r2", layers=[{"type": "silu"}, lin(8, 8), {"type": "gelu",
                                                                                                 "approximate": "tanh"}]),
                     lin(8, 2, "head")],
             data=dict(n_train=64, k=2),
             training=dict(epochs=15, batch_size=8, loss={"type": "huber", "delta": 0.5}, optimizer=adam(0.005)), seed=204),
    ]


def attention_cases():
    """nn.MultiheadAttention as self-attention over shaped inputs [T, D] = [6, 8]: plain, causal, in a
    residual block, without bias, with 4 heads. (Key padding needs token data: the op-level tests cover it.)

    SGD with momentum, not Adam: the key part of in_proj_bias shifts every score of a query by the
    same q . b_k, which softmax ignores, so its gradient is 0 up to rounding noise; Adam divides
    that noise by its own magnitude and random-walks b_k (float32 and float64 runs then disagree
    by thousands of tolerances), while SGD leaves it where the noise puts it, ~1e-9."""
    T, D = 6, 8
    lin = lambda i, o, name=None, **kw: OrderedDict([("type", "linear")] + ([("name", name)] if name else []) +
                                                    [("in_features", i), ("out_features", o)] + list(kw.items()))
    mha = lambda name=None, heads=2, **kw: OrderedDict([("type", "multihead_attention")] + ([("name", name)] if name else []) +
                                                       [("embed_dim", D), ("num_heads", heads)] + list(kw.items()))
    sgd = lambda lr=0.02: {"type": "sgd", "lr": lr, "momentum": 0.9}
    data = lambda **kw: dict(dict(d_in=T * D, n_train=64), **kw)
    return [
        case("mha", "MultiheadAttention(8, 2) over 6 tokens, flatten, a linear regression head",
             input=[T, D], layers=[mha("attn"), {"type": "flatten"}, lin(T * D, 1, "head")],
             data=data(n_val=16), training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=sgd()), seed=301),
        case("mha_causal", "causal MultiheadAttention (keys after the query masked with -inf), flatten, a linear head",
             input=[T, D], layers=[mha("attn", causal=True), {"type": "flatten"}, lin(T * D, 1, "head")],
             data=data(n_val=16), training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=sgd()), seed=302),
        case("mha_residual", "x + MultiheadAttention(x) in a residual block, a linear per token with SiLU, flatten, "
             "a linear head (unnamed attention: block.0.in_proj_weight)",
             input=[T, D], layers=[OrderedDict(type="residual", name="block", layers=[mha()]),
                                   lin(D, 4, "per_token"), {"type": "silu"}, {"type": "flatten"}, lin(T * 4, 1, "head")],
             data=data(), training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=sgd()), seed=303),
        case("mha_no_bias", "MultiheadAttention(8, 2, bias=False): no in_proj_bias, no out_proj.bias",
             input=[T, D], layers=[mha("attn", bias=False), {"type": "flatten"}, lin(T * D, 1, "head")],
             data=data(), training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=sgd()), seed=304),
        case("mha_4_heads", "MultiheadAttention(8, 4) (head_dim 2), causal, flatten, 3-class cross-entropy head",
             input=[T, D], layers=[mha("attn", heads=4, causal=True), {"type": "flatten"}, lin(T * D, 3, "head")],
             data=data(task="class", k=3, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "cross_entropy"}, optimizer=sgd(0.02)), seed=305),
    ]


BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def frozen_parameters(prefixes):
    """Parameters under the prefixes keep their initial values (buffers are not parameters: BatchNorm's
    running statistics still move in training mode, as in PyTorch)."""
    def fn(req, init, e, m):
        for k, v in init.items():
            if k.endswith(BUFFER_SUFFIXES):
                continue
            if any(k == p or k.startswith(p + ".") for p in prefixes):
                if not torch.equal(v, e["weights"][k]):
                    return "frozen %s changed" % k
    return fn


def running_stats_moved(req, init, e, m):
    names = [k for k in init if k.endswith(BUFFER_SUFFIXES)]
    if not names:
        return "no running statistics"
    for k in names:
        if torch.equal(init[k], e["weights"][k]):
            return "%s did not change" % k
    tracked = [k for k in names if k.endswith(".num_batches_tracked")]
    for k in tracked:
        if int(e["weights"][k]) != e["steps"]:
            return "%s is %d after %d steps" % (k, int(e["weights"][k]), e["steps"])


def norm_cases():
    """Normalisation layers: LayerNorm (after a residual block, per token, over several dims), RMSNorm,
    BatchNorm1d/2d (running statistics in validation, the cumulative average, frozen, untracked)."""
    lin = lambda i, o, name=None, bias=True: OrderedDict(
        [("type", "linear")] + ([("name", name)] if name else []) + [("in_features", i), ("out_features", o)] +
        ([] if bias else [("bias", False)]))
    # a linear layer right before BatchNorm has no bias: the batch mean cancels it, its gradient is
    # rounding noise, and Adam would turn that noise into steps of lr (as in ResNets: conv without bias, then BN)
    pre_bn = lambda i, o: lin(i, o, "fc1", bias=False)
    adam = lambda lr=0.01: {"type": "adam", "lr": lr}
    bn = lambda t, c, name="bn", **kw: OrderedDict([("type", t), ("name", name), ("num_features", c)] + list(kw.items()))
    return [
        case("residual_layer_norm", "a residual block x + Linear(GELU(Linear(x))) followed by nn.LayerNorm(8) "
             "(post-norm, as a transformer block)",
             layers=[lin(6, 8, "inp"),
                     OrderedDict(type="residual", name="block", layers=[lin(8, 16), {"type": "gelu"}, lin(16, 8)]),
                     OrderedDict(type="layer_norm", name="norm", normalized_shape=8), lin(8, 1, "head")],
             data=dict(n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()), seed=301),
        case("layer_norm_tokens", "[4, 6] samples (model.input.shape): a per-token linear, LayerNorm over each "
             "token (normalized_shape [8], a list), SiLU, then LayerNorm over both dims ([4, 8], eps 1e-3), flatten "
             "and a linear head with 2 outputs",
             input=[4, 6],
             layers=[lin(6, 8, "proj"), OrderedDict(type="layer_norm", name="token_norm", normalized_shape=[8]),
                     {"type": "silu"},
                     OrderedDict(type="layer_norm", name="sample_norm", normalized_shape=[4, 8], eps=1e-3),
                     {"type": "flatten"}, lin(32, 2, "head")],
             data=dict(d_in=24, n_train=64, n_val=16, k=2),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam(0.005)), seed=302),
        case("rms_norm_tokens", "[3, 4] samples: a per-token linear, RMSNorm over each token with the default eps "
             "(None: float32's eps), GELU, flatten, a linear head",
             input=[3, 4],
             layers=[lin(4, 8, "proj"), OrderedDict(type="rms_norm", name="norm", normalized_shape=[8]),
                     {"type": "gelu"}, {"type": "flatten"}, lin(24, 1, "head")],
             data=dict(d_in=12, n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()), seed=303),
        case("rms_norm_no_affine", "RMSNorm(8, eps=1e-6, elementwise_affine=False) between two linear layers",
             layers=[lin(6, 8, "fc1"), OrderedDict(type="rms_norm", normalized_shape=8, eps=1e-6,
                                                   elementwise_affine=False), {"type": "tanh"}, lin(8, 1, "fc2")],
             data=dict(n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()), seed=304),
        case("batch_norm1d_validation", "Linear(6, 8, bias=False), BatchNorm1d(8) in an MLP classifier: batch statistics in training, the "
             "running ones for validation; the expected state has running_mean, running_var and num_batches_tracked",
             layers=[pre_bn(6, 8), bn("batch_norm1d", 8), {"type": "tanh"}, lin(8, 3, "fc2")],
             data=dict(task="class", k=3, n_train=64, n_val=32),
             training=dict(epochs=15, batch_size=8, loss={"type": "cross_entropy"}, optimizer=adam()),
             checks=(running_stats_moved,), seed=305),
        case("batch_norm1d_cumulative", "BatchNorm1d(8, momentum=None): the running statistics are the cumulative "
             "average (factor 1 / num_batches_tracked); 60 rows in batches of 8 leave a last batch of 4 (its "
             "unbiased variance divides by 3)",
             layers=[pre_bn(6, 8), bn("batch_norm1d", 8, momentum=None), {"type": "silu"}, lin(8, 1, "fc2")],
             data=dict(n_train=60, n_val=16),
             training=dict(epochs=13, batch_size=8, loss={"type": "mse"}, optimizer={"type": "sgd", "lr": 0.05,
                                                                                     "momentum": 0.5}),
             checks=(running_stats_moved,), seed=306),
        case("batch_norm2d", "[2, 3, 3] samples: a linear over the last dim, BatchNorm2d(2) (statistics over the "
             "batch and the 3x3 positions), SiLU, flatten and a linear head; validation on the running statistics",
             input=[2, 3, 3],
             layers=[lin(3, 3, "mix"), bn("batch_norm2d", 2), {"type": "silu"}, {"type": "flatten"},
                     lin(18, 1, "head")],
             data=dict(d_in=18, n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()),
             checks=(running_stats_moved,), seed=307),
        case("batch_norm_frozen", "BatchNorm1d(8, momentum 0.3) frozen (trainable: fc1 and fc2): its weight and "
             "bias stay, its running statistics still move in training mode",
             layers=[pre_bn(6, 8), bn("batch_norm1d", 8, momentum=0.3), {"type": "gelu"}, lin(8, 1, "fc2")],
             data=dict(n_train=64, n_val=16), trainable=["fc1", "fc2"],
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=adam()),
             checks=(frozen_parameters(["bn"]), running_stats_moved), seed=308),
        case("batch_norm1d_untracked", "BatchNorm1d(8, affine=False, track_running_stats=False) on [8, 2] samples "
             "([C, L]): batch statistics in training and in validation (16 validation rows: one chunk of "
             "batch_size 16, as PyTorch's one validation batch), no buffers",
             input=[8, 2],
             layers=[lin(2, 2, "mix"),
                     OrderedDict(type="batch_norm1d", name="bn", num_features=8, affine=False, track_running_stats=False),
                     {"type": "tanh"}, {"type": "flatten"}, lin(16, 1, "head")],
             data=dict(d_in=16, n_train=64, n_val=16),
             training=dict(epochs=30, batch_size=16, loss={"type": "mse"}, optimizer=adam()), seed=309),
    ]


def token_cases():
    """Token models: embedding, position_embedding and pool (mean, max, cls, last) over padded rows
    with an attention mask, and a per-token tagger whose padding is labelled -100."""
    lin = lambda i, o, name=None: OrderedDict([("type", "linear")] + ([("name", name)] if name else []) +
                                              [("in_features", i), ("out_features", o)])
    emb = lambda num, dim, name="emb", padding_idx=None: OrderedDict(
        [("type", "embedding"), ("name", name), ("num_embeddings", num), ("embedding_dim", dim)] +
        ([("padding_idx", padding_idx)] if padding_idx is not None else []))
    pos = lambda num, dim: OrderedDict(type="position_embedding", name="pos", num_embeddings=num, embedding_dim=dim)
    pool = lambda mode: OrderedDict(type="pool", mode=mode)
    ce = {"type": "cross_entropy"}
    adam = lambda lr=0.01: {"type": "adam", "lr": lr}
    tok = lambda **kw: dict(dict(task="tokens", n_train=64, n_val=32), **kw)
    return [
        case("embedding_mean_pool_classifier", "embedding (no padding_idx) + pool(mean) over padded rows with an "
             "attention mask + linear head; cross-entropy with validation",
             layers=[emb(16, 8), pool("mean"), lin(8, 3, "head")], data=tok(),
             training=dict(epochs=15, batch_size=8, loss=ce, optimizer=adam()), seed=301),
        case("padding_idx_positions_max_pool", "embedding with padding_idx 0 (its row gets no gradient) + "
             "position_embedding + pool(max) + tanh + linear head",
             layers=[emb(16, 8, padding_idx=0), pos(8, 8), pool("max"), {"type": "tanh"}, lin(8, 3, "head")],
             data=tok(T=8), training=dict(epochs=15, batch_size=8, loss=ce, optimizer=adam(0.005)), seed=302),
        case("cls_pool", "embedding + position_embedding + a per-token linear and GELU, then pool(cls): token 0",
             layers=[emb(12, 6), pos(6, 6), lin(6, 6, "mix"), {"type": "gelu"}, pool("cls"), lin(6, 3, "head")],
             data=tok(vocab=12), training=dict(epochs=15, batch_size=8, loss=ce, optimizer=adam()), seed=303),
        case("last_pool", "embedding with padding_idx 0 + position_embedding + pool(last): the last token with mask 1 "
             "(rows of different lengths)",
             layers=[emb(12, 6, padding_idx=0), pos(7, 6), pool("last"), lin(6, 3, "head")],
             data=tok(vocab=12, T=7, min_len=1), training=dict(epochs=15, batch_size=8, loss=ce, optimizer=adam()),
             seed=304),
        case("mean_pool_without_mask", "full-length rows without attention_mask (every token counts): embedding + "
             "pool(mean) + linear, SGD with momentum", layers=[emb(10, 5), pool("mean"), lin(5, 2, "head")],
             data=tok(vocab=10, k=2, mask=False, T=5),
             training=dict(epochs=15, batch_size=8, loss=ce, optimizer={"type": "sgd", "lr": 0.2, "momentum": 0.9}),
             seed=305),
        case("token_tagger", "per-token targets: embedding + linear + tanh + linear per token ([T, C] output), y a "
             "row of class indices with -100 on padding; the loss and val_accuracy count only the labelled tokens",
             layers=[emb(16, 8, padding_idx=0), lin(8, 8, "hidden"), {"type": "tanh"}, lin(8, 4, "tag")],
             data=tok(k=4, per_token=True), training=dict(epochs=15, batch_size=8, loss=ce, optimizer=adam()),
             seed=306),
        case("frozen_embedding", "trainable [\"head\"]: the embedding stays at its initial values (no backward "
             "through it); pool(mean) + linear", layers=[emb(16, 8), pool("mean"), lin(8, 3, "head")],
             data=tok(), trainable=["head"], training=dict(epochs=15, batch_size=8, loss=ce, optimizer=adam()),
             checks=(frozen(["emb"]),), seed=307),
    ]


def conv_cases():
    """Convolutions and pooling: conv1d/2d (stride, dilation, groups, padding 'same'), max / average /
    adaptive pooling with padding, ceil_mode and count_include_pad, on shaped inputs. Small on
    purpose: every ReLU input and every max-pool window is a kink whose margin the generator checks,
    and the margin shrinks with the number of them (32 rows in batches of 4: 104 steps)."""
    adam = lambda lr=0.01: {"type": "adam", "lr": lr}
    lin = lambda i, o, name="head": OrderedDict(type="linear", name=name, in_features=i, out_features=o)
    conv = lambda kind, cin, cout, k, name=None, **kw: OrderedDict(
        [("type", kind)] + ([("name", name)] if name else []) +
        [("in_channels", cin), ("out_channels", cout), ("kernel_size", k)] + list(kw.items()))
    flat = {"type": "flatten"}
    train = lambda loss="mse": dict(epochs=13, batch_size=4, loss={"type": loss}, optimizer=adam())
    data = lambda d_in, **kw: dict(d_in=d_in, n_train=32, n_val=16, **kw)
    return [
        case("cnn_max_pool", "a small CNN: conv2d 3x3, ReLU, max_pool2d 2, flatten, linear; cross-entropy",
             input=[1, 6, 6],
             layers=[conv("conv2d", 1, 2, 3, "conv"), {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 2},
                     flat, lin(8, 3)],
             data=data(36, task="class", k=3), training=train("cross_entropy"), seed=301),
        case("conv1d_stride_dilation_groups", "conv1d with kernel 3, stride 2, dilation 2 and groups 2, tanh, a linear head",
             input=[4, 12],
             layers=[conv("conv1d", 4, 6, 3, "conv", stride=2, dilation=2, groups=2), {"type": "tanh"}, flat, lin(24, 1)],
             data=data(48), training=train(), seed=302),
        case("avg_pool_padding_ceil", "avg_pool2d 3x3 stride 2 padding 1 ceil_mode without the padding in the count, "
             "then avg_pool2d 2 with divisor_override 3",
             input=[2, 7, 7],
             layers=[conv("conv2d", 2, 3, 3, "conv", padding=1), {"type": "tanh"},
                     OrderedDict(type="avg_pool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                     OrderedDict(type="avg_pool2d", kernel_size=2, divisor_override=3), flat, lin(12, 2)],
             data=data(98, k=2), training=train(), seed=303),
        case("adaptive_avg_pool_uneven", "adaptive_avg_pool2d from 5x7 to 3x4 (windows of uneven size that overlap)",
             input=[1, 7, 9],
             layers=[conv("conv2d", 1, 3, 3, "conv"), {"type": "tanh"},
                     OrderedDict(type="adaptive_avg_pool2d", output_size=[3, 4]), flat, lin(36, 1)],
             data=data(63), training=train(), seed=304),
        case("conv2d_same", "conv2d padding 'same' with kernel [2, 3] and dilation [1, 2] (the odd total padding goes "
             "to the bottom), then adaptive_avg_pool2d [None, 4] (None keeps the height)",
             input=[2, 6, 6],
             layers=[conv("conv2d", 2, 3, [2, 3], "conv", padding="same", dilation=[1, 2]), {"type": "silu"},
                     OrderedDict(type="adaptive_avg_pool2d", output_size=[None, 4]), flat, lin(72, 1)],
             data=data(72), training=train(), seed=305),
        case("max_pool_ceil_mode", "max_pool2d 3x3 stride 2 with ceil_mode (the last windows hang over the bottom "
             "and right) straight after a 2x2 convolution; cross-entropy",
             input=[1, 5, 5],
             layers=[conv("conv2d", 1, 2, 2, "conv"),
                     OrderedDict(type="max_pool2d", kernel_size=3, stride=2, ceil_mode=True), flat, lin(8, 3)],
             data=data(25, task="class", k=3), training=train("cross_entropy"), seed=306),
        case("pool1d", "conv1d padding 1, max_pool1d 3 stride 2 padding 1, a 1x1 conv1d without bias, avg_pool1d 2 "
             "with ceil_mode, adaptive_avg_pool1d 2",
             input=[2, 10],
             layers=[conv("conv1d", 2, 3, 3, "conv1", padding=1), {"type": "tanh"},
                     OrderedDict(type="max_pool1d", kernel_size=3, stride=2, padding=1),
                     conv("conv1d", 3, 4, 1, "conv2", bias=False), {"type": "tanh"},
                     OrderedDict(type="avg_pool1d", kernel_size=2, ceil_mode=True),
                     OrderedDict(type="adaptive_avg_pool1d", output_size=2), flat, lin(8, 1)],
             data=data(20), training=train(), seed=307),
        case("cnn_batch_norm", "a batch-norm CNN: conv2d without bias, BatchNorm2d (batch statistics in training, running "
             "ones for validation, num_batches_tracked), ReLU, max_pool2d, flatten, linear; cross-entropy",
             input=[1, 6, 6],
             layers=[conv("conv2d", 1, 3, 3, "conv", padding=1, bias=False),
                     OrderedDict(type="batch_norm2d", name="bn", num_features=3), {"type": "relu"},
                     {"type": "max_pool2d", "kernel_size": 2}, flat, lin(27, 3)],
             data=data(36, task="class", k=3), training=train("cross_entropy"), checks=(running_stats_moved,), seed=308),
    ]


def transformer_cases():
    """nn.TransformerEncoderLayer: over shaped float inputs (post-norm, ReLU; two layers, pre-norm, GELU),
    over embeddings with padded rows (the key-padding mask, mean pooling), and a small causal LM
    (token and position embeddings, a causal pre-norm layer, a per-token head over the vocabulary,
    next-token targets with -100 after each sequence). dropout 0 (our masks are not torch's).
    SGD with momentum, not Adam: see attention_cases (the key bias's gradient is rounding noise)."""
    T, D = 6, 8
    lin = lambda i, o, name=None: OrderedDict([("type", "linear")] + ([("name", name)] if name else []) +
                                              [("in_features", i), ("out_features", o)])
    enc = lambda name=None, **kw: OrderedDict([("type", "transformer_encoder_layer")] + ([("name", name)] if name else []) +
                                              [("d_model", D), ("nhead", 2), ("dim_feedforward", 16), ("dropout", 0.0)] +
                                              list(kw.items()))
    emb = lambda num, name="emb": OrderedDict(type="embedding", name=name, num_embeddings=num, embedding_dim=D)
    pos = lambda num: OrderedDict(type="position_embedding", name="pos", num_embeddings=num, embedding_dim=D)
    sgd = lambda lr=0.02: {"type": "sgd", "lr": lr, "momentum": 0.9}
    ce = {"type": "cross_entropy"}
    return [
        case("encoder_post_norm", "TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0) over [6, 8] feature "
             "rows (post-norm, ReLU), flatten, a linear regression head",
             input=[T, D], layers=[enc("encoder"), {"type": "flatten"}, lin(T * D, 1, "head")],
             data=dict(d_in=T * D, n_train=64, n_val=16),
             training=dict(epochs=15, batch_size=8, loss={"type": "mse"}, optimizer=sgd()), seed=501),
        case("encoder_two_layers_pre_norm", "two TransformerEncoderLayers in a sequential (encoder.0, encoder.1), "
             "pre-norm (norm_first) with GELU and layer_norm_eps 1e-6, then a 3-class head on the flattened tokens",
             input=[T, D], layers=[OrderedDict(type="sequential", name="encoder", layers=[
                 enc(norm_first=True, activation="gelu", layer_norm_eps=1e-6),
                 enc(norm_first=True, activation="gelu", layer_norm_eps=1e-6)]),
                 {"type": "flatten"}, lin(T * D, 3, "head")],
             data=dict(d_in=T * D, n_train=64, n_val=16, task="class", k=3),
             training=dict(epochs=15, batch_size=8, loss=ce, optimizer=sgd(0.01)), seed=502),
        case("embedding_encoder_padding", "token ids with padding: embedding, position_embedding, a "
             "TransformerEncoderLayer given the mask as src_key_padding_mask, mean pooling over the real tokens, "
             "a 3-class head",
             layers=[emb(16), pos(T), enc("encoder"), OrderedDict(type="pool", mode="mean"), lin(D, 3, "head")],
             data=dict(task="tokens", n_train=64, n_val=32, T=T, vocab=16, k=3),
             training=dict(epochs=15, batch_size=8, loss=ce, optimizer=sgd()), seed=503),
        case("causal_lm", "a small causal language model: token and position embeddings, a causal pre-norm "
             "TransformerEncoderLayer (GELU), a linear head over the 12-token vocabulary at every position; "
             "next-token targets, -100 after each sequence's end",
             layers=[OrderedDict(type="embedding", name="tok", num_embeddings=12, embedding_dim=D),
                     pos(8), enc("block", causal=True, norm_first=True, activation="gelu"), lin(D, 12, "lm_head")],
             data=dict(task="lm", n_train=64, n_val=16, T=8, vocab=12),
             training=dict(epochs=15, batch_size=8, loss=ce, optimizer=sgd(0.05)), seed=504),
    ]


def hf_model(config, task):
    """request.model.huggingface."""
    return OrderedDict(config=config, task=task)


def hf_labels(*names):
    """config.json's id2label and label2id for these class names."""
    return dict(id2label=OrderedDict((str(i), n) for i, n in enumerate(names)),
                label2id=OrderedDict((n, i) for i, n in enumerate(names)))


def hf_bert(**kw):
    """A tiny BertForSequenceClassification config.json (dropout 0, initializer_range 0.2)."""
    c = OrderedDict(architectures=["BertForSequenceClassification"], model_type="bert", vocab_size=30,
                    hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                    hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    max_position_embeddings=16, type_vocab_size=2, initializer_range=0.2, layer_norm_eps=1e-12,
                    pad_token_id=0)
    c.update(kw)
    return c


def hf_gpt2():
    """A tiny GPT2LMHeadModel config.json."""
    return OrderedDict(architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=24, n_embd=16, n_layer=2,
                       n_head=4, n_positions=16, n_inner=None, activation_function="gelu_new", resid_pdrop=0.0,
                       embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, initializer_range=0.2,
                       bos_token_id=23, eos_token_id=23)


def hf_llama(**kw):
    """A tiny LlamaForCausalLM config.json (4 query heads sharing 2 key/value heads)."""
    c = OrderedDict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32, hidden_size=16,
                    intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    hidden_act="silu", max_position_embeddings=16, rms_norm_eps=1e-6, initializer_range=0.2,
                    rope_theta=10000.0, attention_bias=False, attention_dropout=0.0, bos_token_id=1,
                    eos_token_id=2)
    c.update(kw)
    return c


def huggingface_cases():
    """Hugging Face Hub architectures from config.json (model.huggingface), trained through the plain-PyTorch
    references of test/parity/huggingface.py, with Hub state_dict names: BERT and DistilBERT sequence
    classification over padded rows (BERT also with text-pair token_type_ids), GPT-2 and Llama causal LMs
    (labels = input_ids with padding -100, shifted inside the model; Llama with grouped-query attention
    and a tied lm_head, and with one key/value head and an untied lm_head). Dropout probabilities 0 in
    the configs; initializer_range 0.2 rather than 0.02 so that the tiny models' attention is far from
    uniform. Each case also stores expected.logits: the reference's logits for the expected weights.
    SGD with momentum where a key bias exists (BERT, DistilBERT, GPT-2's c_attn): its gradient is rounding
    noise (see attention_cases). Llama has no key bias (and RoPE would give it a real gradient): Adam."""
    sgd = lambda lr: {"type": "sgd", "lr": lr, "momentum": 0.9}
    ce = {"type": "cross_entropy"}
    hfm, bert, llama, gpt2 = hf_model, hf_bert, hf_llama, hf_gpt2()
    labels = lambda *names: hf_labels(*names)["id2label"]
    label_ids = lambda *names: hf_labels(*names)["label2id"]
    three = ("negative", "neutral", "positive")
    distilbert = OrderedDict(architectures=["DistilBertForSequenceClassification"], model_type="distilbert",
                             vocab_size=30, dim=16, n_layers=2, n_heads=2, hidden_dim=32, activation="gelu",
                             dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, max_position_embeddings=16,
                             initializer_range=0.2, pad_token_id=0, id2label=labels(*three), label2id=label_ids(*three))

    return [
        case("bert_seqcls_padding", "BertForSequenceClassification (hidden 16, 2 layers, 4 heads, GELU erf, post-LN, "
             "pooler tanh on token 0), 3 labels from id2label, [CLS] a [SEP] rows of 3 to 8 tokens padded with "
             "attention_mask 0 (extended mask (1 - mask) * float32 min), with validation",
             huggingface=hfm(bert(id2label=labels(*three), label2id=label_ids(*three)), "sequence-classification"),
             data=dict(task="hf_cls", n_train=64, n_val=32, T=8, vocab=30, k=3, min_len=3),
             training=dict(epochs=26, batch_size=16, loss=ce, optimizer=sgd(0.005)), seed=601),
        case("bert_seqcls_pairs", "BertForSequenceClassification over text pairs [CLS] a [SEP] b [SEP] with "
             "token_type_ids 0 then 1 (0 on padding), hidden 12 with 2 heads, num_labels absent (default 2)",
             huggingface=hfm(bert(hidden_size=12, num_attention_heads=2, intermediate_size=24), "sequence-classification"),
             data=dict(task="hf_cls", n_train=64, n_val=16, T=10, vocab=30, k=2, min_len=5, pairs=True),
             training=dict(epochs=26, batch_size=16, loss=ce, optimizer=sgd(0.005)), seed=602),
        case("distilbert_seqcls", "DistilBertForSequenceClassification (dim 16, 2 layers, 2 heads; q scaled before "
             "q k^T, padded keys masked_fill'ed with float32 min; pre_classifier, ReLU, classifier on token 0), "
             "3 labels, padded rows",
             huggingface=hfm(distilbert, "sequence-classification"),
             data=dict(task="hf_cls", n_train=64, n_val=16, T=8, vocab=30, k=3, min_len=3),
             training=dict(epochs=26, batch_size=16, loss=ce, optimizer=sgd(0.005)), seed=603),
        # no training.loss: the loss is the one the head's forward picks (hf.sequence_classification_loss)
        case("bert_seqcls_multilabel", "BertForSequenceClassification with config problem_type "
             "multi_label_classification and no training.loss: BCEWithLogitsLoss over 3 labels, multi-hot rows",
             huggingface=hfm(bert(id2label=labels(*three), label2id=label_ids(*three),
                                  problem_type="multi_label_classification"), "sequence-classification"),
             data=dict(task="hf_cls", n_train=64, n_val=16, T=8, vocab=30, k=3, min_len=3, labels="multi"),
             training=dict(epochs=26, batch_size=16, optimizer=sgd(0.02)), seed=607),
        case("distilbert_seqcls_float_labels", "DistilBertForSequenceClassification without problem_type and no "
             "training.loss, 3 labels given as multi-hot rows of floats: forward's rule (num_labels > 1, labels "
             "not torch.long) picks multi_label_classification, BCEWithLogitsLoss",
             huggingface=hfm(distilbert, "sequence-classification"),
             data=dict(task="hf_cls", n_train=64, n_val=16, T=8, vocab=30, k=3, min_len=3, labels="multi"),
             training=dict(epochs=26, batch_size=16, optimizer=sgd(0.02)), seed=608),
        case("bert_seqcls_regression", "BertForSequenceClassification with num_labels 1 and no training.loss: "
             "forward's rule picks regression, MSELoss over one float per row",
             huggingface=hfm(bert(num_labels=1), "sequence-classification"),
             data=dict(task="hf_cls", n_train=64, n_val=16, T=8, vocab=30, k=1, min_len=3, labels="value"),
             training=dict(epochs=26, batch_size=16, optimizer=sgd(0.005)), seed=609),
        case("gpt2_causal_lm", "GPT2LMHeadModel (n_embd 16, 2 layers, 4 heads, gelu_new, Conv1D weights [in, out], "
             "lm_head tied to wte and absent from the weights), rows of 4 to 8 tokens padded with id 0, no y: labels "
             "= input_ids with padding -100, shifted inside the model",
             huggingface=hfm(gpt2, "causal-lm"),
             data=dict(task="hf_lm", n_train=64, T=8, vocab=24, min_len=4),
             training=dict(epochs=13, batch_size=8, loss=ce, optimizer=sgd(0.01)), seed=604),
        case("llama_gqa_tied", "LlamaForCausalLM (hidden 16, 2 layers, 4 query heads sharing 2 key/value heads, RoPE "
             "theta 10000, RMSNorm, SwiGLU), tie_word_embeddings true (no lm_head.weight; the padding row of "
             "embed_tokens, pad_token_id 0, gets only the lm_head's gradient), padded rows, no y",
             huggingface=hfm(llama(pad_token_id=0, tie_word_embeddings=True), "causal-lm"),
             data=dict(task="hf_lm", n_train=64, T=8, vocab=32, min_len=4),
             training=dict(epochs=13, batch_size=8, loss=ce, optimizer={"type": "adam", "lr": 0.001}), seed=605),
        case("llama_untied", "LlamaForCausalLM with one key/value head (multi-query), RoPE theta 500000, "
             "attention_bias false, an untied lm_head.weight, no pad_token_id, rows of 4 to 10 tokens",
             huggingface=hfm(llama(vocab_size=28, num_key_value_heads=1, rope_theta=500000.0, tie_word_embeddings=False),
                             "causal-lm"),
             data=dict(task="hf_lm", n_train=64, T=10, vocab=28, min_len=4),
             training=dict(epochs=26, batch_size=16, loss=ce, optimizer=sgd(0.005)), seed=606),
    ]


def lora_checks(req, init, e, m, adapter_init):
    """An adapter run trains exactly what PEFT trains: every tensor of the adapter state moved, and in the
    merged model every base tensor that is not an adapted weight, a saved bias or a modules_to_save copy
    is bit-identical to the initial one."""
    for k, v in adapter_init.items():
        if torch.equal(v, e["adapter"][k]):
            return "adapter tensor %s did not change" % k
    may_change = set()
    for k in e["adapter"]:
        name = k[len("base_model.model."):]
        if ".lora_" in name:  # the adapted layer's weight
            may_change.add(name.split(".lora_")[0] + ".weight")
        elif name.endswith(".base_layer.bias"):
            may_change.add(name[: -len(".base_layer.bias")] + ".bias")
        else:  # a modules_to_save copy or a bias under its base name
            may_change.add(name)
    for k, v in init.items():
        if k in may_change:
            if torch.equal(v, e["merged"][k]):
                return "merged %s equals the base" % k
        elif not torch.equal(v, e["merged"][k]):
            return "frozen base tensor %s changed" % k


lora_checks.wants_adapter = True


def lora_cases():
    """LoRA adapters (request.adapter) with PEFT's semantics and names, trained through lora.py (the
    plain-PyTorch reference of PEFT v0.20.0's LoRA) on the Hugging Face references and on a layers
    model. Each case stores initial_adapter_weights (PEFT names: the fresh adapter of
    get_peft_model after torch.manual_seed(training.seed), or a given one), and expects the adapter
    state (adapter_model.safetensors names), adapter_config.json and the merged model (base names)."""
    ce = {"type": "cross_entropy"}
    adam = lambda lr: {"type": "adam", "lr": lr}
    hfm, llama, gpt2 = hf_model, hf_llama, hf_gpt2()
    three = ("negative", "neutral", "positive")
    bert = hf_bert(**hf_labels(*three))

    cls_data = dict(task="hf_cls", n_train=64, n_val=32, T=8, vocab=30, k=3, min_len=3)
    return [
        case("lora_bert_query_value", "BertForSequenceClassification (hidden 16, 2 layers, 3 labels) with LoRA r 4, "
             "lora_alpha 8 (scaling 2) on query and value, modules_to_save [classifier] (adapter_config: "
             "[classifier, classifier, score], as PeftModelForSequenceClassification extends it), continuing a given "
             "adapter: lora_B non-zero, the classifier's copy already moved from the base's",
             huggingface=hfm(bert, "sequence-classification"), data=cls_data,
             adapter=dict(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]),
             adapter_given=dict(b_std=0.2, saved_std=0.1),
             training=dict(epochs=26, batch_size=16, loss=ce, optimizer=adam(0.003)), checks=[lora_checks], seed=715),
        case("lora_llama_rslora", "LlamaForCausalLM (GQA 4/2 heads, tied lm_head, pad_token_id 0) with rsLoRA: r 4, "
             "lora_alpha 16, use_rslora (scaling 16 / sqrt(4) = 8) on q_proj, v_proj, o_proj (v_proj [16 -> 8]: "
             "lora_B [8, 4]); adapter_config carries model_type llama (Workers AI)",
             huggingface=hfm(llama(pad_token_id=0, tie_word_embeddings=True), "causal-lm"),
             data=dict(task="hf_lm", n_train=64, T=8, vocab=32, min_len=4),
             adapter=dict(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], use_rslora=True),
             training=dict(epochs=13, batch_size=8, loss=ce, optimizer=adam(0.002)), checks=[lora_checks], seed=702),
        case("lora_gpt2_c_attn", "GPT2LMHeadModel with LoRA r 4, lora_alpha 8 on c_attn, a Conv1D (weight [in 16, "
             "out 48]): lora_A [4, 16], lora_B [48, 4], fan_in_fan_out true in adapter_config, merged c_attn.weight "
             "= W0 + (2 B A)^T; biases frozen (bias none)",
             huggingface=hfm(gpt2, "causal-lm"), data=dict(task="hf_lm", n_train=64, T=8, vocab=24, min_len=4),
             adapter=dict(r=4, lora_alpha=8, target_modules=["c_attn"]),
             training=dict(epochs=13, batch_size=8, loss=ce, optimizer=adam(0.005)), checks=[lora_checks], seed=703),
        case("lora_mlp", "a model.layers MLP (fc1 6 -> 8, ReLU, fc2 8 -> 1) with LoRA r 3, lora_alpha 6 on fc1 and "
             "bias lora_only: fc1's bias trains and is saved as base_model.model.fc1.base_layer.bias, fc2 stays "
             "frozen; task_type null, auto_mapping torch.nn.Sequential",
             layers=mlp(), data=dict(n_train=64, n_val=16),
             adapter=dict(r=3, lora_alpha=6, target_modules=["fc1"], bias="lora_only"),
             training=dict(epochs=13, batch_size=8, loss={"type": "mse"}, optimizer=adam(0.01)), checks=[lora_checks],
             seed=704),
        case("lora_all_linear", "target_modules \"all-linear\" on an untied LlamaForCausalLM (one key/value head): "
             "the 7 linear layers of each decoder layer, not lm_head (the output embeddings); saved as the sorted "
             "list of the 14 module names; r 2, lora_alpha 4",
             huggingface=hfm(llama(vocab_size=28, num_key_value_heads=1, tie_word_embeddings=False), "causal-lm"),
             data=dict(task="hf_lm", n_train=64, T=8, vocab=28, min_len=4),
             adapter=dict(r=2, lora_alpha=4, target_modules="all-linear"),
             training=dict(epochs=13, batch_size=8, loss=ce, optimizer=adam(0.005)), checks=[lora_checks], seed=705),
        case("lora_bert_embedding", "LoRA on BERT's word_embeddings (nn.Embedding, padding_idx 0) and query, r 4, "
             "lora_alpha 4: lora_embedding_A [4, 30] (zeros at init, no gradient into column 0), lora_embedding_B "
             "[16, 4] (normal_), merged word_embeddings = W0 + (B A)^T; the classifier trains in full (SEQ_CLS, "
             "modules_to_save null -> [classifier, score])",
             huggingface=hfm(bert, "sequence-classification"), data=cls_data,
             adapter=dict(r=4, lora_alpha=4, target_modules=["word_embeddings", "query"]),
             training=dict(epochs=26, batch_size=16, loss=ce, optimizer=adam(0.003)), checks=[lora_checks], seed=722),
    ]


# --------------------------------------------------------------------------- init.json

def kaiming_bounds(fan_in):
    a = math.sqrt(5)
    gain = math.sqrt(2.0 / (1 + a ** 2))
    std = gain / math.sqrt(fan_in)
    return math.sqrt(3.0) * std, 1 / math.sqrt(fan_in)


def init_fixture():
    lin = lambda i, o, name=None, bias=True: OrderedDict(
        [("type", "linear")] + ([("name", name)] if name else []) + [("in_features", i), ("out_features", o)] +
        ([] if bias else [("bias", False)]))
    specs = [
        (0, [lin(6, 8, "fc1"), {"type": "relu"}, lin(8, 1, "fc2")]),
        (1, [lin(1, 4), {"type": "tanh"}, lin(4, 1)]),
        (42, [lin(10, 10, "a"), {"type": "relu"}, lin(10, 10, "b", bias=False), {"type": "gelu"}, lin(10, 3, "c")]),
        (12345, [lin(3, 1)]),
        (7, [lin(100, 5, "wide"), {"type": "sigmoid"}, lin(5, 2, "head")]),
        (2 ** 31 - 1, [lin(2, 3), {"type": "leaky_relu", "negative_slope": 0.1}, lin(3, 3), {"type": "relu"},
                       lin(3, 1, bias=False)]),
        (2 ** 32 + 5, [lin(6, 8, "fc1"), {"type": "relu"}, lin(8, 1, "fc2")]),
        (5, [lin(6, 8, "fc1"), {"type": "relu"}, lin(8, 1, "fc2")]),
    ]
    # nn.MultiheadAttention: out_proj (an nn.Linear: kaiming_uniform_ and uniform_ draws) is built
    # before _reset_parameters draws xavier_uniform_(in_proj_weight) and zeroes both biases
    mha = lambda E, H, name=None, **kw: OrderedDict([("type", "multihead_attention")] + ([("name", name)] if name else []) +
                                                    [("embed_dim", E), ("num_heads", H)] + list(kw.items()))
    # nn.TransformerEncoderLayer: self_attn (as above), then linear1 and linear2 draw; the norms do not
    enc = lambda **kw: OrderedDict([("type", "transformer_encoder_layer"), ("name", "encoder"), ("d_model", 8), ("nhead", 2),
                                    ("dim_feedforward", 12), ("dropout", 0.0)] + list(kw.items()))
    shaped = [
        (3, [6, 8], [mha(8, 2, "attn"), {"type": "flatten"}, lin(48, 1, "head")]),
        (21, [5, 8], [enc(), enc(name="second", norm_first=True, activation="gelu"), {"type": "flatten"}, lin(40, 2, "head")]),
        (17, [4, 6], [lin(6, 6, "inp"), mha(6, 3, bias=False, causal=True), mha(6, 1, "second")]),
        (2 ** 31 - 1, [5, 4], [OrderedDict(type="residual", name="block", layers=[mha(4, 2)]), lin(4, 2)]),
    ]
    # token layers: nn.Embedding's normal_ below 16 elements (double Box-Muller), at 16, at a size
    # that is not a multiple of 16 (the last block redrawn), with padding_idx (the row zeroed after
    # the draw); the linear after them checks that the stream continues where torch's does
    emb = lambda num, dim, name=None, padding_idx=None: OrderedDict(
        [("type", "embedding")] + ([("name", name)] if name else []) + [("num_embeddings", num), ("embedding_dim", dim)] +
        ([("padding_idx", padding_idx)] if padding_idx is not None else []))
    pos = lambda num, dim: OrderedDict(type="position_embedding", name="pos", num_embeddings=num, embedding_dim=dim)
    token_specs = [
        (0, [emb(3, 4, "emb"), lin(4, 2, "head")]),
        (1, [emb(4, 4, "emb", padding_idx=2), lin(4, 3, "head")]),
        (42, [emb(7, 5, "emb", padding_idx=-1), pos(6, 5), {"type": "pool", "mode": "mean"}, lin(5, 3, "head")]),
        (7, [emb(100, 16, "emb", padding_idx=0), pos(3, 16), lin(16, 4, "head")]),
    ]
    # convolutions: fan_in = in_channels / groups * prod(kernel_size); (seed, input shape, layers)
    conv = lambda kind, cin, cout, k, name=None, **kw: OrderedDict(
        [("type", kind)] + ([("name", name)] if name else []) +
        [("in_channels", cin), ("out_channels", cout), ("kernel_size", k)] + list(kw.items()))
    conv_specs = [
        (3, [1, 8, 8], [conv("conv2d", 1, 4, 3, "conv1", padding=1), {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 2},
                        conv("conv2d", 4, 6, [2, 3], "conv2", groups=2), {"type": "flatten"}, lin(6 * 3 * 2, 2, "head")]),
        (11, [6, 20], [conv("conv1d", 6, 4, 5, stride=2, groups=2, bias=False), {"type": "tanh"},
                       conv("conv1d", 4, 3, 1), {"type": "flatten"}, lin(24, 1)]),
    ]
    cases = []
    for seed, shape, layers in [(s, None, L) for s, L in specs] + shaped:
        torch.manual_seed(seed)
        model = build_model(layers)
        bounds = OrderedDict()
        for i, L in enumerate(layers):
            if L["type"] == "linear":
                wb, bb = kaiming_bounds(L["in_features"])
                bounds[layer_name(i, L)] = OrderedDict(weight=wb, bias=bb if L.get("bias", True) else None)
        c = OrderedDict(seed=seed, layers=layers, bounds=bounds, weights=state_to_json(model.state_dict()))
        if shape is not None:
            c["input"] = OrderedDict(shape=shape)
        cases.append(c)
    a, b = cases[len(specs) - 2]["weights"], cases[len(specs) - 1]["weights"]
    assert a == b, "seed 2**32 + 5 should equal seed 5 (torch keeps the low 32 bits)"
    for seed, layers in token_specs:
        torch.manual_seed(seed)
        model = build_model(layers)
        cases.append(OrderedDict(seed=seed, layers=layers, bounds=OrderedDict(), weights=state_to_json(model.state_dict())))

    # edgetune reproduces the AVX2 kernel's float32 arithmetic (rng.ts fillNormal): another build of
    # torch (AVX-512 dispatch, no AVX2) draws other values
    assert "CPU capability usage: AVX2" in torch.__config__.show(), "normal_ fixtures expect torch's AVX2 CPU kernels"
    normal = []
    for s, n, mean, std in ((0, 12, 0.0, 1.0), (3, 16, 0.0, 1.0), (5, 35, 0.5, 2.0), (9, 1000, -1.0, 0.1), (11, 2048, 0.0, 1.0)):
        torch.manual_seed(s)
        normal.append(OrderedDict(seed=s, n=n, mean=mean, std=std, values=torch.empty(n).normal_(mean, std).tolist()))

    for seed, shape, layers in conv_specs:
        torch.manual_seed(seed)
        model = build_model(layers)
        bounds = OrderedDict()
        for i, L in enumerate(layers):
            if L["type"] in ("linear", "conv1d", "conv2d"):
                ks = L.get("kernel_size", 1)
                fan_in = L["in_features"] if L["type"] == "linear" else \
                    L["in_channels"] // L.get("groups", 1) * int(np.prod(ks if isinstance(ks, list) else [ks]))
                wb, bb = kaiming_bounds(fan_in)
                bounds[layer_name(i, L)] = OrderedDict(weight=wb, bias=bb if L.get("bias", True) else None)
        model(torch.zeros(2, *shape))  # the shapes chain
        cases.append(OrderedDict(seed=seed, input=OrderedDict(shape=shape), layers=layers, bounds=bounds, weights=state_to_json(model.state_dict())))

    mt = OrderedDict()
    for s in (0, 1, 42, 5489, 12345, 2 ** 31 - 1):
        g = torch.Generator().manual_seed(s)
        v = torch.empty(5, dtype=torch.int64).random_(-2 ** 63, None, generator=g).tolist()
        raw = []
        for x in v:
            u = x & (2 ** 64 - 1)
            raw += [u >> 32, u & 0xFFFFFFFF]
        ref = np.random.RandomState(s).randint(0, 2 ** 32, size=10, dtype=np.uint64).tolist()
        assert raw == ref, "torch mt19937 differs from numpy's init_genrand stream"
        mt[str(s)] = raw

    uniform = []
    for s, lo, hi, n in ((0, -0.5, 0.5, 16), (1, 0.0, 1.0, 16), (42, -1.0 / math.sqrt(6), 1.0 / math.sqrt(6), 16),
                         (12345, -0.1, 0.7, 16), (3, kaiming_bounds(7)[0] * -1, kaiming_bounds(7)[0], 16)):
        torch.manual_seed(s)
        vals = torch.empty(n).uniform_(lo, hi)
        # verify the documented formula (computed in double, then rounded to float32)
        raw = np.random.RandomState(s).randint(0, 2 ** 32, size=n, dtype=np.uint64)
        f, t = np.float32(lo), np.float32(hi)
        rng = np.float32(t - f)
        mine = ((raw & 0xFFFFFF).astype(np.float64) * 2.0 ** -24 * np.float64(rng) + np.float64(f)).astype(np.float32)
        assert (mine == vals.numpy()).all(), "uniform_ formula mismatch"
        uniform.append(OrderedDict(seed=s, low=lo, high=hi, values=vals.tolist()))

    return OrderedDict(
        generator=GENERATOR, torch_version=torch.__version__,
        description=("PyTorch default initialisation. torch.manual_seed(seed) seeds mt19937 with the low 32 bits of "
                     "the seed (init_genrand); each nn.Linear, in layer order, fills weight [out,in] row-major and then "
                     "bias with uniform_(-bound, bound): one 32-bit output r per element, "
                     "value = float32((r & 0xFFFFFF) * 2^-24 * float32(float32(high) - float32(low)) + float32(low)) "
                     "evaluated in double. weight bound = sqrt(3) * (sqrt(2 / (1 + sqrt(5)^2)) / sqrt(fan_in)), "
                     "bias bound = 1 / sqrt(fan_in) (both in double, as torch computes them). nn.Conv1d/2d the same "
                     "over weight [out, in/groups, k...] with fan_in = in/groups * prod(kernel_size). "
                     "nn.MultiheadAttention: out_proj, an nn.Linear, draws first; then xavier_uniform_(in_proj_weight) "
                     "with a = sqrt(3) * sqrt(2 / (fan_in + fan_out)); both biases 0. Cases with `input` read rows as "
                     "that shape. nn.Embedding (and position_embedding) draw normal_(0, 1): torch's CPU normal_ (AVX2 "
                     "build: float32 Box-Muller over blocks of 16 uniforms from 16 elements on, double Box-Muller "
                     "below); `normal` holds normal_(mean, std) samples of n elements after manual_seed(seed)."),
        cases=cases, mt19937=mt, uniform=uniform, normal=normal)


# --------------------------------------------------------------------------- main

GROUPS = OrderedDict(
    optimizers=optimizer_cases,
    losses=loss_cases,
    schedules=schedule_cases,
    training=training_cases,
    graph=graph_cases,
    attention=attention_cases,
    norm=norm_cases,
    tokens=token_cases,
    conv=conv_cases,
    transformer=transformer_cases,
    huggingface=huggingface_cases,
    lora=lora_cases,
)


def write_json(path, obj, per_case=True):
    """Compact JSON, one case per line (valid JSON, diff-friendly)."""
    with open(path, "w") as f:
        head = OrderedDict((k, v) for k, v in obj.items() if k != "cases")
        f.write("{\n")
        for k, v in head.items():
            f.write("%s: %s,\n" % (json.dumps(k), json.dumps(v, separators=(",", ":"), allow_nan=False)))
        f.write('"cases": [\n')
        for i, cse in enumerate(obj["cases"]):
            f.write(json.dumps(cse, separators=(",", ":"), allow_nan=False))
            f.write(",\n" if i + 1 < len(obj["cases"]) else "\n")
        f.write("]\n}\n")
    json.load(open(path))  # sanity


def is_f32(v):
    return float(np.float32(v)) == v


def verify():
    """Replay every written fixture from its JSON alone and require a bit-identical result."""
    n = 0
    for group in GROUPS:
        path = os.path.join(FIXTURES, group + ".json")
        doc = json.load(open(path))
        for c in doc["cases"]:
            init = OrderedDict()
            for k, v in c["initial_weights"].items():
                assert all(is_f32(a) for a in v["data"]), (c["name"], k)
                init[k] = torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"])
            for ds in c["request"]["data"].values():
                assert all(is_f32(a) for row in ds.get("x", ds.get("input_ids", [])) for a in row)
            adapter_init = None
            if "initial_adapter_weights" in c:
                adapter_init = OrderedDict()
                for k, v in c["initial_adapter_weights"].items():
                    assert all(is_f32(a) for a in v["data"]), (c["name"], k)
                    adapter_init[k] = torch.tensor(v["data"], dtype=torch.float32).reshape(v["shape"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e, _ = train(c["request"], init, torch.float32, adapter_init)
            if adapter_init is not None:
                got = OrderedDict(adapter=state_to_json(e["adapter"]), adapter_config=e["adapter_config"],
                                  merged=state_to_json(e["merged"]), history=e["history"], steps=e["steps"],
                                  best_epoch=e["best_epoch"])
            else:
                got = OrderedDict(weights=state_to_json(e["weights"]), history=e["history"], steps=e["steps"],
                                  best_epoch=e["best_epoch"])
            if "huggingface" in c["request"]["model"] and adapter_init is None:
                got["logits"] = logits_json(c["request"], e["weights"])
            got = json.loads(json.dumps(got))
            assert got == c["expected"], "replay of %s/%s differs" % (group, c["name"])
            for part in STATE_PARTS:
                for k, v in c["expected"].get(part, {}).items():
                    assert all(is_f32(a) for a in v["data"]), (c["name"], part, k)
            assert c["expected"]["steps"] >= MIN_STEPS
            n += 1
    print("verified %d cases: replayed from JSON, bit-identical, all weights float32-exact" % n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated case names: run and print, write nothing")
    ap.add_argument("--verify", action="store_true", help="only replay the existing fixtures from their JSON")
    ap.add_argument("--groups", help="comma-separated groups: write only these fixture files (and not init.json)")
    args = ap.parse_args()
    if args.verify:
        return verify()
    only = set(args.only.split(",")) if args.only else None
    groups = set(args.groups.split(",")) if args.groups else None
    assert groups is None or groups <= set(GROUPS), "unknown groups: %r" % (groups - set(GROUPS))

    os.makedirs(FIXTURES, exist_ok=True)
    all_warnings = set()
    for group, fn in GROUPS.items():
        if groups is not None and group not in groups:
            continue
        cases = fn()
        names = [c["name"] for c in cases]
        assert len(names) == len(set(names)), "duplicate case names in " + group
        out = []
        for c in cases:
            if only is not None and c["name"] not in only:
                continue
            request, init_state, adapter_state, e, m, dev, seed, wl = run_case(c)
            all_warnings.update(wl)
            assert e["steps"] >= MIN_STEPS
            h = e["history"][-1]
            print("%-11s %-40s seed %-6d steps %4d epochs %3d train_loss %.6g%s  f64-dev %.2g kink %s"
                  % (group, c["name"], seed, e["steps"], len(e["history"]), h["train_loss"],
                     (" val_loss %.6g" % h["val_loss"]) if "val_loss" in h else "", dev,
                     m.as_json()["kink"]))
            out.append(fixture_case(c, request, init_state, e, m, dev, seed, adapter_state))
        if only is None:
            write_json(os.path.join(FIXTURES, group + ".json"),
                       OrderedDict(generator=GENERATOR, torch_version=torch.__version__, cases=out))
    if only is None and groups is None:
        init = init_fixture()
        path = os.path.join(FIXTURES, "init.json")
        write_json(path, init)
        print("init        %d cases, mt19937 for %d seeds, %d uniform_ samples, %d normal_ samples" %
              (len(init["cases"]), len(init["mt19937"]), len(init["uniform"]), len(init["normal"])))
    for w in sorted(all_warnings):
        print("torch warning:", w)
    if only is None:
        verify()


if __name__ == "__main__":
    main()
