from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from livercore import train
from livercore.model import NetConfig, predict_proba, select_channels
from livercore.train import TrainConfig, choose_device, train_model
from livercore.vocab import PHASE_MODELS

# A small net and short sessions keep each test to a few seconds on two CPU cores.
TINY = TrainConfig(
    variants_per_image=4,
    batch_size=16,
    lr=3e-3,
    checkpoint_every=4,
    net=NetConfig(filters=(4, 8, 8), hidden=(32, 16), dropout=0.1),
)
ARTERIAL = PHASE_MODELS["arterial"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread spares OpenMP's barrier waits when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 70, 70) uint8 grey images with a central disc, bright (A = 0) or dark (B = 1)
    in the arterial phase only; the other phases carry no signal."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(110, 12, (n, 3, 70, 70))
    rr, cc = np.mgrid[:70, :70]
    disc = (rr - 35) ** 2 + (cc - 35) ** 2 < rng.uniform(8, 15, (n, 1, 1)) ** 2
    x[:, 1][disc & (y == 0)[:, None, None]] += 90
    x[:, 1][disc & (y == 1)[:, None, None]] -= 90
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def _weights(result: train.TrainResult) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_a_separable_toy_problem() -> None:
    x, y = blobs(48, seed=0)
    x_val, y_val = blobs(32, seed=1)
    config = replace(TINY, variants_per_image=12)  # 36 steps
    result = train_model(
        x,
        y,
        phase_model=ARTERIAL,
        config=config,
        seed=0,
        device="cpu",
        progress=False,
        x_val=x_val,
        y_val=y_val,
    )
    assert len(result.history) == 12
    assert result.history[-1]["val_accuracy"] >= 0.9
    pred = predict_proba(result.model, select_channels(x_val, ARTERIAL)).argmax(1)
    assert (pred == y_val).mean() >= 0.9
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.device == "cpu" and result.images_per_s > 0


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    x, y = blobs(32, seed=0)
    runs = [
        train_model(x, y, phase_model=ARTERIAL, config=TINY, seed=s, progress=False, device="cpu")
        for s in (7, 7, 8)
    ]
    a, b, c = (_weights(r) for r in runs)
    assert _same(a, b)
    assert not _same(a, c)
    assert runs[0].history == runs[1].history


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch) -> None:
    x, y = blobs(40, seed=0)  # 3 steps per pass, 12 in all; checkpoints after 4, 8, 12
    session = partial(
        train_model, x, y, phase_model=ARTERIAL, config=TINY, seed=5, progress=False, device="cpu"
    )
    whole = session()

    step, calls = train._train_step, []

    def dies_at_step_seven(*args, **kw):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt  # two steps after the checkpoint, which fell mid-pass
        return step(*args, **kw)

    monkeypatch.setattr(train, "_train_step", dies_at_step_seven)
    ckpt = tmp_path / "session.ckpt"
    with pytest.raises(KeyboardInterrupt):
        session(checkpoint_path=ckpt)
    assert ckpt.exists()
    monkeypatch.setattr(train, "_train_step", step)
    resumed = session(checkpoint_path=ckpt)
    assert _same(_weights(whole), _weights(resumed))
    assert resumed.history == whole.history


def test_a_checkpoint_of_another_run_is_refused(tmp_path) -> None:
    x, y = blobs(16, seed=0)
    config = replace(TINY, variants_per_image=1)
    ckpt = tmp_path / "session.ckpt"
    train_model(
        x, y, phase_model=ARTERIAL, config=config, seed=1, progress=False, device="cpu", checkpoint_path=ckpt
    )
    with pytest.raises(ValueError, match="another training run"):
        train_model(
            x,
            y,
            phase_model=ARTERIAL,
            config=config,
            seed=2,
            progress=False,
            device="cpu",
            checkpoint_path=ckpt,
        )


def test_bf16_autocast_trains_on_the_cpu() -> None:
    x, y = blobs(16, seed=0)
    config = replace(TINY, variants_per_image=1, autocast="bf16")
    result = train_model(
        x, y, phase_model=PHASE_MODELS["triphasic"], config=config, seed=0, progress=False, device="cpu"
    )
    assert np.isfinite(result.history[0]["loss"])


def test_training_refuses_images_that_are_not_triphasic_uint8() -> None:
    x, y = blobs(4, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        train_model(x[:, :1], y, phase_model=ARTERIAL, config=TINY, seed=0, device="cpu")


def test_choose_device_takes_the_argument_then_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("LIVERCORE_DEVICE", "cpu")
    assert choose_device() == torch.device("cpu")
    monkeypatch.setenv("LIVERCORE_DEVICE", "cuda:0")
    assert choose_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_choose_device_refuses_a_missing_gpu(monkeypatch) -> None:
    monkeypatch.delenv("LIVERCORE_DEVICE", raising=False)
    assert choose_device().type in ("mps", "cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        choose_device("cuda")
