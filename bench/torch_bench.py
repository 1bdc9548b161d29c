#!/usr/bin/env python3
"""PyTorch side of `npm run bench`: CPU eager training loops on tensors already in memory.

    /usr/bin/python3 bench/torch_bench.py info
    /usr/bin/python3 bench/torch_bench.py tiny --threads 1
    /usr/bin/python3 bench/torch_bench.py mlp --threads 2 --epochs 3
    /usr/bin/python3 bench/torch_bench.py cnn --threads 1 --epochs 2
    /usr/bin/python3 bench/torch_bench.py bert-tiny --threads 1 --epochs 1 --profile

Prints one JSON line. Thread counts: torch.set_num_threads(n) for ATen/OpenMP; the caller also
sets OMP_NUM_THREADS and OPENBLAS_NUM_THREADS to n, because Debian's torch calls BLAS through
libblas.so.3 (OpenBLAS's pthread build when libopenblas0-pthread is installed), whose own thread
pool ignores torch.set_num_threads.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blas_info(torch):
    """Which BLAS the process actually loaded, from /proc/self/maps after a matmul."""
    a = torch.rand(64, 64)
    (a @ a).sum().item()
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "blas" in path.lower() or "lapack" in path.lower():
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    libs = sorted(libs)
    if any("openblas" in p for p in libs):
        kind = "OpenBLAS" + (" (pthread)" if any("openblas-pthread" in p for p in libs) else "")
    elif any("/blas/" in p for p in libs):
        kind = "reference BLAS (slow: install libopenblas0-pthread)"
    elif libs:
        kind = "other"
    else:
        kind = "none loaded (MKL-DNN/internal)"
    config = torch.__config__.show()
    blas_line = next((l.strip() for l in config.splitlines() if "BLAS_INFO" in l), "")
    cap = next((l.strip() for l in config.splitlines() if "CPU capability" in l), "")
    openblas_config = None
    try:
        import ctypes
        for p in libs:
            if "openblas" in p:
                lib = ctypes.CDLL(p)
                lib.openblas_get_config.restype = ctypes.c_char_p
                openblas_config = lib.openblas_get_config().decode()
                lib.openblas_get_num_threads.restype = ctypes.c_int
                openblas_config += f" threads={lib.openblas_get_num_threads()}"
                break
    except Exception:  # noqa: BLE001 - diagnostics only
        pass
    return {
        "blas": kind,
        "blas_libraries": libs,
        "openblas_config": openblas_config,
        "torch_build_blas": "BLAS_INFO=" + blas_line.split("BLAS_INFO=")[1].split(",")[0] if "BLAS_INFO=" in blas_line else None,
        "cpu_capability": cap.replace("- ", ""),
    }


def run_epochs(model, loss_fn, opt, batches, epochs):
    total = 0.0
    for _ in range(epochs):
        for x, y in batches:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
    return total


def timed(run, repeats):
    """The median time of `repeats` calls of run() (after the caller's warm-up), and its summary in ms,
    with the median CPU time of the process per call (cpu_ms: all its threads; what other processes
    on a shared machine do not inflate)."""
    times, cpu = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    return med, {"median": med * 1e3, "min": min(times) * 1e3, "max": max(times) * 1e3, "n": len(times),
                 "cpu_ms": statistics.median(cpu) * 1e3}


def profile_epoch(model, loss_fn, opt, batches):
    """Where the time goes: the 8 costliest ops of one epoch under the autograd profiler."""
    from torch.autograd import profiler
    with profiler.profile() as prof:
        run_epochs(model, loss_fn, opt, batches, 1)
    evs = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in evs]


def tiny(torch, args):
    import numpy as np
    nn = torch.nn
    data = np.loadtxt(os.path.join(ROOT, "examples/seed-mlp/train.csv"), delimiter=",", skiprows=1, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(data[:, :10]))
    y = torch.from_numpy(np.ascontiguousarray(data[:, 10:11]))
    batch, epochs = 32, 20
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, x.shape[0], batch)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    run_epochs(model, loss_fn, opt, batches, 1)  # warm-up pass
    med, run_ms = timed(lambda: run_epochs(model, loss_fn, opt, batches, epochs), args.repeats)
    steps = len(batches) * epochs
    return {"steps": steps, "run_ms": run_ms,
            "steps_per_s": steps / med, "us_per_step": med / steps * 1e6}


def mlp(torch, args):
    nn = torch.nn
    rows, features, hidden, classes, batch = 4096, 784, 256, 10, 64
    torch.manual_seed(1)
    x = torch.rand(rows, features)
    y = torch.randint(0, classes, (rows,))
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, rows, batch)]
    model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    run_epochs(model, loss_fn, opt, batches, 1)  # warm-up epoch
    med, run_ms = timed(lambda: run_epochs(model, loss_fn, opt, batches, args.epochs), args.repeats)
    samples = rows * args.epochs
    flops = 3 * 2 * (features * hidden + hidden * classes) * samples
    prof_top = profile_epoch(model, loss_fn, opt, batches) if args.profile else None
    return {"epochs": args.epochs, "samples": samples, "run_ms": run_ms,
            "samples_per_s": samples / med, "gflops": flops / med / 1e9, "profile_top": prof_top}


def cnn(torch, args):
    nn = torch.nn
    rows, side, classes, batch = 2048, 28, 10, 64
    torch.manual_seed(4)
    x = torch.rand(rows, 1, side, side)
    y = torch.randint(0, classes, (rows,))
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, rows, batch)]
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 7 * 7, classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    run_epochs(model, loss_fn, opt, batches, 1)  # warm-up epoch
    med, run_ms = timed(lambda: run_epochs(model, loss_fn, opt, batches, args.epochs), args.repeats)
    samples = rows * args.epochs
    prof_top = profile_epoch(model, loss_fn, opt, batches) if args.profile else None
    return {"epochs": args.epochs, "samples": samples, "run_ms": run_ms,
            "samples_per_s": samples / med, "mkldnn": torch.backends.mkldnn.is_available(), "profile_top": prof_top}


def encoder(torch, args):
    """The encoder bench of bench/lib.mjs (ENCODER): token and position embeddings, two
    nn.TransformerEncoderLayer(64, 4, 128, dropout=0, batch_first=True) with the padding mask,
    mean pooling over the real tokens, a linear head; Adam 1e-3, batch 32, 512 rows of 64 tokens."""
    nn = torch.nn
    rows, T, vocab, D, H, ff, classes, batch = 512, 64, 1000, 64, 4, 128, 2, 32
    torch.manual_seed(5)
    lengths = torch.randint(48, T + 1, (rows,))
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    ids = torch.randint(1, vocab, (rows, T)) * mask.long()
    y = torch.randint(0, classes, (rows,))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, D)
            self.pos = nn.Parameter(torch.randn(T, D))
            self.layers = nn.ModuleList([nn.TransformerEncoderLayer(D, H, ff, dropout=0.0, batch_first=True) for _ in range(2)])
            self.head = nn.Linear(D, classes)

        def forward(self, batch):
            x, m = batch
            h = self.emb(x) + self.pos
            for layer in self.layers:
                h = layer(h, src_key_padding_mask=(m == 0))
            pooled = (h * m[:, :, None]).sum(1) / m.sum(1, keepdim=True)
            return self.head(pooled)

    model = Encoder()
    batches = [((ids[i:i + batch], mask[i:i + batch]), y[i:i + batch]) for i in range(0, rows, batch)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    run_epochs(model, loss_fn, opt, batches, 1)  # warm-up epoch
    med, run_ms = timed(lambda: run_epochs(model, loss_fn, opt, batches, args.epochs), args.repeats)
    samples = rows * args.epochs
    return {"epochs": args.epochs, "samples": samples, "run_ms": run_ms, "samples_per_s": samples / med}


def bert_tiny(torch, args):
    """The bert-tiny bench of bench/lib.mjs (BERT_TINY): BertForSequenceClassification (2 layers,
    hidden 128, 2 heads, 512 intermediate, vocabulary 2,000, 64 positions, dropout 0) from
    test/parity/huggingface.py (transformers' eager maths and module tree; transformers itself is
    not installed), initialised as transformers does; AdamW 1e-4 (weight decay 0.01), batch 16,
    256 rows of 64 tokens (48 to 64 real, right padding)."""
    sys.path.insert(0, os.path.join(ROOT, "test", "parity"))
    import huggingface as hf
    rows, T, vocab, batch, classes = 256, 64, 2000, 16, 2
    config = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "vocab_size": vocab,
              "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "max_position_embeddings": T, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
              "num_labels": classes}
    torch.manual_seed(7)
    lengths = torch.randint(48, T + 1, (rows,))
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, vocab, (rows, T)) * mask
    y = torch.randint(0, classes, (rows,))
    model = hf.init_weights(hf.build(config), 7)

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, batch):
            x, m = batch
            return self.m(x, attention_mask=m)

    wrapped = Call()
    batches = [((ids[i:i + batch], mask[i:i + batch]), y[i:i + batch]) for i in range(0, rows, batch)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    run_epochs(wrapped, loss_fn, opt, batches, 1)  # warm-up epoch
    med, run_ms = timed(lambda: run_epochs(wrapped, loss_fn, opt, batches, args.epochs), args.repeats)
    samples = rows * args.epochs
    prof_top = profile_epoch(wrapped, loss_fn, opt, batches) if args.profile else None
    return {"epochs": args.epochs, "samples": samples, "run_ms": run_ms, "samples_per_s": samples / med,
            "params": sum(p.numel() for p in model.parameters()), "profile_top": prof_top}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workload", choices=["info", "tiny", "mlp", "cnn", "encoder", "bert-tiny"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - the bench reports PyTorch as unavailable
        print(json.dumps({"available": False, "error": f"{type(e).__name__}: {e}"}))
        return
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    out = {"available": True, "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    out.update(blas_info(torch))
    try:
        import numpy
        out["numpy"] = numpy.__version__
    except Exception:  # noqa: BLE001
        pass
    if args.workload == "tiny":
        out.update(tiny(torch, args))
    elif args.workload == "mlp":
        out.update(mlp(torch, args))
    elif args.workload == "cnn":
        out.update(cnn(torch, args))
    elif args.workload == "encoder":
        out.update(encoder(torch, args))
    elif args.workload == "bert-tiny":
        out.update(bert_tiny(torch, args))
    out["workload"] = args.workload
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
