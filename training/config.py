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
    # "random" (by InChIKey block 1), "scaffold" (Bemis-Murcko) or "contributor" (test: molecules that the main
    # contributing lab never measured; see matchms_neims_training.data.splits.assign_splits)
    split_method: str = "random"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 42
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    batch_size: int = 64
    # "random": shuffled batches; "mass": each training batch holds molecules of similar nominal mass (within
    # about batch_mass_jitter Da), so the in-batch retrieval loss (optim.retrieval_weight) meets hard negatives
    # (one process; DDP runs get Lightning's DistributedSampler, random batches)
    batch_grouping: str = "random"
    batch_mass_jitter: float = 5.0
    # molecules without spectra whose predictions serve as negatives of optim.decoy_weight's loss
    # (matchms_neims_training.data.decoys; molecules of the spectra file, any split, are left out); "" for none
    decoy_molecules: str = ""
    num_workers: int = 0
    # keep each molecule's fingerprint in RAM after its first use (uint8, ~4-6 kB per molecule and per worker);
    # false: featurise on every read, for datasets whose fingerprints do not fit (matchms-neims benchmark-memory)
    memoize_features: bool = True


@dataclass
class FeaturizerConfig:
    kind: str = "neims_count_ecfp"
    n_bits: int = 4096
    radius: int = 2
    n_count_bits: int = 2048
    formula: bool = False  # append the formula count vector (models with a formula head: model.head formula/mixed)


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
    scheduler: str = "warmup_cosine"  # or "cosine_restarts" (per epoch) or "onecycle" (OneCycleLR, per step)
    restart_period: int = 10  # cosine_restarts: T_0 (epochs)
    restart_mult: int = 2  # cosine_restarts: T_mult
    min_lr: float = 1.0e-6  # cosine_restarts: eta_min
    max_lr: float = 1.0e-3  # onecycle: peak learning rate (lr is only AdamW's nominal value there)
    pct_start: float = 0.1  # onecycle: fraction of the steps spent warming up
    monitor: str = "val_cosine"  # checkpoint selection and early stopping: val_cosine or val_recall_at_10
    retrieval_weight: float = 0.0  # baseline: weight of the in-batch library-search loss (in_batch_retrieval_loss)
    retrieval_temperature: float = 0.05  # its softmax temperature
    # baseline: weight of the margin loss against predicted decoys
    # (matchms_neims_training.distillation.losses.decoy_margin_loss), which are drawn from data.decoy_molecules within
    # decoy_mass_window Da of decoys_per_batch random molecules of a batch
    decoy_weight: float = 0.0
    decoy_margin: float = 0.05
    decoys_per_batch: int = 32
    decoy_mass_window: float = 10.0
    # > 0: draw each spectrum's decoy among its decoy_hard_k hardest (matchms_neims_training.data.decoys.DecoyBank.mine:
    # the highest weighted cosine of the model's predictions), mined again every decoy_mining_epochs epochs; 0: by mass
    # alone
    decoy_hard_k: int = 0
    decoy_mining_epochs: int = 2


@dataclass
class MaskingConfig:
    """Self-supervised bond masking: the bond features of a fraction of bonds are hidden and predicted."""

    lambda_bond: float = 0.0  # fine-tuning: weight of the bond-masking loss added to the spectrum loss
    fraction: float = 0.15  # fraction of bonds masked per molecule
    length_weight: float = 1.0  # weight of the bond-length loss where conformers give lengths


@dataclass
class AugmentConfig:
    """Training-time augmentation of the spectra (see ``training/augment.py``)."""

    c13_fraction: float = 0.0  # fraction of training samples given 1..c13_max_carbons 13C labels
    c13_max_carbons: int = 2
    lds_sigma: float = 0.0  # Gaussian label distribution smoothing of targets (m/z units; 0: off)


@dataclass
class PretrainingConfig:
    """Molecules for self-supervised pretraining (``matchms-neims train teacher-pretrain``)."""

    molecules: list = field(default_factory=lambda: ["../shared/data/nist17_molecules.smi"])  # .smi/.csv/.sdf
    include_training_split: bool = True  # add the training split molecules of data.spectra
    exclude_held_out: bool = True  # skip molecules of the validation and test splits
    val_fraction: float = 0.02  # molecules held out to report masked-bond accuracy
    conformers: int = 0  # RDKit conformers per molecule (3-5) to add bond-length targets; 0: off
    max_molecules: int = 0  # use only the first N molecules of the list (0: all)


