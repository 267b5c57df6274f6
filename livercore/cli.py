"""The `livercore` command line: a thin shell over the package."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from livercore.errors import InputError
from livercore.paths import DEFAULT_CASES_DIR
from livercore.vocab import MODEL_NAMES, PHASES, Phase


def _phantom_export(args: argparse.Namespace) -> int:
    from livercore.phantom.export import export_cohort

    start = time.perf_counter()
    manifest = export_cohort(args.cohort, args.out, seed=args.seed, size=args.size, workers=args.workers)
    seconds = time.perf_counter() - start
    counts = manifest["category"].value_counts().sort_index().to_dict()
    print(
        f"wrote {len(manifest)} cases ({3 * len(manifest)} DICOM files) and {args.out}/manifest.csv "
        f"in {seconds:.1f} s; categories {counts}"
    )
    return 0


def _phantom_montage(args: argparse.Namespace) -> int:
    from livercore.phantom.export import montage

    path = montage(args.out, seed=args.seed)
    print(f"wrote {path}")
    return 0


def _is_cohort(spec: str) -> bool:
    """Whether a --train / --test value names a cohort folder or manifest, not a phantom cohort."""
    return spec.endswith(".csv") or Path(spec).is_dir()


def _dataset(
    spec: str,
    seed: int,
    cache: Path | None,
    *,
    lesion: bool = True,
    sections: str = "all",
    size: int | None = None,
):
    """A phantom cohort's name (of `size` patients, else its own size), or a cohort in the
    cohort format (its folder or manifest.csv: every image set for training,
    `sections="largest"` for testing); phantom cohorts are cached as arrays in `cache` (the
    study's data/ folder)."""
    from livercore.dataset import Dataset, from_manifest, from_phantom

    if _is_cohort(spec):
        if not lesion:
            raise InputError(
                "The shortcut audit (--audit) paints lesions over: it runs on phantom cohorts only."
            )
        return from_manifest(spec, sections=sections)
    if cache is not None:
        path = cache / f"{spec}-seed{seed}{'' if lesion else '-nolesion'}{f'-{size}' if size else ''}.npz"
        if path.exists():
            return Dataset.load(path)
    data = from_phantom(spec, seed=seed, lesion=lesion, size=size)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        data.save(path)
    return data


def _same_cohort(a: str, b: str) -> bool:
    """Whether two cohort arguments name the same cohort: one phantom name, or one folder (given
    as the folder or as its manifest.csv)."""
    if not (_is_cohort(a) and _is_cohort(b)):
        return a == b
    folder = [Path(v).parent if Path(v).suffix == ".csv" else Path(v) for v in (a, b)]
    return folder[0].resolve() == folder[1].resolve()


def _filters(text: str) -> tuple[int, int, int]:
    """Parse "8,16,32" into (8, 16, 32): one positive filter count per convolutional block."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError("three positive filter counts, e.g. 8,16,32")
    return values  # three, checked above


def _teaching_build(args: argparse.Namespace) -> int:
    from livercore.teaching.build import build_catalogue

    start = time.perf_counter()
    table = build_catalogue(args.out)
    counts = table.groupby("source")["category"].value_counts().unstack(fill_value=0)
    print(
        f"wrote {len(table)} teaching cases to {args.out}/catalogue.csv in {time.perf_counter() - start:.0f} s"
    )
    print(counts.to_string())
    return 0


def _cohort_scan(args: argparse.Namespace) -> int:
    from livercore.dicom_study import propose_phases, read_studies

    studies = read_studies(args.source)
    for study in studies:
        print(f"study {study.number}: {len(study.series)} CT series")
        for volume in study.series:
            print(f"  {volume.label()}")
        for note in study.notes:
            print(f"  not a volume: {note}")
        try:
            proposal = propose_phases(study, late=args.late)
        except InputError as err:
            print(f"  phases: {err}")
            continue
        for phase, index in proposal.series.items():
            print(f"  {phase.value}: series {study.series[index].number} ({proposal.reasons[phase]})")
    return 0


def _cohort_import(args: argparse.Namespace) -> int:
    from livercore import cohort_import
    from livercore.nifti_cohort import LABELS_FILE, NiftiLayout
    from livercore.vocab import Phase

    folder = Path(args.folder)
    kind = args.format
    if kind == "auto":
        kind = (
            "nifti" if (folder / LABELS_FILE).is_file() and next(folder.glob("*/*.nii*"), None) else "dicom"
        )
    if kind == "nifti":
        names = {p: p.value for p in PHASES}
        if args.delayed_name:
            names[Phase.DELAYED] = args.delayed_name
        layout = NiftiLayout(phase_names=names, mask_phase=Phase(args.mask_phase))
        report = cohort_import.import_nifti(
            folder, args.out, layout, refine=not args.no_refine, progress=True
        )
    else:
        report = cohort_import.import_dicom(
            folder,
            args.out,
            points=args.points,
            labels=args.labels,
            late=args.late,
            refine=not args.no_refine,
            progress=True,
        )
    for line in report.lines():
        print(line)
    print(f"cohort: {Path(args.out) / 'manifest.csv'} (check it: livercore cohort check {args.out})")
    return 0


def _cohort_check(args: argparse.Namespace) -> int:
    from livercore.cohort import check_cohort

    result = check_cohort(args.cohort)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


def _study_run(args: argparse.Namespace) -> int:
    from livercore.study import run_study, shortcut_audit, write_metrics

    out = Path(args.out)
    cache = out / "data"
    train = _dataset(args.train, args.seed, cache)
    test = _dataset(args.test, args.seed, cache, sections="largest")
    if args.validation and any(_same_cohort(args.validation, other) for other in (args.test, args.train)):
        raise InputError("The validation cohort must be neither the test cohort nor the training cohort.")
    validation = (
        _dataset(args.validation, args.seed, cache, sections="largest", size=args.validation_size)
        if args.validation
        else None
    )
    models = tuple(args.models.split(",")) if args.models else MODEL_NAMES
    note = f"{args.train} (seed {args.seed}): {len(train)} image sets"
    from dataclasses import replace

    from livercore.study import study_config

    config = study_config()
    if args.variants:
        config = replace(config, variants_per_image=args.variants)
    if args.filters:
        config = replace(config, net=replace(config.net, filters=args.filters))
    run_study(
        train,
        test,
        out,
        sessions=args.sessions,
        models=models,
        device=args.device,
        data_note=note,
        test_note=f"{args.test} (seed {args.seed}): {len(test)} cases",
        config=config,
        parallel=args.parallel,
        validation=validation,
    )
    from livercore.distributed import Ranks

    if Ranks.from_environment().rank != 0:  # under torchrun: rank 0 audits and reports
        return 0
    if args.audit and not _is_cohort(args.train):
        from livercore.phantom import cirrhosis_flags

        audit = shortcut_audit(
            _dataset(args.train, args.seed, cache, lesion=False),
            _dataset(args.test, args.seed, cache, lesion=False),
            config=config,
            device=args.device,
            test_note=f"{args.test} (seed {args.seed})",
            cirrhosis=None
            if _is_cohort(args.test)
            else {
                "train": cirrhosis_flags(args.train, args.seed),
                "test": cirrhosis_flags(args.test, args.seed),
            },
        )
        write_metrics(out, audit)
    print(f"study written to {out}")
    return 0


def _study_report(args: argparse.Namespace) -> int:
    from livercore.report import study_report

    print(study_report(args.dir, as_json=args.json))
    return 0


def _study_ship(args: argparse.Namespace) -> int:
    import json

    from livercore.dataset import from_manifest, from_phantom
    from livercore.study import fit_ship_statistics, ship
    from livercore.study_folder import validate_study_dir

    validate_study_dir(args.dir, suggest=True)
    if not args.statistics_only and not (Path(args.dir) / "weights").is_dir():
        raise InputError(f"{args.dir} has no weights/ folder: ship a study written by `livercore study run`.")
    if args.valid == "test-2016" or (args.train == args.valid):
        raise InputError(
            "The validation cohort must be neither the test cohort test-2016 nor the training cohort."
        )
    if not 0.5 <= args.in_distribution_rate < 1:
        raise InputError("--in-distribution-rate is a share between 0.5 and 1, e.g. 0.99.")
    cache = Path(args.dir) / "data"
    train = _dataset(args.train, args.seed, cache if cache.is_dir() else None)
    if _is_cohort(args.valid):
        validation, valid_note = from_manifest(args.valid, sections="largest"), f"{args.valid}"
    else:
        validation = from_phantom(args.valid, seed=args.seed, size=args.valid_size)
        valid_note = f"{args.valid} phantom cohort (seed {args.seed})"
    notes = {
        "train_note": f"{args.train}{'' if _is_cohort(args.train) else f' phantom cohort (seed {args.seed})'}: "
        f"{len(train)} image sets",
        "validation_note": f"{valid_note}: {len(validation)} cases",
        "in_distribution_rate": args.in_distribution_rate,
    }
    if args.statistics_only:
        fitted = fit_ship_statistics(args.models_dir, train, validation, **notes)
    else:
        chosen = ship(args.dir, args.models_dir, train=train, validation=validation, **notes)
        print("shipped median sessions: " + ", ".join(f"{m} s{s}" for m, s in chosen.items()))
        fitted = {m: json.loads((Path(args.models_dir) / f"{m}.json").read_text()) for m in chosen}
    for name, entry in fitted.items():
        cal, ood = entry["calibration"], entry["ood"]
        print(
            f"{name}: temperature {cal['temperature']:.3f} (ECE on validation {cal['ece_before']:.3f} -> "
            f"{cal['ece_after']:.3f}), OOD thresholds "
            + ", ".join(f"{k} {v['threshold']:.2f}" for k, v in ood["spaces"].items())
            + f" ({ood['in_distribution_rate'] * 100:g} % of validation within)"
        )
    return 0


def _predict(args: argparse.Namespace) -> int:
    import json

    from livercore.analysis import analyse_crops, load_models
    from livercore.dataset import from_manifest

    models = load_models(args.models)
    if args.manifest:
        data = from_manifest(args.manifest)
        crops, ids = list(data.x), list(data.meta["case_id"])
    else:
        crops, ids = [_crops_from_files(args)], ["case"]
    out = []
    for case_id, x in zip(ids, crops, strict=True):
        result = analyse_crops(x, models, cam_method=None)
        out.append(
            {
                "case_id": case_id,
                "models": {
                    name: {
                        "probabilities": {k: round(v, 6) for k, v in probs.items()},
                        "predicted": result.results[name].predicted.value,
                        "unlike_training_data": result.results[name].unlike_training,
                        "out_of_distribution": result.ood_table()[name],
                    }
                    for name, probs in result.probability_table().items()
                },
            }
        )
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for row in out:
            print(
                row["case_id"]
                + ": "
                + ", ".join(
                    f"{m} {v['predicted']}"
                    + (" (unlike the training data)" if v["unlike_training_data"] else "")
                    for m, v in row["models"].items()
                )
            )
    return 0


def _crops_from_files(args: argparse.Namespace):
    from livercore.dicom_io import read_ct_slice
    from livercore.preprocess import LesionBox, preprocess_case

    files = {Phase.UNENHANCED: args.unenhanced, Phase.ARTERIAL: args.arterial, Phase.DELAYED: args.delayed}
    if not all(files.values()):
        raise InputError("Give --manifest, or the three files --unenhanced, --arterial and --delayed.")
    if not args.box:
        raise InputError("Give the lesion box as --box ROW0,COL0,ROW1,COL1 (pixels).")
    try:
        r0, c0, r1, c1 = (float(v) for v in args.box.split(","))
    except ValueError:
        raise InputError("The lesion box must be four numbers: ROW0,COL0,ROW1,COL1.") from None
    slices = {}
    for p, f in files.items():
        try:
            slices[p] = read_ct_slice(f)
        except InputError as err:
            raise InputError(f"{f} ({p.value}): {err}") from err
    box = LesionBox.from_corners(r0, c0, r1, c1)
    return preprocess_case(
        {p: s.hu for p, s in slices.items()},
        dict.fromkeys(PHASES, box),
        {p: s.pixel_spacing_mm[0] for p, s in slices.items()},
    )


def _validate(args: argparse.Namespace) -> int:
    from livercore.validate import validate_file

    all_ok = True
    for path in args.files:
        ok, what = validate_file(path)
        all_ok &= ok
        print(f"{'OK' if ok else 'ERROR'} {path}: {what}")
    return 0 if all_ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livercore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    phantom = sub.add_parser("phantom", help="synthetic triphasic CT cohorts").add_subparsers(
        dest="action", required=True
    )
    exp = phantom.add_parser("export", help="write a cohort as DICOM files and manifest.csv")
    exp.add_argument("--cohort", required=True, help="train-2013, test-2016 or any other name")
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--size", type=int, default=None, help="patients (cohorts other than train-2013)")
    exp.add_argument("--out", required=True)
    exp.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    exp.set_defaults(func=_phantom_export)
    mon = phantom.add_parser("montage", help="an atlas PNG of every category and subtype")
    mon.add_argument("--out", required=True)
    mon.add_argument("--seed", type=int, default=0)
    mon.set_defaults(func=_phantom_montage)

    teaching = sub.add_parser("teaching", help="the teaching catalogue").add_subparsers(
        dest="action", required=True
    )
    tb = teaching.add_parser(
        "build", help="write the stored example cases and cases/catalogue.csv (with the phantom recipes)"
    )
    tb.add_argument("--out", default=str(DEFAULT_CASES_DIR), help="the case folder (default: cases/)")
    tb.set_defaults(func=_teaching_build)

    cohort = sub.add_parser(
        "cohort", help="real studies: read them, import them as a cohort, check it"
    ).add_subparsers(dest="action", required=True)
    scan = cohort.add_parser(
        "scan", help="list the studies, series (as volumes) and proposed phases of a DICOM folder or zip"
    )
    scan.add_argument("source", help="a folder of DICOM files (searched recursively) or a zip archive")
    scan.add_argument(
        "--late",
        choices=("delayed", "portal-venous"),
        default="delayed",
        help="which late phase plays the paper's delayed phase (default: delayed)",
    )
    scan.set_defaults(func=_cohort_scan)
    imp = cohort.add_parser(
        "import",
        help="a PACS export (a folder or zip per case) or a NIfTI benchmark, with its annotations -> a cohort",
    )
    imp.add_argument(
        "folder", help="one subfolder (or zip) per case, named by its case_id; or a NIfTI benchmark"
    )
    imp.add_argument("--out", required=True, help="folder for the cohort (CT slices and manifest.csv)")
    imp.add_argument(
        "--format",
        choices=("auto", "dicom", "nifti"),
        default="auto",
        help="auto: a NIfTI benchmark when the folder holds labels.csv and .nii files, else DICOM",
    )
    imp.add_argument(
        "--points",
        help="DICOM: CSV of lesions, case_id, category, x_mm, y_mm, z_mm, diameter_mm[, subtype, phase]",
    )
    imp.add_argument(
        "--labels", help="DICOM with a SEG per case: CSV case_id, category and/or label[, subtype]"
    )
    imp.add_argument(
        "--late",
        choices=("delayed", "portal-venous"),
        default="delayed",
        help="DICOM: which late phase plays the paper's delayed phase",
    )
    imp.add_argument(
        "--delayed-name", default=None, help="NIfTI: the file name of the phase that plays 'delayed'"
    )
    imp.add_argument(
        "--mask-phase",
        choices=[p.value for p in PHASES],
        default="arterial",
        help="NIfTI: the phase the mask was drawn on",
    )
    imp.add_argument(
        "--no-refine",
        action="store_true",
        help="carry lesions by patient coordinates only (no breath-hold search)",
    )
    imp.set_defaults(func=_cohort_import)
    chk = cohort.add_parser(
        "check", help="check a cohort before training: files, centres, categories, review flags"
    )
    chk.add_argument("cohort", help="a cohort folder (or its manifest.csv)")
    chk.set_defaults(func=_cohort_check)

    study = sub.add_parser("study", help="train, evaluate and report the five phase-models").add_subparsers(
        dest="action", required=True
    )
    run = study.add_parser("run", help="train every model x session and write predictions, metrics, cards")
    run.add_argument(
        "--train",
        default="train-2013",
        help="a phantom cohort's name, or a cohort folder or its manifest.csv",
    )
    run.add_argument(
        "--test",
        default="test-2016",
        help="a phantom cohort's name, or a cohort folder or its manifest.csv (each lesion's largest section)",
    )
    run.add_argument("--sessions", type=int, default=5)
    run.add_argument("--seed", type=int, default=0, help="phantom cohort seed")
    run.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(MODEL_NAMES))
    run.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    run.add_argument(
        "--variants",
        type=int,
        default=None,
        help="augmented variants per image set (default 208, the shipped recipe; the paper's 52 is 4x faster)",
    )
    run.add_argument(
        "--filters",
        type=_filters,
        default=None,
        help="the three convolutional blocks' filters (default 16,32,64, the shipped network); measure "
        "another with --validation: 8,16,32 trains 2.5x faster but lost 0.11 of triphasic validation "
        "accuracy (benchmarks/results/cpu_recipes.json)",
    )
    run.add_argument(
        "--validation",
        default=None,
        help="a validation cohort (phantom name, e.g. valid-2014, or a cohort folder): each session's "
        "accuracy on it goes into its card and metrics.json (never the test cohort)",
    )
    run.add_argument(
        "--validation-size", type=int, default=None, help="patients of a phantom validation cohort"
    )
    run.add_argument(
        "--audit", action="store_true", help="also run the shortcut audit (lesions painted over)"
    )
    run.add_argument("--out", required=True)
    run.add_argument(
        "--parallel",
        choices=("auto", "sessions", "ddp"),
        default="auto",
        help="under torchrun: each rank its own sessions, or every session data-parallel over the "
        "ranks (auto: ddp from 20,000 training image sets, or with fewer sessions than ranks)",
    )
    run.set_defaults(func=_study_run)
    rep = study.add_parser("report", help="Tables 2 and 3 and the AUCs beside the paper's")
    rep.add_argument("dir")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=_study_report)
    shp = study.add_parser(
        "ship",
        help="copy each model's median session and the study to models/, with each model's OOD "
        "statistics (training cohort) and temperature and OOD threshold (validation cohort)",
    )
    shp.add_argument("dir")
    shp.add_argument("--models-dir", default="models")
    shp.add_argument(
        "--train",
        default="train-2013",
        help="the training cohort (a phantom cohort's name, or a cohort folder or its manifest.csv): "
        "the OOD statistics' features",
    )
    shp.add_argument(
        "--valid",
        default="valid-2014",
        help="the validation cohort, never the test cohort: the temperature and the OOD threshold",
    )
    shp.add_argument(
        "--valid-size",
        type=int,
        default=1000,
        help="patients of a phantom validation cohort (default 1000: a 99 %% threshold of 200 rests on 2 cases)",
    )
    shp.add_argument("--seed", type=int, default=0, help="phantom cohort seed")
    shp.add_argument(
        "--in-distribution-rate",
        type=float,
        default=0.99,
        help="the share of validation cases the OOD threshold lets through (default 0.99)",
    )
    shp.add_argument(
        "--statistics-only",
        action="store_true",
        help="only (re)fit the statistics of the models already in --models-dir, weights unchanged "
        "(DIR: their study, e.g. models/study)",
    )
    shp.set_defaults(func=_study_ship)

    pred = sub.add_parser(
        "predict", help="five models' probabilities for cases of a manifest or three DICOM files"
    )
    pred.add_argument("--manifest", help="a manifest CSV (the phantom export's columns)")
    pred.add_argument("--models", default=None, help="folder of trained models (default: the bundled ones)")
    pred.add_argument("--unenhanced")
    pred.add_argument("--arterial")
    pred.add_argument("--delayed")
    pred.add_argument("--box", help="lesion box ROW0,COL0,ROW1,COL1 in pixels (same in every phase)")
    pred.add_argument("--json", action="store_true")
    pred.set_defaults(func=_predict)

    val = sub.add_parser("validate", help="check upload files: one OK or ERROR line per file")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the user gave that cannot be read or written
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
