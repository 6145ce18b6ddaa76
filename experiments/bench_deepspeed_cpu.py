"""Cost of DeepSpeed ZeRO on CPU against plain and DDP training of the same tiny GPT-2.

Prints, for one global batch size, seconds per optimizer step and peak resident memory per
configuration, with ratios against plain single-process training. Rerun it as it is:

    python experiments/bench_deepspeed_cpu.py [--steps 40] [--n-embd 64] [--n-layer 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# name -> (processes, strategy); ZeRO runs use two processes, as partitioning needs several ranks.
CONFIGS = {
    "plain": (1, "auto"),
    "ddp": (2, "ddp"),
    "zero2": (2, {"stage": 2}),
    "zero3": (2, {"stage": 3}),
    "zero3_offload": (2, {"stage": 3, "offload_optimizer": True, "offload_parameters": True}),
}


def child(args: argparse.Namespace) -> None:
    """One configuration; Lightning re-runs this same command line for the other ranks."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, DistributedSampler
    from transformers import GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, str(REPO))
    from afd.runtime.strategies import CPUDeepSpeedStrategy

    devices, strategy = CONFIGS[args.child]
    torch.set_num_threads(args.threads)
    if isinstance(strategy, dict):
        strategy = CPUDeepSpeedStrategy(**strategy)

    class TinyLM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = GPT2LMHeadModel(
                GPT2Config(
                    n_layer=args.n_layer,
                    n_embd=args.n_embd,
                    n_head=2,
                    vocab_size=64,
                    n_positions=32,
                    resid_pdrop=0.0,
                    embd_pdrop=0.0,
                    attn_pdrop=0.0,
                )
            )

        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch, labels=batch).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=3e-3)

        def train_dataloader(self):
            n = args.batch * (args.steps + args.warmup)
            data = torch.randint(0, 64, (n, 16), generator=torch.Generator().manual_seed(0))
            t = self.trainer
            sampler = DistributedSampler(data, t.world_size, t.global_rank, shuffle=False)
            return DataLoader(data, batch_size=args.batch // t.world_size, sampler=sampler)

    class StepTimer(pl.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_batch_start(self, *_):
            self.start = time.perf_counter()

        def on_train_batch_end(self, *_):  # after the optimizer step
            self.times.append(time.perf_counter() - self.start)

    pl.seed_everything(0, verbose=False)
    timer, module = StepTimer(), TinyLM()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[timer],
    )
    trainer.fit(module)
    record = {
        "step_s": statistics.median(timer.times[args.warmup :]),
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
    Path(args.out, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def run(name: str, args: argparse.Namespace, out: Path) -> dict:
    out.mkdir()
    cmd = [sys.executable, __file__, "--child", name, "--out", str(out)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch)]
    cmd += [
        "--n-embd",
        str(args.n_embd),
        "--n-layer",
        str(args.n_layer),
        "--threads",
        str(args.threads),
    ]
    drop = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:120]}
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    return {
        "step_s": max(r["step_s"] for r in ranks),  # the slowest rank sets the pace
        "peak_mib": max(r["peak_mib"] for r in ranks),
        "total_mib": sum(r["peak_mib"] for r in ranks),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-layer", type=int, default=2)
    # One thread: at this size extra threads only add synchronisation, and runs stay comparable.
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    print(
        f"GPT-2 n_layer={args.n_layer} n_embd={args.n_embd}, global batch {args.batch} x 16"
        f" tokens, median of {args.steps} steps after {args.warmup}; {args.threads} thread(s) per"
        f" process, {os.cpu_count()} CPU cores"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            results[name] = run(name, args, Path(tmp, name))
    base = results.get("plain", {})
    header = (
        f"{'config':<14}{'procs':>5}{'ms/step':>9}{'x plain':>8}{'peak MiB/rank':>14}"
        f"{'total MiB':>10}{'x plain':>8}{'run s':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        procs = CONFIGS[name][0]
        if "error" in r:
            print(f"{name:<14}{procs:>5}  failed: {r['error']}")
            continue
        t_ratio = r["step_s"] / base["step_s"] if "step_s" in base else float("nan")
        m_ratio = r["total_mib"] / base["total_mib"] if "total_mib" in base else float("nan")
        print(
            f"{name:<14}{procs:>5}{r['step_s'] * 1e3:>9.1f}{t_ratio:>8.2f}{r['peak_mib']:>14.0f}"
            f"{r['total_mib']:>10.0f}{m_ratio:>8.2f}{r['wall_s']:>7.1f}"
        )
    print(
        "peak MiB/rank: largest peak RSS of one process (libraries included); total MiB: summed"
        " over processes; run s: whole run, start-up and op loading included"
    )


if __name__ == "__main__":
    main()
