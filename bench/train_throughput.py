#!/usr/bin/python3
"""PyTorch baseline for bench/train_throughput.sh: the same MRL training step as mrl-trainer
(conv4 encoder, d=2048, MRL heads 8..2048, summed CE, SGD Nesterov + weight decay, batch 256,
optional flip + shift augmentation, in-RAM Fashion-MNIST), timed the same way (img/s per window of steps).
Prints one JSON line."""
import argparse, gzip, json, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "trainer", "python"))
import mrl_models  # noqa: E402


def load_images(path):
    raw = gzip.open(path).read()
    n = int.from_bytes(raw[4:8], "big")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28).copy())


def load_labels(path):
    raw = gzip.open(path).read()
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64))


def augment(x, gen, max_shift=2):
    """Random horizontal flip + shift by up to max_shift pixels (zero = background fill)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (max_shift,) * 4, value=0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(28)[None, :])  # [b, 28]
    cols = (dx[:, None] + torch.arange(28)[None, :])
    idx_b = torch.arange(b)[:, None, None]
    return padded[idx_b, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--augment", action="store_true")
    ap.add_argument("--channels-last", action="store_true",
                    help="NHWC conv kernels and inputs (what mrl-trainer does by default)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    images = load_images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))[:55000]
    labels = load_labels(os.path.join(args.data, "train-labels-idx1-ubyte.gz"))[:55000]
    nesting = [m for m in (8, 16, 32, 64, 128, 256, 512, 1024, 2048) if m < args.dim] + [args.dim]
    cfg = {"encoder": "conv4", "conv_channels": [32, 64, 128, 256], "dim": args.dim,
           "num_classes": 10, "head": "mrl", "nesting": nesting, "in_channels": 1}
    model = mrl_models.MrlModel(cfg)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.05, momentum=0.9, nesterov=True)
    perm = torch.randperm(images.shape[0], generator=gen)
    rates, t0 = [], time.perf_counter()
    for step in range(args.steps):
        idx = perm[(step * args.batch) % (images.shape[0] - args.batch):][: args.batch]
        batch = augment(images[idx], gen) if args.augment else images[idx]
        x = mrl_models.normalize(batch).contiguous(memory_format=fmt)
        y = labels[idx]
        opt.zero_grad(set_to_none=False)
        z = model(x)
        loss = sum(F.cross_entropy(l, y) for l in model.train_logits(z))
        loss.backward()
        opt.step()
        if (step + 1) % args.window == 0:
            t1 = time.perf_counter()
            rates.append(args.window * args.batch / (t1 - t0))
            t0 = t1
    steady = sorted(rates[1:]) if len(rates) > 1 else rates
    print(json.dumps({"impl": "pytorch", "channels_last": args.channels_last, "torch": torch.__version__, "threads": args.threads,
                      "windows_img_per_s": [round(r, 1) for r in rates],
                      "median_img_per_s": steady[len(steady) // 2], "final_loss": float(loss)}))


if __name__ == "__main__":
    main()
