"""The ``vapipe`` command line: checks and inspection around the Snakemake workflow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vapipe.errors import InputError


def inspect_cache(path: Path) -> list[dict]:
    """One summary per store under `path` (a store, a backbone folder, or the features root)."""
    from vapipe.features.cache import is_complete, read_store

    stores = [path] if path.suffix == ".zarr" else sorted(path.rglob("*.zarr"))
    if not stores:
        raise InputError(f"{path}: no .zarr feature stores found")
    rows = []
    for store_path in stores:
        if not is_complete(store_path):
            rows.append({"store": str(store_path), "status": "INCOMPLETE"})
            continue
        store = read_store(store_path)
        rows.append(
            {
                "store": str(store_path),
                "status": "complete",
                "backbone": store.attrs.get("backbone"),
                "trial": store.attrs.get("trial"),
                "rows": store.features.shape[0],
                "dim": store.features.shape[1],
                "dtype": "float16",
                "fps": round(float(store.attrs.get("fps", 0)), 3),
                "valid": round(float(store.valid.mean()), 4),
                "pretrained": store.attrs.get("pretrained"),
            }
        )
    return rows


def _validate(args: argparse.Namespace) -> int:
    from vapipe.submission import validate_submission

    rows = validate_submission(args.file, args.example)
    print(f"{args.file}: valid, {rows} rows match {args.example}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import pandas as pd

    table = pd.DataFrame(inspect_cache(Path(args.path)))
    print(table.to_string(index=False))
    return 0 if (table["status"] == "complete").all() else 1


def _predict(args: argparse.Namespace) -> int:
    from vapipe.logs import setup_logging
    from vapipe.predict import plot_traces, predict_video

    setup_logging()
    out = args.out or Path(args.video).with_suffix("")
    table = predict_video(args.video, args.system, args.results, args.folds, args.smoothing)
    csv_path, png_path = Path(f"{out}.va.csv"), Path(f"{out}.va.png")
    table.to_csv(csv_path, index=False, float_format="%.4f")
    plot_traces(table, png_path, f"{Path(args.video).name} — {args.system}")
    print(
        f"{csv_path}: {len(table)} frames ({(table['face'] == 0).sum()} without a face, interpolated); plot {png_path}"
    )
    return 0


def merged_config(paths: list[Path]) -> dict:
    """Config files merged as snakemake merges several --configfile (later keys win, mappings deep)."""
    import yaml

    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            base[key] = (
                update(dict(base[key]), value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
            )
        return base

    config: dict = {}
    for path in paths:
        try:
            update(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{path}: cannot read the config ({error})") from None
    return config


def _fetch_weights(args: argparse.Namespace) -> int:
    from vapipe.errors import ConfigError
    from vapipe.specs import PipelineSpec

    spec = PipelineSpec.from_config(merged_config(args.configs))
    if spec.paths.weights is None:
        raise ConfigError(f"{', '.join(map(str, args.configs))}: set paths.weights, the folder to cache weights in")
    from vapipe.features.weights import fetch_weights, use_weights_cache

    use_weights_cache(spec.paths.weights, offline=False)  # before timm / transformers are imported
    rows = fetch_weights(spec)
    print(f"{spec.paths.weights}: {len(rows)} pretrained models cached; jobs now run with the hubs offline")
    return 0


def registered(what: str) -> list[str]:
    """Names in one registry: backbone kinds, models, system kinds (with their models), fusion
    methods, dataset layouts."""
    if what == "backbones":
        from vapipe.config import IMPORTED_KIND
        from vapipe.features.backbones import BACKBONE_KINDS

        return sorted([*BACKBONE_KINDS, IMPORTED_KIND])
    if what == "layouts":
        from vapipe.data.manifest import list_layouts

        return list_layouts()
    if what == "models":
        from vapipe.training.system import known_models

        return known_models()
    if what == "systems":
        from vapipe.training.system import list_systems

        return [f"{kind}: {', '.join(models)}" for kind, models in list_systems().items()]
    from vapipe.fusion.base import list_fusions

    return list_fusions()


def _list(args: argparse.Namespace) -> int:
    print("\n".join(registered(args.what)))
    return 0


def _rehearse(args: argparse.Namespace) -> int:
    from vapipe.rehearsal import FAMILIES, STAGES, rehearse

    if not 0 < args.fraction <= 1:
        raise InputError(f"--fraction must be in (0, 1], got {args.fraction}")
    records = rehearse(
        args.out, args.fraction, args.seed, args.threads, args.steps or STAGES, args.families or tuple(FAMILIES)
    )
    return 1 if any("error" in record for record in records) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapipe",
        description="ABAW valence-arousal pipeline tools. The pipeline itself runs with "
        "'snakemake --cores 8 results/submission.zip'.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate-submission",
        help="check an ABAW VA submission (.txt or .zip) against the example file",
        description="Check header, row order and count against the organisers' example file, and that "
        "every value is a number in [-1, 1]. Exit status 0 when valid.",
    )
    validate.add_argument("file", type=Path, help="submission .txt or .zip holding one .txt")
    validate.add_argument(
        "--example",
        type=Path,
        required=True,
        help="the organisers' example file (e.g. CVPR_6th_ABAW_VA_test_set_example.txt)",
    )
    validate.set_defaults(run=_validate)
    inspect = commands.add_parser(
        "inspect-cache",
        help="summarise Zarr feature stores: backbone, shape, dtype, fps, valid fraction",
        description="List every store under PATH (one store, a backbone folder, or results/features) "
        "with its backbone, rows, dimension, dtype, fps and fraction of valid frames. Exit status 1 "
        "when any store is incomplete.",
    )
    inspect.add_argument("path", type=Path, help="a .zarr store or a folder of them")
    inspect.set_defaults(run=_inspect)
    predict = commands.add_parser(
        "predict",
        help="per-frame valence/arousal CSV and plot for any video, with a trained system",
        description="Detect and crop the face in every frame (MediaPipe, offline), extract the audio, "
        "embed both with the system's own backbones, average the system's fold models, smooth, and "
        "write OUT.va.csv (frame,time,valence,arousal,face) and OUT.va.png. Frames without a face "
        "are interpolated and have face=0.",
    )
    predict.add_argument("video", type=Path, help="any video file with a face (and ideally a voice)")
    predict.add_argument("--system", required=True, help="a system trained by the workflow, e.g. tcn_av")
    predict.add_argument(
        "--results", type=Path, default=Path("results"), help="the workflow's results folder (default: results)"
    )
    predict.add_argument("--folds", nargs="+", help="fold models to average (default: all trained folds)")
    predict.add_argument(
        "--smoothing",
        type=float,
        default=None,
        help="Hamming window in seconds (default: the system's own post-processing)",
    )
    predict.add_argument("--out", type=Path, help="output prefix (default: the video path without suffix)")
    predict.set_defaults(run=_predict)
    listing = commands.add_parser(
        "list",
        help="registered backbone kinds, models, system kinds, fusion methods or dataset layouts",
        description="One name per line, as a config may name them (backbones.<name>.kind, "
        "systems.<name>.model, fusions.<name>.method, dataset.layout); 'systems' shows each kind with "
        "its models.",
    )
    listing.add_argument("what", choices=["backbones", "models", "systems", "fusions", "layouts"])
    listing.set_defaults(run=_list)
    fetch = commands.add_parser(
        "fetch-weights",
        help="cache every pretrained backbone and text tower of a config (for offline jobs)",
        description="Run once where the model hubs are reachable (a cluster's login node): builds every "
        "backbone and text tower with pretrained: true and no local weights, which stores their weights in "
        "the config's paths.weights folder the way each library caches (Hugging Face hub cache for "
        "transformers and timm, TORCH_HOME for torchvision and torch hub). Workflow jobs then load from it "
        "with the hubs offline.",
    )
    fetch.add_argument("configs", type=Path, nargs="+", help="the config files the workflow runs with")
    fetch.set_defaults(run=_fetch_weights)
    rehearsal = commands.add_parser(
        "rehearse",
        help="measure the heavy steps on a synthetic release of Aff-Wild2's shape and size",
        description="Build an Aff-Wild2-shaped release (594 trials, Aff-Wild2's lengths and frame rates, "
        "tiny silent videos, the real folder and file names) and synthetic ResNet-50 + WavLM-base feature "
        "stores, scaled by FRACTION, then run the manifest, the dry run of the Aff-Wild2 workflow, one "
        "train_fold per model family (1 epoch, CPU), both late fusions and the submission, each in its own "
        "subprocess. Prints one JSON object per step (step, seconds, peak_rss_gb, features_gb_fp16, ...). "
        "Exit status 1 when a step failed.",
    )
    rehearsal.add_argument("--fraction", type=float, required=True, help="share of Aff-Wild2's frames (1: full)")
    rehearsal.add_argument("--out", type=Path, required=True, help="folder for the release, stores and outputs")
    rehearsal.add_argument("--seed", type=int, default=0, help="seed of the release and the stores (default 0)")
    rehearsal.add_argument("--threads", type=int, default=2, help="threads of the fusion steps (default 2)")
    rehearsal.add_argument(
        "--steps",
        nargs="+",
        choices=["release", "manifest", "features", "dry_run", "train", "fusion", "submission"],
        help="run only these steps, in the rehearsal's order (default: all; later steps need earlier ones' outputs)",
    )
    rehearsal.add_argument(
        "--families",
        nargs="+",
        choices=["tcn_fusion", "sage", "iaca", "mstcn_cma", "dasp", "dresvyanskiy_face", "dresvyanskiy_audio", "kelm"],
        help="model families whose train_fold runs (default: all eight)",
    )
    rehearsal.set_defaults(run=_rehearse)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as error:
        print(f"vapipe: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
