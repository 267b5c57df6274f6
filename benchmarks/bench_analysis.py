"""The five-model analysis against a plain-torch reference of the same work, side by side.

    python benchmarks/bench_analysis.py [REPEATS]   ->  benchmarks/results/analysis_cpu.json

One phantom case's crops through the five shipped phase-models, three ways, alternated call by
call so that the machine's load falls on all of them alike:

- "analysis": livercore.analysis.analyse_crops, what the app runs (CAM objects built once per
  model, one forward pass for probabilities, features and CAM; livercore.explain.CamEngine);
- "per_call_grad_cam": the previous analysis, kept here to show what changed: a forward pass
  for probabilities and features, then pytorch-grad-cam built, run and released per model
  (explain.class_activation_map), then the phase contributions;
- "plain_torch": the same work written with torch alone, no hooks, no library: per model a
  forward pass keeping the last convolutional activation, the softmax with the model's
  temperature, the backward pass of the chosen category's score, the CAM arithmetic (Grad-CAM:
  channel weights = mean gradient; Grad-CAM++: the second-order weights; EigenCAM: the first
  principal component), bilinear resize to 70 x 70 and min-max scaling; the 2^n coalition batch
  of the phase contributions; the OOD distances from the same features.

Then the top functions of the analysis by own time (cProfile), and the number of CAM objects
the library builds over the analysis calls (0 after the first: they are built once).
"""

from __future__ import annotations

import cProfile
import io
import itertools
import json
import os
import platform
import pstats
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("GradCAM", "GradCAM++", "EigenCAM")


