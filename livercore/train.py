"""Train one session of a phase-model: the paper's 52 augmented variants of every image set.

The whole uint8 training set goes to the device once; each step gathers a minibatch there,
augments it there (livercore.augment) and runs the network in channels_last, under bf16
autocast where the hardware has bf16. Under one seed a session is reproducible on the CPU bit
for bit, and it resumes from its checkpoint to the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from livercore.augment import AugmentConfig, augment_batch
from livercore.model import LiverNet, NetConfig, predict_proba, select_channels
from livercore.vocab import CATEGORIES, PHASES, PhaseModel

CHECKPOINT_FORMAT = "livercore-checkpoint/1"  # bumped whenever the checkpoint layout changes


@dataclass(frozen=True)
class TrainConfig:
    """One session's recipe; the optimiser is AdamW with a one-cycle (warm-up, cosine) schedule."""

    variants_per_image: int = 52  # the paper's 52 augmented sets per image set = 52 passes
    batch_size: int = 128  # minibatches as the paper; fills 2 CPU cores, 9 steps per pass
    lr: float = 1e-3  # AdamW peak step: Adam's usual rate, reached after the warm-up
    weight_decay: float = 1e-2  # AdamW's default decoupled decay, light next to 0.5 dropout
    warmup_fraction: float = 0.1  # one-cycle warm-up steadies the start of a BN-free net
    label_smoothing: float = 0.0  # the paper's plain softmax loss; the app shows raw confidences
    autocast: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 where it is native (below)
    channels_last: bool = True  # 1.5-2.4x faster on 2 CPU cores (docs, bench_train); GPUs too
    checkpoint_every: int = 50  # steps between checkpoints: ~20-30 s of CPU work at risk
    net: NetConfig = field(default_factory=NetConfig)  # the network (livercore.model)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # the variants' recipe


