"""Minimal safetensors read/write for float32 state_dicts, used when the `safetensors`
package is not installed (`pip install safetensors` gives the real one; the files are the same).
Format: 8-byte little-endian header length, a JSON header, then the raw little-endian data."""
import json
import struct

import torch


def save_file(tensors, path, metadata=None):
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_bytes(raw):
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    dtypes = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, _ = dtypes[info["dtype"]]
        begin, end = info["data_offsets"]
        buf = bytearray(raw[base + begin : base + end])
        out[name] = torch.frombuffer(buf, dtype=dtype).reshape(info["shape"]).to(torch.float32).clone()
    return out


def load_file(path):
    with open(path, "rb") as f:
        return load_bytes(f.read())


try:  # prefer the real package when it is there
    from safetensors.torch import load_file, save_file  # noqa: F811
except ImportError:
    pass
