"""Speed of the FF engine against a straightforward autograd loop, measured in one process.

Baseline = the reference protocol written plainly: overlays built once, each layer
``relu(linear(x / (‖x‖ + 1e-4)))`` on positives and negatives separately, ``G = mean(h²)``, softplus
loss, ``loss.backward()``, Adam — and for F-CFF the other layers' goodness forward-only. Engine =
:class:`cffbench.ff.train.FFTrainer.update_layer` (shared base matmul, reused buffers, manual
gradient). Baseline and engine epochs are interleaved so machine noise hits both alike; medians are
reported. Peak RSS of a full engine run is measured in a fresh subprocess.

``--floor`` compares the engine instead with the matrix products one epoch cannot avoid, timed with
``torch.mm`` on tensors of the same shapes and dtype, interleaved epoch by epoch: layer 1 with the
image part shared between positives and negatives (``N × 784`` by ``784 × H`` forward and the
``H × N`` by ``N × 784`` weight gradient), a later layer on all ``2N`` rows (forward + weight
gradient), and for CFF the forward-only products of the layers above the one being trained. The
ratio floor / engine is the share of the engine's time spent in matmuls it must do.

``--whole`` times whole runs instead, each in a fresh process, alternately: ``python -m cffbench
train`` (start-up, loading, training, evaluation, result) against the straightforward loop run the
same way (:func:`naive_whole_run`: the same loader, then :class:`NaiveLoop` layer by layer and a
prediction that feeds each of the 10 label overlays through every layer), so the fixed per-run
cost counts on both sides. Usage::

    python benchmarks/bench_engine.py --n-train 50000 --epochs 7 --threads 2
    python benchmarks/bench_engine.py --floor --n-train 50000 --epochs 9 --threads 2 --no-rss
    python benchmarks/bench_engine.py --whole --epochs 20 --repeats 3 --threads 2 --variants ff
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from cffbench.data.splits import Splits
from cffbench.ff import TrainConfig, train_run
from cffbench.ff.goodness import overlay_labels
from cffbench.ff.train import FFTrainer

THETA = 2.0


def mnist_like(n_train: int) -> Splits:
    """Real MNIST when available (load_splits), else random data of MNIST's shape."""
    try:
        from cffbench.data import load_splits

        return load_splits("mnist", n_train=n_train, seed=0)
    except Exception:  # noqa: BLE001 - a benchmark without data still measures speed
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n_train, 784, generator=g)
        y = torch.randint(0, 10, (n_train,), generator=g)
        return Splits("random", x, y, x[:1000], y[:1000], x[:1000], y[:1000], 10)


def naive_layer(x, weight, bias):
    return torch.relu(F.linear(x / (x.norm(2, 1, keepdim=True) + 1e-4), weight, bias))


class NaiveLoop:
    """The straightforward autograd loop of the reference protocol (FF or F-CFF, γ = 1, uniform α)."""

    def __init__(self, trainer: FFTrainer, splits: Splits, collaborative: bool) -> None:
        self.params = [(l.weight.detach().clone().requires_grad_(), l.bias.detach().clone().requires_grad_())
                       for l in trainer.layers]
        self.opts = [torch.optim.Adam(list(p), lr=0.03) for p in self.params]
        self.x_pos = overlay_labels(splits.x_train, splits.y_train)
        self.x_neg = overlay_labels(splits.x_train, trainer.y_neg)
        self.collaborative = collaborative

    def inputs(self, index):
        h_pos, h_neg, lower = self.x_pos, self.x_neg, []
        with torch.no_grad():
            for weight, bias in self.params[:index]:
                h_pos, h_neg = naive_layer(h_pos, weight, bias), naive_layer(h_neg, weight, bias)
                lower.append((h_pos.pow(2).mean(1), h_neg.pow(2).mean(1)))
        return h_pos, h_neg, lower

    def epoch(self, index, h_pos_in, h_neg_in, lower):
        weight, bias = self.params[index]
        h_pos, h_neg = naive_layer(h_pos_in, weight, bias), naive_layer(h_neg_in, weight, bias)
        g_pos, g_neg = h_pos.pow(2).mean(1), h_neg.pow(2).mean(1)
        if self.collaborative:
            others_pos, others_neg = [g for g, _ in lower], [g for _, g in lower]
            with torch.no_grad():
                u_pos, u_neg = h_pos.detach(), h_neg.detach()
                for w, b in self.params[index + 1:]:
                    u_pos, u_neg = naive_layer(u_pos, w, b), naive_layer(u_neg, w, b)
                    others_pos.append(u_pos.pow(2).mean(1))
                    others_neg.append(u_neg.pow(2).mean(1))
            weight_k = 1.0 / len(others_pos)
            logit_pos = (g_pos - THETA) + sum(weight_k * (g - THETA) for g in others_pos)
            logit_neg = (g_neg - THETA) + sum(weight_k * (g - THETA) for g in others_neg)
        else:
            logit_pos, logit_neg = g_pos - THETA, g_neg - THETA
        loss = F.softplus(torch.cat([-logit_pos, logit_neg])).mean()
        self.opts[index].zero_grad()
        loss.backward()
        self.opts[index].step()


