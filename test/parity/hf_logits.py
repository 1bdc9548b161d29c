#!/usr/bin/env python3
"""Load a Hugging Face model.safetensors (for example the weights edgetune returns) strictly into the
plain-PyTorch reference of test/parity/huggingface.py and print its logits for some token ids.

    /usr/bin/python3 test/parity/hf_logits.py config.json model.safetensors --ids "[[1, 5, 7, 2]]"
    /usr/bin/python3 test/parity/hf_logits.py config.json model.safetensors --ids "[[1, 5, 7, 2, 0]]" \\
        --mask "[[1, 1, 1, 1, 0]]" --token-type-ids "[[0, 0, 1, 1, 0]]" --float64
    /usr/bin/python3 test/parity/hf_logits.py --selftest

Rows are JSON lists of ids (one list, or a list of rows of equal length); the mask defaults to all
ones. Prints one JSON object: {"architecture", "shape", "logits"} (nested lists: [N, num_labels] for
sequence classification, [N, T, vocab_size] for a causal LM), and with --labels the causal-LM loss
(labels = ids with mask 0 set to -100, shifted inside the model).

The file is read by hand (no safetensors package here), as the format's documentation defines it
(https://github.com/huggingface/safetensors, "Format"): 8 bytes little-endian unsigned header
length N, N bytes of JSON header {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
"__metadata__"}, then the raw little-endian tensor bytes, offsets relative to the end of the header.
Loading is strict: every parameter of the reference must be in the file and every tensor of the file
must be a parameter, except the buffers older Hub files carry (position_ids, GPT-2's attn.bias and
attn.masked_bias, rotary inv_freq) and a tied lm_head.weight equal to the embedding. GPT-2 files
saved from GPT2Model (names without the `transformer.` prefix) are accepted too.
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import huggingface as hf  # noqa: E402

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "I16": np.int16,
    "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
IGNORED_SUFFIXES = (".position_ids", ".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


def read_safetensors(path):
    """{name: float tensor (float32, or float64 when stored so)} and the __metadata__ of a file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("%s: header length %d runs past the end of the file" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape = info["shape"]
        if info["dtype"] == "BF16":  # bfloat16: the upper 16 bits of a float32
            a = (np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in DTYPES:
            a = np.frombuffer(data[begin:end], dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError("%s: dtype %s is not supported" % (name, info["dtype"]))
        if a.size != int(np.prod(shape)):
            raise ValueError("%s: %d values for shape %s" % (name, a.size, shape))
        a = a.reshape(shape)
        out[name] = torch.from_numpy(a.astype(np.float64 if a.dtype == np.float64 else np.float32))
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes float32 tensors (name -> tensor) in the same format (used by the self-test)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # the format pads the header with spaces to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_strict(model, tensors):
    """Loads a file's tensors into the reference; raises ValueError listing missing / unexpected names."""
    expected = model.state_dict()
    tensors = {k: v for k, v in tensors.items() if not k.endswith(IGNORED_SUFFIXES)}
    if isinstance(model, hf.GPT2LMHeadModel) and not any(k.startswith("transformer.") for k in tensors):
        tensors = {(k if k == "lm_head.weight" else "transformer." + k): v for k, v in tensors.items()}
    if getattr(model, "tied", False) and "lm_head.weight" in tensors:
        emb = tensors.get("transformer.wte.weight", tensors.get("model.embed_tokens.weight"))
        if emb is None or not torch.equal(tensors["lm_head.weight"], emb):
            raise ValueError("lm_head.weight differs from the embedding of a tied model (tie_word_embeddings)")
        del tensors["lm_head.weight"]
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError("weights do not match the config: missing %s, unexpected %s" % (missing, unexpected))
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError("%s: shape %s, the config gives %s" % (k, list(v.shape), list(expected[k].shape)))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    return model


def rows(text, name):
    v = json.loads(text)
    if not isinstance(v, list) or not v:
        raise ValueError("%s: a JSON list of ids, or of rows" % name)
    v = v if isinstance(v[0], list) else [v]
    if len(set(len(r) for r in v)) != 1:
        raise ValueError("%s: rows of different lengths (pad them and give --mask)" % name)
    return torch.tensor(v, dtype=torch.long)


def logits_for(config, weights_path, ids, mask=None, token_type_ids=None, float64=False):
    dtype = torch.float64 if float64 else torch.float32
    model = hf.build(config).to(dtype)
    load_strict(model, read_safetensors(weights_path)[0])
    model.eval()
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        return model, model(ids, mask.to(dtype), token_type_ids)


def selftest():
    """A reference's weights written to a file, read back and loaded strictly, give the same logits;
    bad files are refused."""
    good = True
    ok = lambda cond, msg: print(("ok   " if cond else "FAIL ") + msg) or cond
    with tempfile.TemporaryDirectory() as d:
        for cfg in hf.tiny_configs():
            arch = cfg["architectures"][0]
            m = hf.init_weights(hf.build(cfg), 11).eval()
            path = os.path.join(d, "model.safetensors")
            write_safetensors(path, m.state_dict(), {"format": "pt"})
            ids = torch.randint(1, 20, (2, 6))
            mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
            with torch.no_grad():
                want = m(ids, mask.float())
            _, got = logits_for(cfg, path, ids, mask)
            good &= ok(torch.equal(got, want), "%s: written, read back, loaded strictly: identical logits" % arch)
            if arch == "GPT2LMHeadModel":
                sd = {k[len("transformer."):]: v for k, v in m.state_dict().items()}
                sd["h.0.attn.bias"] = torch.ones(1, 1, 10, 10)
                sd["lm_head.weight"] = m.transformer.wte.weight
                write_safetensors(path, sd)
                _, got = logits_for(cfg, path, ids, mask)
                good &= ok(torch.equal(got, want), "GPT-2: no transformer. prefix, attn.bias and a tied lm_head.weight accepted")
            sd = dict(m.state_dict())
            first = next(iter(sd))
            del sd[first]
            sd["extra.weight"] = torch.zeros(2)
            write_safetensors(path, sd)
            try:
                logits_for(cfg, path, ids, mask)
                good &= ok(False, "%s: a missing and an unknown tensor are refused" % arch)
            except ValueError as e:
                good &= ok(first in str(e) and "extra.weight" in str(e), "%s: a missing and an unknown tensor are refused, "
                           "by name" % arch)
    print("self-test " + ("passed" if good else "FAILED"))
    return good


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", help="config.json")
    ap.add_argument("weights", nargs="?", help="model.safetensors")
    ap.add_argument("--ids", help="token ids: a JSON list, or a list of rows of equal length")
    ap.add_argument("--mask", help="attention_mask rows (default all ones)")
    ap.add_argument("--token-type-ids", help="token_type_ids rows (BERT)")
    ap.add_argument("--labels", action="store_true", help="also print the causal-LM loss (labels from the ids)")
    ap.add_argument("--float64", action="store_true", help="compute in float64")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    if a.selftest:
        return 0 if selftest() else 1
    if not (a.config and a.weights and a.ids):
        ap.error("config, weights and --ids are required")
    config = json.load(open(a.config))
    ids = rows(a.ids, "--ids")
    mask = rows(a.mask, "--mask") if a.mask else None
    tt = rows(a.token_type_ids, "--token-type-ids") if a.token_type_ids else None
    model, out = logits_for(config, a.weights, ids, mask, tt, a.float64)
    result = {"architecture": model.config.architecture, "shape": list(out.shape), "logits": out.tolist()}
    if a.labels and model.config.task == "causal-lm":
        labels = hf.causal_labels(ids, torch.ones_like(ids) if mask is None else mask)
        result["loss"] = float(hf.causal_lm_loss(out, labels))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
