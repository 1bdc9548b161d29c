"""Pretrains the example's tiny GPT-2 in PyTorch and writes it as a Hugging Face Hub folder, with
the fine-tuning data the example sends to edgetune.

    /usr/bin/python3 examples/tiny-gpt2/pretrain.py

Corpora: two texts that every Debian system has, from the `base-files` package:
- /usr/share/common-licenses/GPL-3 pretrains the tokenizer and the model (all of it: nothing is
  held out; this is the "pretrained model from the Hub");
- /usr/share/common-licenses/Apache-2.0 is the user's text: its first 80% of paragraphs
  (26 of 33) fine-tune the model, the last 20% (7 paragraphs: "END OF TERMS AND CONDITIONS" and
  the appendix) are held out to measure the perplexity before and after.
Both are split into paragraphs at blank lines, each paragraph's whitespace (line breaks and
indentation) collapsed to single spaces.

Writes, next to this file:
- tokenizer.json: a byte-level BPE (GPT-2's byte-to-unicode map and pre-tokenizer, 300 merges
  learned on GPL-3, then <|endoftext|>; bpe.py) in Hugging Face tokenizers' format;
- config.json: GPT2LMHeadModel, n_embd 64, 2 layers, 4 heads, 64 positions, GPT-2's dropouts
  (the model is test/parity/huggingface.py's plain-PyTorch GPT2LMHeadModel, with Hub names);
- model.safetensors: the pretrained weights with Hub names (`transformer.*`, lm_head tied and
  absent), float16, written by hand (8-byte little-endian header length, JSON header, data);
- train.jsonl, holdout.jsonl: the Apache-2.0 rows as token ids, {"input_ids", "attention_mask"}
  per line, every row 64 ids (padding: id 0 with attention_mask 0);
- train.csv, holdout.csv: the same rows as text (a `text` column, RFC 4180 quoting), which
  tokenize to exactly those ids (for requests that send text with the tokenizer).
Each paragraph is one row, or several of at most 64 tokens cut at pre-token boundaries. No
special token is added (GPT-2's tokenizer adds none). Prints the pretrained model's
perplexity on GPL-3 and on the held-out Apache-2.0 rows. Deterministic (seeded, one thread;
about 20 s of CPU).
"""
import json
import math
import os
import re
import struct
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# the plain-PyTorch GPT2LMHeadModel with Hub names that the parity tests use (transformers'
# modeling_gpt2.py, eager attention; `transformers` is not installable here)
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "parity"))
import bpe  # noqa: E402
from huggingface import GPT2LMHeadModel, causal_labels, causal_lm_loss, init_weights  # noqa: E402

PRETRAIN = "/usr/share/common-licenses/GPL-3"
FINETUNE = "/usr/share/common-licenses/Apache-2.0"
MERGES = 300
T = 64  # tokens per row = n_positions
HOLDOUT = 0.2  # the last 20% of the fine-tuning text's paragraphs
STEPS, BATCH, LR = 400, 16, 3e-3


def paragraphs(path):
    """The file's paragraphs (split at blank lines), whitespace collapsed to single spaces."""
    with open(path, encoding="utf-8") as f:
        return [" ".join(p.split()) for p in re.split(r"\n\s*\n", f.read()) if p.strip()]


def rows(tok, paras):
    """Each paragraph as one row of at most T tokens, or several cut between pre-tokens: (text, ids)."""
    out = []
    for p in paras:
        text, ids = "", []
        for piece, piece_ids in tok.encode_pieces(p):
            if len(piece_ids) > T:
                raise ValueError("a pre-token longer than %d tokens" % T)
            if len(ids) + len(piece_ids) > T:
                out.append((text, ids))
                text, ids = "", []
            text, ids = text + piece, ids + piece_ids
        out.append((text, ids))
    for text, ids in out:  # a row's text tokenizes to its ids on its own
        assert tok.encode(text) == ids, text
    return out


