"""What a pruning plan is judged by: parameters, multiply-adds, latency, accuracy."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from distill.core.ctc import greedy_decode
from distill.core.metrics import score
from distill.core.preprocess import pad_batch, valid_frames


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_macs(net: nn.Module, height: int, in_channels: int, width: int = 320) -> int:
    """Multiply-adds of one ``height x width`` line (convolutions, LSTM, linear layers;
    the rest is noise next to them). The unit of "FLOPs" in the reports."""
    total = [0]

    def conv(m: nn.Conv2d, _, out):
        kh, kw = m.kernel_size
        total[0] += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear(m: nn.Linear, _, out):
        total[0] += out.numel() * m.in_features

    def lstm(m: nn.LSTM, args, _):
        t = args[0].shape[1] if m.batch_first else args[0].shape[0]
        dirs = 2 if m.bidirectional else 1
        h = m.hidden_size
        for layer in range(m.num_layers):
            inp = m.input_size if layer == 0 else h * dirs
            total[0] += t * dirs * 4 * h * (inp + h)

    hooks = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.LSTM):
            hooks.append(m.register_forward_hook(lstm))
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, in_channels, height, width))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return total[0]


def torch_latency_ms(
    net: nn.Module, height: int, in_channels: int, width: int = 320, runs: int = 30
) -> float:
    """Median ms of one line at batch 1 in PyTorch: a quick stand-in for the ONNX figure
    when a plan targets latency (the benchmark measures ONNX Runtime)."""
    x = torch.zeros(1, in_channels, height, width)
    was_training = net.training
    net.eval()
    times = []
    with torch.inference_mode():
        for _ in range(5):
            net(x)
        for _ in range(runs):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    net.train(was_training)
    return 1000 * statistics.median(times)


class Batches:
    """Preprocessed validation lines, padded once into width-sorted batches, to score
    many variants of one network quickly."""

    def __init__(self, samples: list[dict], batch_size: int = 32):
        order = sorted(samples, key=lambda s: s["image"].shape[2])
        self.batches = []
        for i in range(0, len(order), batch_size):
            part = order[i : i + batch_size]
            images, widths = pad_batch([s["image"] for s in part])
            self.batches.append(
                (torch.from_numpy(images), torch.from_numpy(widths), [s["label"] for s in part])
            )
        self.n = len(order)

    def accuracy(self, net: nn.Module, charset, protocol: str = "exact") -> dict[str, float]:
        preds, labels = [], []
        was_training = net.training
        net.eval()
        with torch.inference_mode():
            for images, widths, texts in self.batches:
                logits, _ = net(images, widths)
                frames = valid_frames(widths, net.width_per_frame).numpy()
                probs = logits.float().softmax(-1).numpy()
                decoded = greedy_decode(probs, frames, blank=charset.blank)
                preds += [charset.decode(ids) for ids, _ in decoded]
                labels += texts
        net.train(was_training)
        return score(preds, labels, protocol)

    def reading_gradients(self, net: nn.Module, charset) -> None:
        """Put on ``net``'s parameters the gradients of the CTC loss of its own greedy
        reading of these lines, summed (for Taylor importance). Evaluation mode: the
        statistics and the function stay those of the network being pruned."""
        was_training = net.training
        net.eval()
        net.zero_grad()
        for images, widths, _ in self.batches:
            logits, _ = net(images, widths)
            log_probs = logits.float().log_softmax(-1)
            frames = valid_frames(widths, net.width_per_frame)
            decoded = greedy_decode(log_probs.detach().exp().numpy(), frames.numpy(), charset.blank)
            read = [i for i, (ids, _) in enumerate(decoded) if len(ids)]
            if not read:
                continue
            targets = torch.cat([torch.as_tensor(decoded[i][0], dtype=torch.long) for i in read])
            loss = F.ctc_loss(
                log_probs[read].transpose(0, 1),
                targets,
                frames[read],
                torch.tensor([len(decoded[i][0]) for i in read]),
                blank=charset.blank,
                reduction="sum",
                zero_infinity=True,
            )
            loss.backward()
        net.train(was_training)


def validation_sample(
    ds, seed: int, eval_samples: int, importance_samples: int = 0
) -> tuple[Batches, Batches | None]:
    """A fixed random sample (``seed``) of the validation lines that scores the plans, so
    a set made of several sources is scored on all of them, and the next
    ``importance_samples`` lines for Taylor importance (None when 0)."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    n = min(len(ds), eval_samples)
    scoring = Batches([s for s in (ds[i] for i in order[:n]) if s is not None])
    if not importance_samples:
        return scoring, None
    more = [s for s in (ds[i] for i in order[n : n + importance_samples]) if s is not None]
    if not more:
        raise ValueError(
            f"Taylor importance reads validation lines beside the eval_samples="
            f"{eval_samples} that score the plans, and {ds.name} has only {len(ds)}: "
            "lower eval_samples"
        )
    return scoring, Batches(more, batch_size=8)


def model_figures(net: nn.Module, height: int, in_channels: int) -> dict[str, float]:
    return {
        "params": count_params(net),
        "macs": count_macs(net, height, in_channels),
    }
