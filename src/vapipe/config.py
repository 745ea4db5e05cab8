"""A workflow config checked once: typed specs, registry names, and cross-field consistency.

`check_config` builds the `vapipe.specs.PipelineSpec` (unknown keys stop it, naming the key path
and the closest valid key), then checks what only the registries know (backbone kinds and their
settings, models and their ``params``, fusion methods and their options) and what a JSON schema
cannot express (names that refer to other sections). It is the one place that imports the
registries of both stages: the workflow calls it while the Snakefile is parsed.
"""

from __future__ import annotations

import re
from pathlib import Path

from vapipe.data.folds import OFFICIAL
from vapipe.errors import ConfigError
from vapipe.specs import FoldsSpec, PipelineSpec, build, check_keys

# Features computed elsewhere, imported from an HDF5 file (`vapipe.features.interchange`).
IMPORTED_KIND = "hdf5"

__all__ = ["IMPORTED_KIND", "ConfigError", "check_config", "fold_names", "wildcard_pattern"]


def check_config(config: dict, config_files: list[str] | None = None) -> PipelineSpec:
    """The typed spec of `config`; raises ConfigError naming the first wrong key, prefixed by the
    config files it came from."""
    source = ", ".join(str(f) for f in config_files or []) or "config"
    try:
        spec = PipelineSpec.from_config(config)
        _check_registries(spec)
        _check_references(spec)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return spec


def _check_registries(spec: PipelineSpec) -> None:
    from vapipe.features.backbones import BACKBONE_KINDS, backbone_options
    from vapipe.fusion.base import FUSION_METHODS, fusion_options
    from vapipe.training.system import known_models, system_class

    for name, backbone in spec.backbones.items():
        if backbone.kind == IMPORTED_KIND:
            if backbone.options:
                raise ConfigError(f"backbones.{name} (kind hdf5) takes no setting '{next(iter(backbone.options))}'")
            continue
        if backbone.kind not in BACKBONE_KINDS:
            known = ", ".join(sorted([*BACKBONE_KINDS, IMPORTED_KIND]))
            raise ConfigError(f"backbones.{name}.kind '{backbone.kind}' is unknown; known: {known}")
        if backbone.weights and not Path(backbone.weights).exists():
            raise ConfigError(f"backbones.{name}.weights '{backbone.weights}' does not exist")
        backbone_options(name, backbone.to_dict())  # a setting the kind does not take names its key
    for name, system in spec.systems.items():
        try:
            kind = system_class(system.model)
        except ValueError:
            raise ConfigError(
                f"systems.{name}.model '{system.model}' is unknown; known: {', '.join(known_models())}"
            ) from None
        accepted = kind.accepted_params(system.model)
        if accepted is not None:
            check_keys(f"systems.{name}.params", system.params, accepted)
    for name, fusion in spec.fusions.items():
        if fusion.method not in FUSION_METHODS:
            raise ConfigError(
                f"fusions.{name}.method '{fusion.method}' is unknown; known: {', '.join(sorted(FUSION_METHODS))}"
            )
        check_keys(f"fusions.{name}", fusion.options, fusion_options(fusion.method))


def _check_references(spec: PipelineSpec) -> None:
    dataset = spec.dataset
    root = Path(dataset.root)
    if not dataset.demo and not root.is_dir():
        raise ConfigError(f"dataset.root '{root}' does not exist; point it at your Aff-Wild2 folder")
    if dataset.demo:
        from dataclasses import fields

        from vapipe.data.demo import DemoSpec

        check_keys("dataset.demo", dataset.demo, {f.name for f in fields(DemoSpec)})
    folds = spec.fold_names()
    listable = spec.folds.all_names()
    for name, system in spec.systems.items():
        for feature in system.features:
            if feature not in spec.backbones:
                raise ConfigError(f"systems.{name}.features names unknown backbone '{feature}'")
        for fold in system.folds or []:
            if fold not in listable:
                raise ConfigError(f"systems.{name}.folds names '{fold}', but the folds are {', '.join(listable)}")
    for table, table_spec in spec.tables.items():
        for system in table_spec.systems:
            if system not in spec.systems:
                raise ConfigError(f"tables.{table}.systems names '{system}', which is not under systems")
    for system in spec.report.systems:
        if system not in spec.systems:
            raise ConfigError(f"report.systems names '{system}', which is not under systems")
    for run in spec.report.missing_audio:
        system, _, fold = run.partition("/")
        if system not in spec.systems or fold not in spec.system_folds(system, folds):
            raise ConfigError(f"report.missing_audio names '{run}': no such system, or it does not train that fold")
    for name, fusion in spec.fusions.items():
        if name in spec.systems:
            raise ConfigError(f"fusions.{name}: a system has the same name")
        for system in fusion.systems:
            if system not in spec.systems:
                raise ConfigError(f"fusions.{name}.systems names '{system}', which is not under systems")
            trained = spec.system_folds(system, folds)
            missing = [f for f in fusion.folds if f not in trained]
            if missing:
                raise ConfigError(
                    f"fusions.{name}.folds names '{missing[0]}', which system '{system}' "
                    f"does not train (it trains {', '.join(trained)})"
                )
        if OFFICIAL in fusion.folds and len(fusion.folds) > 1:
            raise ConfigError(f"fusions.{name}.folds: fit on [official] or on K folds, not both")
    submission = spec.submission
    if submission.system in spec.fusions:
        if submission.fold_selection != "average":
            raise ConfigError(
                f"submission.fold_selection applies to a system's folds, not to fusion '{submission.system}'"
            )
        return
    if submission.system not in spec.systems:
        raise ConfigError(f"submission.system '{submission.system}' is neither under systems nor under fusions")
    known_folds = spec.system_folds(submission.system, folds)
    for fold in submission.folds:
        if fold not in known_folds:
            raise ConfigError(f"submission.folds names '{fold}', but the folds are {', '.join(sorted(known_folds))}")


def fold_names(config: dict) -> list[str]:
    """Folds the config trains: 'official' (if enabled) and k0 .. k{K-1}."""
    return build(FoldsSpec, config.get("folds"), "folds").names()


def wildcard_pattern(names) -> str:
    """Regex matching exactly the given names (for Snakemake wildcard_constraints)."""
    return "|".join(re.escape(n) for n in sorted(names))