def tensors(rs):
    """input_ids and attention_mask [N, T]: each row padded with id 0, attention_mask 0."""
    ids = torch.zeros(len(rs), T, dtype=torch.long)
    mask = torch.zeros(len(rs), T, dtype=torch.long)
    for i, (_, r) in enumerate(rs):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


def perplexity(model, ids, mask):
    """exp(mean next-token cross-entropy over every non-padding label of the rows, as one batch), in
    eval mode: edgetune's val_perplexity."""
    model.eval()
    with torch.no_grad():
        return math.exp(float(causal_lm_loss(model(ids, mask), causal_labels(ids, mask))))


def save_safetensors(state, path):
    """model.safetensors as the format defines it: an 8-byte little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets}} padded with spaces to 8 bytes, then the tensors'
    little-endian float16 bytes in header order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in state.items():
        data = t.detach().to(torch.float16).contiguous().numpy().astype("<f2").tobytes()
        header[name] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_jsonl(path, rs):
    with open(path, "w") as f:
        for _, r in rs:
            f.write(json.dumps({"input_ids": r + [0] * (T - len(r)), "attention_mask": [1] * len(r) + [0] * (T - len(r))},
                               separators=(",", ":")) + "\n")


def write_csv(path, rs):
    """A `text` column, RFC 4180: CRLF after each record, every text quoted (a row may start with a
    space), a quote inside doubled."""
    with open(path, "w", newline="") as f:
        f.write("text\r\n" + "".join('"%s"\r\n' % text.replace('"', '""') for text, _ in rs))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gpl, apache = paragraphs(PRETRAIN), paragraphs(FINETUNE)

    tok = bpe.Tokenizer(bpe.train("\n\n".join(gpl), MERGES))
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": len(tok), "n_positions": T, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_inner": None,
        "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "tie_word_embeddings": True,
        "bos_token_id": tok.eos_id, "eos_token_id": tok.eos_id,
    }

    pre_ids, pre_mask = tensors(rows(tok, gpl))
    cut = len(apache) - round(HOLDOUT * len(apache))
    train_rows, holdout_rows = rows(tok, apache[:cut]), rows(tok, apache[cut:])
    hold_ids, hold_mask = tensors(holdout_rows)

    model = init_weights(GPT2LMHeadModel(config), 0)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)
    # linear warm-up over 100 steps, then cosine decay to a tenth of LR
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS))))
    g = torch.Generator().manual_seed(0)
    start = time.time()
    for step in range(STEPS):
        model.train()
        batch = torch.randint(len(pre_ids), (BATCH,), generator=g)
        ids, mask = pre_ids[batch], pre_mask[batch]
        loss = causal_lm_loss(model(ids, mask), causal_labels(ids, mask))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == STEPS - 1:
            print("step %4d  loss %.3f  GPL-3 perplexity %.2f  (%.0f s)"
                  % (step, loss.item(), perplexity(model, pre_ids, pre_mask), time.time() - start))

    # the model as the file holds it: float16
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    save_safetensors(model.state_dict(), os.path.join(HERE, "model.safetensors"))
    with open(os.path.join(HERE, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(HERE, "tokenizer.json"), "w") as f:
        json.dump(tok.to_json(), f, ensure_ascii=False, separators=(",", ":"))
    write_jsonl(os.path.join(HERE, "train.jsonl"), train_rows)
    write_jsonl(os.path.join(HERE, "holdout.jsonl"), holdout_rows)
    write_csv(os.path.join(HERE, "train.csv"), train_rows)
    write_csv(os.path.join(HERE, "holdout.csv"), holdout_rows)

    print("tokenizer: %d tokens (%d merges); GPL-3 %d rows, Apache-2.0 %d training rows (%d paragraphs), %d held out (%d)"
          % (len(tok), MERGES, len(pre_ids), len(train_rows), cut, len(holdout_rows), len(apache) - cut))
    print("pretrained (float16): perplexity %.2f on GPL-3, %.2f on the held-out Apache-2.0 rows"
          % (perplexity(model, pre_ids, pre_mask), perplexity(model, hold_ids, hold_mask)))


if __name__ == "__main__":
    main()