def plain_cam(method: str, act: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """(1, K, h, w) activation (and its gradient) -> (h, w) map before scaling, as each method
    defines it (Selvaraju 2017; Chattopadhay 2018; Muhammad 2020)."""
    if method == "GradCAM":
        assert grad is not None
        weights = grad.mean(dim=(2, 3), keepdim=True)
    elif method == "GradCAM++":
        assert grad is not None
        g2, g3 = grad**2, grad**3
        denom = 2 * g2 + (act.sum(dim=(2, 3), keepdim=True) * g3)
        alpha = g2 / torch.where(denom != 0, denom, torch.ones_like(denom))
        weights = (torch.clamp(grad, min=0) * alpha).sum(dim=(2, 3), keepdim=True)
    else:  # EigenCAM: projection on the first right singular vector of the centred activations
        a = act[0].reshape(act.shape[1], -1).T  # (h*w, K)
        a = a - a.mean(dim=0)
        _, _, vh = torch.linalg.svd(a, full_matrices=False)
        proj = a @ vh[0]
        return proj.reshape(act.shape[2:])
    return (weights * act).sum(dim=1)[0]


def plain_torch_analysis(
    crops: np.ndarray, models: dict[str, Any], method: str, contributions: bool = True
) -> dict[str, np.ndarray]:
    """The analysis's work in plain torch; returns each model's CAM (70, 70)."""
    from livercore.contribution import shapley_values
    from livercore.model import select_channels
    from livercore.ood import assess

    maps = {}
    for name, m in models.items():
        net = m.net
        x = torch.from_numpy(select_channels(crops, m.phase_model)[None].astype(np.float32) / 255)
        h = x - net.config.input_shift
        means, sds, act = [], [], None
        with torch.enable_grad():
            for layer in net.features:
                h = layer(h)
                if layer is net.target_layer:
                    act = h
                    act.retain_grad()
                if isinstance(layer, torch.nn.MaxPool2d):
                    sd, mean = torch.std_mean(h.flatten(2), dim=2)
                    means.append(mean)
                    sds.append(sd)
            penultimate = net.forward_head(h, pre_logits=True)
            logits = net.head[-1](penultimate) + net.category_offset
            proba = torch.softmax(logits.detach()[0] / m.calibration.temperature, 0)
            top = int(proba.argmax())
            if method != "EigenCAM":
                logits[0, top].backward()
        assert act is not None
        cam = plain_cam(method, act.detach(), act.grad if method != "EigenCAM" else None).clamp_min(0)
        cam = F.interpolate(cam[None, None], size=(70, 70), mode="bilinear", align_corners=False)[0, 0]
        cam = cam - cam.min()
        maps[name] = (cam / (cam.max() + 1e-7)).numpy()
        features = {
            "penultimate": penultimate.detach().numpy(),
            "convolutional": torch.cat(means + sds, dim=1).detach().numpy(),
        }
        assess(name, m.ood, features, phases=m.phase_model.phases)
        n = x.shape[1]
        if contributions and n > 1:  # the phase contributions: every subset of the phases shown, one batch
            subsets = [s for k in range(n + 1) for s in itertools.combinations(range(n), k)]
            shown = torch.zeros(len(subsets), n, 1, 1)
            for row, subset in enumerate(subsets):
                shown[row, list(subset)] = 1
            flat = x.mean(dim=(2, 3), keepdim=True)
            with torch.no_grad():
                p = torch.softmax(net(shown * x + (1 - shown) * flat) / m.calibration.temperature, 1)[:, top]
            shapley_values({s: float(v) for s, v in zip(subsets, p, strict=True)}, n)
    return maps


def per_call_analysis(
    crops: np.ndarray, models: dict[str, Any], method: str, contributions: bool = True
) -> None:
    """The previous analyse_crops: two forward passes per model and a CAM object per call."""
    from livercore.analysis import _calibrated, _calibrated_net
    from livercore.contribution import phase_contributions
    from livercore.explain import class_activation_map
    from livercore.model import predict_logits_and_features, select_channels
    from livercore.ood import assess
    from livercore.vocab import CATEGORIES

    for name, m in models.items():
        x = select_channels(crops, m.phase_model)
        logits, features = predict_logits_and_features(m.net, x[None])
        want = CATEGORIES[int(np.argmax(_calibrated(m, logits[0])))]
        class_activation_map(m.net, x, want.output_index, method)
        if contributions and len(m.phase_model.phases) > 1:
            phase_contributions(_calibrated_net(m), x, m.phase_model.phases, want)
        assess(name, m.ood, features, phases=m.phase_model.phases)


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main(repeats: int = 40) -> dict[str, Any]:
    from pytorch_grad_cam.base_cam import BaseCAM

    from livercore.analysis import analyse_crops, load_models
    from livercore.phantom import generate_case
    from livercore.preprocess import LesionBox, preprocess_case
    from livercore.vocab import PHASES

    torch.set_num_threads(os.cpu_count() or 1)
    models = load_models()
    case = generate_case("test-2016", 0, 3)
    boxes = {
        p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
        for p in PHASES
    }
    crops = preprocess_case(case.hu, boxes, case.spacing_mm)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "load_average_before": round(os.getloadavg()[0], 2),
        "work": "one case, five phase-models: probabilities, OOD features and distances, the CAM of the "
        "top category, the phase contributions (triphasic 8 inputs, art/del 4)",
    }
    builds = {"n": 0}
    original_init = BaseCAM.__init__

    def counting_init(self: BaseCAM, *args: Any, **kwargs: Any) -> None:
        builds["n"] += 1
        original_init(self, *args, **kwargs)

    for method, contributions in [(m, True) for m in METHODS] + [("GradCAM", False)]:
        args = (crops, models, method, contributions)
        runs = {
            "analysis": partial(analyse_crops, crops, models, cam_method=method, contributions=contributions),
            "per_call_grad_cam": partial(per_call_analysis, *args),
            "plain_torch": partial(plain_torch_analysis, *args),
        }
        for _ in range(3):  # warm-up: oneDNN primitives, the engines' CAM objects
            for run in runs.values():
                run()
        BaseCAM.__init__ = counting_init  # type: ignore[method-assign]
        builds["n"] = 0
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(repeats):
            for k, run in runs.items():  # alternated: the load falls on all three alike
                times[k].append(_timed(run))
        BaseCAM.__init__ = original_init  # type: ignore[method-assign]
        analysis_builds = builds["n"] - repeats * len(models)  # the per-call path builds 5 a call
        med = {k: float(np.median(v)) for k, v in times.items()}
        key = method if contributions else f"{method}_without_contributions"
        report[key] = {
            **{
                f"{k}_ms": {"median": round(v, 1), "p90": round(float(np.percentile(times[k], 90)), 1)}
                for k, v in med.items()
            },
            "ratio_analysis_to_plain_torch": round(med["analysis"] / med["plain_torch"], 2),
            "ratio_per_call_to_plain_torch": round(med["per_call_grad_cam"] / med["plain_torch"], 2),
            "cam_objects_built_by_the_analysis": analysis_builds,
        }
        print(key, json.dumps(report[key]), flush=True)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        analyse_crops(crops, models)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("tottime")
    stats.print_stats(12)
    report["profile_top_own_time_GradCAM"] = [
        line.strip() for line in text.getvalue().splitlines() if line.strip()[:1].isdigit()
    ][:12]
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    out = ROOT / "benchmarks" / "results" / "analysis_cpu.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