@dataclass
class DistillConfig:
    """Knowledge distillation from a teacher (``matchms-neims train student``, and ``train baseline``).

    The student's loss is ``alpha * hard + beta * soft + gamma * feature`` (+ the routing terms); the baseline
    MLP's is ``alpha * hard + beta * soft`` (``distill.soft_loss: mse``, no feature loss). ``teacher: ''`` (the
    default, or ``beta = gamma = 0``) trains on the experimental spectra alone.
    """

    teacher: str = ""  # teacher model file; its soft labels are cached next to data.cache
    soft_labels: str = ""  # HDF5 file of teacher soft labels ('' : <data.cache stem>.teacher-<sha12>.h5)
    mc_samples: int = 30  # MC-dropout samples of the teacher per molecule
    alpha: float = 0.3  # hard loss (experimental spectra)
    beta: float = 0.5  # soft loss (teacher MC mean, LDS-smoothed, confidence-weighted)
    gamma: float = 0.2  # feature loss (projected student hidden vs teacher ecfp_embedding)
    # soft loss form: 'kl' (generalised KL of the tempered spectra, every m/z alike) or 'mse' (the hard loss's
    # mass-weighted sqrt MSE against the tempered teacher mean)
    soft_loss: str = "kl"
    temperature_start: float = 4.0
    temperature_end: float = 1.0
    temperature_schedule: str = "cosine"  # cosine, linear or exponential
    uncertainty_weighting: bool = True  # per-bin weights 1 / (1 + teacher std) in the soft loss
    soft_lds_sigma: float = 1.5  # Gaussian LDS of the teacher means (m/z; 0: off)
    weight_warmup_epochs: int = 15  # alpha/beta/gamma fixed for these epochs, then GradNorm (if on)
    gradnorm: bool = True
    gradnorm_alpha: float = 1.5  # GradNorm's restoring-force exponent
    gradnorm_lr: float = 0.01  # step of the loss-weight update per training step
    weight_ratio_bounds: tuple[float, float] = (0.5, 2.0)  # GradNorm weights stay within these ratios of the start
    balance_weight: float = 0.01  # Switch-style load-balancing loss
    entropy_weight: float = 0.001  # routing entropy regularisation (minimised: confident per-molecule routing)
    # balance of the experts' mean mixing weights (matchms_neims_training.distillation.losses.weight_balance_loss): the
    # gate bias balances which experts are chosen, not how much each counts once chosen (0: off, as for the bundled
    # student)
    weight_balance_weight: float = 0.0
    gate_init_steps: int = 300  # steps fitting the gate to the aromatic/aliphatic/heterocyclic/general groups
    usage_bounds: tuple[float, float] = (0.10, 0.50)  # expert usage outside these fractions is reported as collapse
    # transfer set: molecule files (.smi/.csv/.sdf) without spectra, labelled by the teacher and trained on with the
    # soft and feature losses only; molecules of the spectra cache (any split) are left out
    transfer_molecules: list = field(default_factory=list)
    max_transfer_molecules: int = 0  # use only the first N new molecules of the files (0: all)
    transfer_mc_samples: int = 10  # MC-dropout samples of the teacher per transfer molecule


@dataclass
class TrainerConfig:
    """Passed to ``lightning.Trainer``: one CPU here, GPUs/nodes with DDP elsewhere."""

    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"  # "auto": bf16 mixed precision on a GPU, 32-bit on a CPU
    seed: int = 42
    output_dir: str = "runs/baseline"
    torch_threads: int = 0  # 0: torch default

    def resolved_precision(self) -> str:
        """``precision``, with ``"auto"`` resolved to bf16 mixed precision on CUDA and 32-bit elsewhere."""
        if self.precision != "auto":
            return self.precision
        import torch

        on_gpu = self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        return "bf16-mixed" if on_gpu else "32-true"


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
    # model file(s) whose matching weights initialise the model, in order (e.g. a baseline and a pretrained encoder)
    init_from: str | list = ""
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pretraining: PretrainingConfig = field(default_factory=PretrainingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    # provenance of a refit on all data (set by matchms_neims_training.running.refit.refit_config; empty for a selection
    # run)
    refit: dict = field(default_factory=dict)

    def init_sources(self) -> list[str]:
        """``init_from`` as a list of files ('' and [] give none)."""
        sources = [self.init_from] if isinstance(self.init_from, str) else list(self.init_from)
        return [str(source) for source in sources if source]

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

    def with_overrides(self, assignments: list[str]) -> TrainConfig:
        """A copy with ``section.key=value`` assignments applied (values parsed as YAML), e.g. ``optim.lr=3e-4``."""
        values = self.to_dict()
        for assignment in assignments:
            name, sep, text = assignment.partition("=")
            if not sep or not name:
                raise ValueError(f"override {assignment!r} is not of the form section.key=value")
            *parents, leaf = name.strip().split(".")
            target = values
            for part in parents:
                if not isinstance(target.get(part), dict):
                    raise ValueError(f"override {assignment!r}: {part!r} is not a config section")
                target = target[part]
            value = yaml.safe_load(text)
            if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
                try:
                    value = float(value)
                except ValueError:
                    pass
            target[leaf] = value
        return TrainConfig.from_dict(values)

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
        elif isinstance(default, list):
            kwargs[name] = list(value) if isinstance(value, (list, tuple)) else [value]
        else:
            kwargs[name] = value
    return cls(**kwargs)