@dataclass
class TrainResult:
    model: LiverNet  # trained, in eval mode, on the training device
    history: list[dict[str, Any]]  # per pass: epoch, loss, train_accuracy, val_accuracy, lr
    seconds: float  # wall time of this call
    device: str  # e.g. "cpu", "cuda:0"
    images_per_s: float  # augmented training images per second in this call


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) and make cuDNN pick deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - for third-party code on NumPy's global RNG
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def choose_device(preference: str | None = None) -> torch.device:
    """`preference`, else env LIVERCORE_DEVICE, else cuda, then mps, then cpu ("auto" = none)."""
    wanted = preference or os.environ.get("LIVERCORE_DEVICE") or "auto"
    if wanted != "auto":
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {wanted!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {wanted!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def use_bf16(device: torch.device, mode: str) -> bool:
    if mode != "auto":
        return mode == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # emulated bf16 (no AVX512-BF16/AMX) measured 2x slower than fp32
        caps = torch.cpu.get_capabilities()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return False


def _pass_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffle of pass `epoch`: a pure function of (seed, epoch), so resuming needs no state."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def _train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One minibatch: xb (B, C, 70, 70) uint8 on the device. Returns (loss sum, correct count)."""
    x = augment_batch(xb.float().div_(255), config.augment, generator)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with amp:
        logits = model(x)
    loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach() * len(yb), (logits.argmax(1) == yb).sum()


def _rng_states(device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state(), "augment": generator.get_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def _set_rng_states(
    states: dict[str, torch.Tensor], device: torch.device, generator: torch.Generator
) -> None:
    torch.set_rng_state(states["cpu"])
    generator.set_state(states["augment"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    elif device.type == "mps":
        torch.mps.set_rng_state(states["mps"])


def _batches(
    n: int, batch_size: int, seed: int, start_step: int, total_steps: int, device: torch.device
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(step, epoch, index batch on device) from start_step on; each pass shuffles anew."""
    steps_per_pass = math.ceil(n / batch_size)
    order = None
    for step in range(start_step, total_steps):
        epoch, k = divmod(step, steps_per_pass)
        if order is None or k == 0:
            order = _pass_order(seed, epoch, n).to(device)
        yield step, epoch, order[k * batch_size : (k + 1) * batch_size]


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process is in; (0, 1) outside one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    phase_model: PhaseModel,
    config: TrainConfig | None = None,
    seed: int,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_path: str | Path | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    data_parallel: bool = False,
) -> TrainResult:
    """Train one session of `phase_model` on x (N, 3, 70, 70) uint8 windowed phases in
    `vocab.PHASES` order with labels y (N,) int64 in 0..4 (A..E).

    Makes config.variants_per_image passes over the N image sets, each a fresh random variant.
    With `checkpoint_path`, resumes from it if it exists and saves it every
    config.checkpoint_every steps and at the end. x_val, y_val (same layout) give a validation
    accuracy after every pass.

    With `data_parallel`, inside a torch.distributed process group (livercore.distributed,
    under torchrun), the ranks train this one session together with DistributedDataParallel:
    each global minibatch of config.batch_size is split among the ranks (rank r takes its
    every world-th image), their gradients are averaged, and every rank ends with the same
    weights; each rank draws its own augmentation and dropout. Only rank 0 writes the checkpoint.
    """
    config = config or TrainConfig()
    t0 = time.perf_counter()
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != len(PHASES):
        raise ValueError(f"x must be uint8 (N, {len(PHASES)}, H, W), got {x.dtype} {x.shape}")
    if len(y) != len(x) or y.min() < 0 or y.max() >= len(CATEGORIES):
        raise ValueError(f"y must hold {len(x)} category indices 0..{len(CATEGORIES) - 1}")
    dev = choose_device() if device is None else torch.device(device)
    rank, world = _process_group() if data_parallel else (0, 1)
    set_determinism(seed)
    trained_net = LiverNet(phase_model.in_channels, config.net).to(dev)  # the same on every rank
    if config.channels_last:
        trained_net = trained_net.to(memory_format=torch.channels_last)
    model: torch.nn.Module = trained_net  # what the steps call: the network, or its DDP wrapper
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(seed + 7919 * rank)  # each rank its own dropout masks
        model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n, steps_per_pass = len(x), math.ceil(len(x) / config.batch_size)
    total_steps = steps_per_pass * config.variants_per_image
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup_fraction
    )
    generator = torch.Generator(device=dev).manual_seed(seed + 7919 * rank)  # rank 0: the single-process draw
    identity = {
        "config": json.dumps(asdict(config)),
        "seed": seed,
        "phase_model": phase_model.name,
        "n_images": n,
    }
    zero = torch.zeros((), device=dev)
    start, history, sums = 0, [], [zero.clone(), zero.clone()]  # loss sum, correct this pass

    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.exists():
        blob = torch.load(ckpt, map_location=dev, weights_only=True)
        if blob.get("format") != CHECKPOINT_FORMAT or any(blob[k] != v for k, v in identity.items()):
            raise ValueError(f"{ckpt} belongs to another training run; delete it to start anew")
        trained_net.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        _set_rng_states({k: v.cpu() for k, v in blob["rng"].items()}, dev, generator)
        start, history, sums = blob["step"], blob["history"], list(blob["sums"])

    def save_checkpoint(step: int) -> None:
        assert ckpt is not None
        if rank != 0:  # the ranks hold the same weights: one writes
            return
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                **identity,
                "step": step,
                "history": history,
                "model": trained_net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_states(dev, generator),
                "sums": sums,
            },
            tmp,
        )
        os.replace(tmp, ckpt)  # atomic: a kill mid-write leaves the previous checkpoint

    x_dev = torch.from_numpy(np.ascontiguousarray(select_channels(x, phase_model))).to(dev)
    y_dev = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(dev)
    x_val_sel = select_channels(x_val, phase_model) if x_val is not None else None
    bf16 = use_bf16(dev, config.autocast)
    model.train()
    t_loop = time.perf_counter()
    done = start // steps_per_pass * n + start % steps_per_pass * config.batch_size
    bar = tqdm(
        total=n * config.variants_per_image,
        initial=done,
        unit="img",
        desc=f"{phase_model.name} seed {seed}",
        disable=not progress,
        dynamic_ncols=True,
    )
    for step, epoch, batch in _batches(n, config.batch_size, seed, start, total_steps, dev):
        idx = batch[rank::world]  # this rank's share of the global minibatch (all of it alone)
        loss_sum, correct = _train_step(model, optimizer, x_dev[idx], y_dev[idx], config, generator, bf16)
        scheduler.step()
        sums[0] += loss_sum
        sums[1] += correct
        bar.update(len(batch))
        if (step + 1) % steps_per_pass == 0:
            if world > 1:  # the pass's loss and accuracy over every rank's share
                import torch.distributed as dist

                for total in sums:
                    dist.all_reduce(total)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": sums[0].item() / n,
                "train_accuracy": sums[1].item() / n,
                "val_accuracy": None,
                "lr": scheduler.get_last_lr()[0],
            }
            if x_val_sel is not None and y_val is not None:
                pred = predict_proba(trained_net, x_val_sel).argmax(1)
                record["val_accuracy"] = float(np.mean(pred == y_val))
            history.append(record)
            sums = [zero.clone(), zero.clone()]
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_accuracy']:.3f}")
        if ckpt is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps):
            save_checkpoint(step + 1)
    bar.close()
    loop_s = time.perf_counter() - t_loop
    trained = n * config.variants_per_image - done
    return TrainResult(
        model=trained_net.eval(),
        history=history,
        seconds=time.perf_counter() - t0,
        device=str(dev),
        images_per_s=trained / loop_s if trained else 0.0,
    )