def interleaved_medians(first, second, epochs: int) -> tuple[float, float]:
    """Median seconds of ``first()`` and ``second()`` called alternately ``epochs`` times each
    (the first call of each dropped), so the shared machine's noise hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(epochs):
        for fn, out in zip((first, second), times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0][1:]), statistics.median(times[1][1:])


def compare(splits: Splits, variant: str, precision: str, epochs: int) -> list[dict]:
    """Interleaved epochs of baseline and engine, per layer; returns one row per layer."""
    config = TrainConfig(variant=variant, precision=precision, epochs_per_layer=epochs)
    trainer = FFTrainer(config, splits, torch.device("cpu"), None)
    naive = NaiveLoop(trainer, splits, variant != "ff")
    rows = []
    for index in range(len(trainer.layers)):
        inp, lower = trainer.chain_inputs(index)
        h_pos, h_neg, naive_lower = naive.inputs(index)
        naive_s, engine_s = interleaved_medians(
            lambda: naive.epoch(index, h_pos, h_neg, naive_lower),
            lambda: trainer.update_layer(index, inp, lower), epochs)
        rows.append({"variant": variant, "precision": precision, "layer": index + 1,
                     "baseline_s": round(naive_s, 3), "engine_s": round(engine_s, 3),
                     "speedup": round(naive_s / engine_s, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


class MatmulFloor:
    """The unavoidable matrix products of one epoch of layer ``index`` (see the module docstring)."""

    def __init__(self, trainer: FFTrainer, n: int, index: int, collaborative: bool,
                 precision: str) -> None:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        g = torch.Generator().manual_seed(0)
        widths = [layer.weight.shape for layer in trainer.layers]   # (out, in) per layer
        out_w, in_w = widths[index]
        rows = n if index == 0 else 2 * n        # layer 1 shares the image part
        self.x = torch.randn(rows, in_w, generator=g).to(dtype)
        self.w_t = torch.randn(in_w, out_w, generator=g).to(dtype)
        self.h = torch.empty(rows, out_w, dtype=dtype)
        self.delta_t = torch.randn(out_w, rows, generator=g).to(dtype)
        self.grad_w = torch.empty(out_w, in_w, dtype=dtype)
        self.upper = []                          # CFF: forward-only layers above, on 2N rows
        if collaborative:
            inp = torch.randn(2 * n, out_w, generator=g).to(dtype)
            for out_k, in_k in widths[index + 1:]:
                w_k = torch.randn(in_k, out_k, generator=g).to(dtype)
                self.upper.append((inp, w_k, torch.empty(2 * n, out_k, dtype=dtype)))
                inp = self.upper[-1][2]

    def epoch(self) -> None:
        torch.mm(self.x, self.w_t, out=self.h)
        for inp, w_k, out in self.upper:
            torch.mm(inp, w_k, out=out)
        torch.mm(self.delta_t, self.x, out=self.grad_w)


def floor_compare(splits: Splits, variant: str, precision: str, epochs: int) -> list[dict]:
    """Interleaved epochs of the matmul floor and the engine, per layer; one row per layer."""
    config = TrainConfig(variant=variant, precision=precision, epochs_per_layer=epochs)
    trainer = FFTrainer(config, splits, torch.device("cpu"), None)
    rows = []
    for index in range(len(trainer.layers)):
        inp, lower = trainer.chain_inputs(index)
        floor = MatmulFloor(trainer, inp.n, index, variant != "ff", precision)
        floor_s, engine_s = interleaved_medians(
            floor.epoch, lambda: trainer.update_layer(index, inp, lower), epochs)
        rows.append({"variant": variant, "precision": precision, "layer": index + 1,
                     "floor_s": round(floor_s, 3), "engine_s": round(engine_s, 3),
                     "floor_over_engine": round(floor_s / engine_s, 3)})
        print(json.dumps(rows[-1]), flush=True)
        del floor
    pair_floor = sum(r["floor_s"] for r in rows)
    pair_engine = sum(r["engine_s"] for r in rows)
    print(json.dumps({"variant": variant, "precision": precision, "layers": "all",
                      "floor_s": round(pair_floor, 3), "engine_s": round(pair_engine, 3),
                      "floor_over_engine": round(pair_floor / pair_engine, 3)}), flush=True)
    return rows


@torch.no_grad()
def naive_accuracy(params, x: torch.Tensor, y: torch.Tensor, n_labels: int) -> float:
    """The straightforward prediction: each label's overlay through every layer, argmax of
    the summed goodness."""
    scores = []
    for label in range(n_labels):
        h = overlay_labels(x, torch.full_like(y, label))
        total = torch.zeros(x.shape[0])
        for weight, bias in params:
            h = naive_layer(h, weight, bias)
            total += h.pow(2).mean(1)
        scores.append(total)
    return float((torch.stack(scores, 1).argmax(1) == y).float().mean())


def naive_whole_run(n_train: int, variant: str, epochs: int) -> None:
    """Child process: one whole run of the straightforward loop (sequential schedule, full
    batch, fixed wrong-label negatives), evaluated on validation, test and 10 000 train images."""
    from cffbench.data import load_splits
    from cffbench.ff.config import run_generators
    from cffbench.ff.layers import init_linear
    from cffbench.ff.negatives import negative_rule

    start = time.perf_counter()
    splits = load_splits("mnist", n_train=n_train, seed=0)
    gens = run_generators(0)
    widths = (splits.n_features, 500, 500)
    params = [tuple(t.requires_grad_() for t in init_linear(d_in, d_out, gens["init"]))
              for d_in, d_out in zip(widths[:-1], widths[1:])]
    y_neg = negative_rule("fixed").draw(splits.y_train, splits.n_classes, gens["negatives"])
    loop = NaiveLoop.__new__(NaiveLoop)
    loop.params, loop.collaborative = params, variant != "ff"
    loop.opts = [torch.optim.Adam(list(p), lr=0.03) for p in params]
    loop.x_pos = overlay_labels(splits.x_train, splits.y_train)
    loop.x_neg = overlay_labels(splits.x_train, y_neg)
    for index in range(len(params)):
        h_pos, h_neg, lower = loop.inputs(index)
        for _ in range(epochs):
            loop.epoch(index, h_pos, h_neg, lower)
    accs = [naive_accuracy(params, x, y, splits.n_classes) for x, y in
            ((splits.x_val, splits.y_val), (splits.x_test, splits.y_test),
             (splits.x_train[:10000], splits.y_train[:10000]))]
    print(json.dumps({"naive_test_acc": round(accs[1], 4),
                      "naive_run_s": round(time.perf_counter() - start, 1)}), flush=True)


def whole_compare(args) -> None:
    """Alternate fresh-process whole runs of the engine and the straightforward loop."""
    for variant in args.variants:
        engine = [sys.executable, "-m", "cffbench", "train", "--variant", variant,
                  "--set", f"epochs_per_layer={args.epochs}", "--threads", str(args.threads)]
        if args.n_train != 50000:
            engine += ["--n-train", str(args.n_train)]
        naive = [sys.executable, __file__, "--naive-child", variant, "--n-train",
                 str(args.n_train), "--epochs", str(args.epochs), "--threads", str(args.threads)]
        times: dict[str, list[float]] = {"engine": [], "naive": []}
        for _ in range(args.repeats):
            for name, command in (("naive", naive), ("engine", engine)):
                start = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
        naive_s, engine_s = statistics.median(times["naive"]), statistics.median(times["engine"])
        print(json.dumps({"variant": variant, "epochs_per_layer": args.epochs,
                          "naive_run_s": [round(t, 1) for t in times["naive"]],
                          "engine_run_s": [round(t, 1) for t in times["engine"]],
                          "median_naive_s": round(naive_s, 1), "median_engine_s": round(engine_s, 1),
                          "speedup": round(naive_s / engine_s, 2)}), flush=True)


def peak_rss_run(n_train: int, variant: str, epochs: int) -> None:
    """Child process: one full engine run; prints its peak RSS in GB."""
    splits = mnist_like(n_train)
    start = time.perf_counter()
    result = train_run(TrainConfig(variant=variant, epochs_per_layer=epochs), splits)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(json.dumps({"variant": variant, "n_train": n_train, "epochs_per_layer": epochs,
                      "status": result.status, "peak_rss_gb": round(peak_gb, 2),
                      "run_s": round(time.perf_counter() - start, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="FF engine speed vs a straightforward loop")
    parser.add_argument("--n-train", type=int, default=50000)
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs per layer (first dropped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=["ff", "f-cff"])
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocess runs")
    parser.add_argument("--floor", action="store_true",
                        help="compare the engine with its matmul floor instead of the autograd loop")
    parser.add_argument("--whole", action="store_true",
                        help="whole runs in fresh processes: `cffbench train` vs the straightforward loop")
    parser.add_argument("--repeats", type=int, default=3, help="--whole: runs of each, alternated")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--naive-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        peak_rss_run(args.n_train, args.rss_child, args.epochs)
        return
    if args.naive_child:
        naive_whole_run(args.n_train, args.naive_child, args.epochs)
        return
    if args.whole:
        print(f"torch {torch.__version__}, threads {args.threads}, n_train {args.n_train}", flush=True)
        whole_compare(args)
        return
    print(f"torch {torch.__version__}, threads {args.threads}, n_train {args.n_train}", flush=True)
    for variant in [] if args.no_rss else args.variants:
        subprocess.run([sys.executable, __file__, "--rss-child", variant, "--n-train",
                        str(args.n_train), "--epochs", "3", "--threads", str(args.threads)], check=True)
    splits = mnist_like(args.n_train)
    for variant in args.variants:
        for precision in args.precisions:
            (floor_compare if args.floor else compare)(splits, variant, precision, args.epochs)


if __name__ == "__main__":
    main()
