"""Loads the fine-tuned model.safetensors into the plain-PyTorch GPT-2 with Hub names
(GPT2LMHeadModel of test/parity/huggingface.py, the parity tests' reference) with
load_state_dict(strict=True) and measures the held-out perplexity there, before and after.

    /usr/bin/python3 examples/tiny-gpt2/check.py tiny-gpt2-tuned

The argument is the tuned folder (or its model.safetensors); its config.json, when there, must be
this example's. Perplexity: exp of the mean next-token cross-entropy over every non-padding
label of holdout.jsonl, in eval mode, as edgetune's val_perplexity.
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "parity"))
sys.path.insert(0, os.path.join(HERE, "..", "seed-mlp"))
from huggingface import GPT2LMHeadModel, causal_labels, causal_lm_loss  # noqa: E402
from safetensors_lite import load_file  # noqa: E402


def read_json(path):
    with open(path) as f:
        return json.load(f)


def holdout():
    with open(os.path.join(HERE, "holdout.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return torch.tensor([r["input_ids"] for r in rows]), torch.tensor([r["attention_mask"] for r in rows])


def perplexity(config, weights):
    model = GPT2LMHeadModel(config)
    model.load_state_dict(load_file(weights), strict=True)
    model.eval()
    ids, mask = holdout()
    with torch.no_grad():
        loss = causal_lm_loss(model(ids, mask), causal_labels(ids, mask))
    return math.exp(float(loss))


config = read_json(os.path.join(HERE, "config.json"))
tuned = sys.argv[1] if len(sys.argv) > 1 else "tiny-gpt2-tuned"
if os.path.isdir(tuned):
    if os.path.exists(os.path.join(tuned, "config.json")) and read_json(os.path.join(tuned, "config.json")) != config:
        raise SystemExit("%s/config.json is not this example's config.json" % tuned)
    tuned = os.path.join(tuned, "model.safetensors")
torch.set_num_threads(1)
before = perplexity(config, os.path.join(HERE, "model.safetensors"))
after = perplexity(config, tuned)
print("PyTorch, held-out perplexity on the Apache License: %.2f pretrained, %.2f fine-tuned by edgetune" % (before, after))
if after >= before:
    raise SystemExit("the fine-tuned weights are not better on the held-out text")
