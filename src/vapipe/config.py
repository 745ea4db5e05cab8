"""Cross-field checks of a workflow config that a JSON schema cannot express."""

from __future__ import annotations

import re
from pathlib import Path

from vapipe.data.folds import OFFICIAL
from vapipe.errors import InputError


# Features computed elsewhere, imported from an HDF5 file (`vapipe.features.interchange`).
IMPORTED_KIND = "hdf5"


class ConfigError(InputError):
    """The config is inconsistent; the message names the key."""


def check_config(config: dict, config_files: list[str] | None = None) -> None:
    """Raise ConfigError naming the first inconsistent key."""
    from vapipe.features.backbones import BACKBONE_KINDS, backbone_options
    from vapipe.models import MODELS
    from vapipe.training.run import NON_NEURAL_MODELS

    source = ", ".join(str(f) for f in config_files or []) or "config"
    dataset = config["dataset"]
    root = Path(dataset["root"])
    if not dataset.get("demo") and not root.is_dir():
        raise ConfigError(f"{source}: dataset.root '{root}' does not exist; point it at your Aff-Wild2 folder")
    for name, spec in config["backbones"].items():
        if spec["kind"] == IMPORTED_KIND:
            extra = sorted(set(spec) - {"kind", "id", "input", "pretrained", "weights", "seed"})  # schema defaults
            if extra:
                raise ConfigError(f"{source}: backbones.{name} (kind hdf5) takes no setting '{extra[0]}'")
            continue
        if spec["kind"] not in BACKBONE_KINDS:
            raise ConfigError(
                f"{source}: backbones.{name}.kind '{spec['kind']}' is unknown; known: {', '.join(sorted([*BACKBONE_KINDS, IMPORTED_KIND]))}"
            )
        if spec.get("weights") and not Path(spec["weights"]).exists():
            raise ConfigError(f"{source}: backbones.{name}.weights '{spec['weights']}' does not exist")
        try:  # a setting the kind does not take (a typo) stops the run before any job starts
            backbone_options(name, spec)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    for name, system in config["systems"].items():
        known_models = sorted([*MODELS, *NON_NEURAL_MODELS])
        if system["model"] not in known_models:
            raise ConfigError(
                f"{source}: systems.{name}.model '{system['model']}' is unknown; known: {', '.join(known_models)}"
            )
        for feature in system["features"]:
            if feature not in config["backbones"]:
                raise ConfigError(f"{source}: systems.{name}.features names unknown backbone '{feature}'")
        for fold in system.get("folds", []):
            if fold not in fold_names(config):
                raise ConfigError(f"{source}: systems.{name}.folds names '{fold}', but the folds are "
                                  f"{', '.join(fold_names(config))}")
    for table, spec in config.get("tables", {}).items():
        for system in spec["systems"]:
            if system not in config["systems"]:
                raise ConfigError(f"{source}: tables.{table}.systems names '{system}', which is not under systems")
    report = config.get("report", {})
    for system in report.get("systems", []):
        if system not in config["systems"]:
            raise ConfigError(f"{source}: report.systems names '{system}', which is not under systems")
    for run in report.get("missing_audio", []):
        system, fold = run.split("/")
        if system not in config["systems"] or fold not in config["systems"][system].get("folds", fold_names(config)):
            raise ConfigError(f"{source}: report.missing_audio names '{run}': no such system, or it does not train that fold")
    fusions = config.get("fusions", {})
    for name, fusion in fusions.items():
        if name in config["systems"]:
            raise ConfigError(f"{source}: fusions.{name}: a system has the same name")
        for system in fusion["systems"]:
            if system not in config["systems"]:
                raise ConfigError(f"{source}: fusions.{name}.systems names '{system}', which is not under systems")
            trained = config["systems"][system].get("folds", fold_names(config))
            missing = [f for f in fusion["folds"] if f not in trained]
            if missing:
                raise ConfigError(f"{source}: fusions.{name}.folds names '{missing[0]}', which system '{system}' "
                                  f"does not train (it trains {', '.join(trained)})")
        if OFFICIAL in fusion["folds"] and len(fusion["folds"]) > 1:
            raise ConfigError(f"{source}: fusions.{name}.folds: fit on [official] or on K folds, not both")
    submission = config["submission"]
    if submission["system"] in fusions:
        if submission.get("fold_selection", "average") != "average":
            raise ConfigError(f"{source}: submission.fold_selection applies to a system's folds, not to "
                              f"fusion '{submission['system']}'")
        return
    if submission["system"] not in config["systems"]:
        raise ConfigError(f"{source}: submission.system '{submission['system']}' is neither under systems nor under fusions")
    known_folds = set(config["systems"][submission["system"]].get("folds", fold_names(config)))
    for fold in submission["folds"]:
        if fold not in known_folds:
            raise ConfigError(
                f"{source}: submission.folds names '{fold}', but the folds are {', '.join(sorted(known_folds))}"
            )


def fold_names(config: dict) -> list[str]:
    """Folds the config trains: 'official' (if enabled) and k0 .. k{K-1}."""
    folds = config["folds"]
    return ([OFFICIAL] if folds.get("official", True) else []) + [f"k{i}" for i in range(folds["k"])]


def wildcard_pattern(names) -> str:
    """Regex matching exactly the given names (for Snakemake wildcard_constraints)."""
    return "|".join(re.escape(n) for n in sorted(names))
