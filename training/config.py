"""Training configuration: nested dataclasses that round-trip through YAML files in ``training/configs/``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from matchms_neims.cleaning import CleaningConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    """Where the spectra come from and how they are cleaned, binned, split and cached."""

    spectra: str = "../shared/data/massbank_ei.msp"
    cache: str = "cache/massbank_ei.h5"
    max_mz: int = 500
    split_method: str = "random"  # "random" (by InChIKey block 1) or "scaffold" (Bemis-Murcko)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 42
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    batch_size: int = 64
    num_workers: int = 0


@dataclass
class FeaturizerConfig:
    kind: str = "neims_count_ecfp"
    n_bits: int = 4096
    radius: int = 2
    n_count_bits: int = 2048


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_epochs: int = 60
    warmup_epochs: int = 1
    gradient_clip: float = 1.0
    mass_power: float = 1.0  # loss weight of bin m/z: (mz / max_mz) ** mass_power
    early_stopping_patience: int = 12
    ema_decay: float = 0.0  # > 0: validate, checkpoint and export an exponential moving average of the weights


@dataclass
class TrainerConfig:
    """Passed to ``lightning.Trainer``: one CPU here, GPUs/nodes with DDP elsewhere."""

    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    seed: int = 42
    output_dir: str = "runs/baseline"
    torch_threads: int = 0  # 0: torch default


@dataclass
class ExportConfig:
    """Where the trained model is written as a matchms-neims model file."""

    path: str = "runs/baseline/model.pt"
    half_precision: bool = True
    name: str = "neims-baseline"
    version: str = "0.1.0"


@dataclass
class TrainConfig:
    model_class: str = "NeimsMLP"
    model: dict = field(default_factory=dict)
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    # ------------------------------------------------------------------ YAML
    def to_dict(self) -> dict:
        def convert(value):
            if isinstance(value, tuple):
                return list(value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            return value

        return convert(dataclasses.asdict(self))

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return _build(cls, values or {}, "config")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(yaml.safe_load(handle))


def _build(cls, values: dict, where: str):
    """Build a dataclass from a dict, rejecting unknown keys with a message that names them."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(known[name].default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
