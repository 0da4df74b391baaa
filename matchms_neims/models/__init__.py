"""Neural network modules (``nn.Module`` only; saving and loading live in :mod:`matchms_neims.checkpoint`).

Every model class derives from :class:`~matchms_neims.models.capabilities.SpectrumModel` and declares there what
it supports (uncertainty, expert weights, graphs, export).
"""

from __future__ import annotations

from importlib import import_module

from matchms_neims.models.capabilities import SpectrumModel
from matchms_neims.models.heads import BidirectionalHead
from matchms_neims.models.neims import NeimsMLP
from matchms_neims.models.student import StudentMoE

#: Model classes a model file may name, by class name. Classes in :data:`LAZY_MODEL_MODULES` join on first use.
MODEL_CLASSES = {"NeimsMLP": NeimsMLP, "StudentMoE": StudentMoE}
#: Classes imported only when a model file needs them (torch_geometric adds about a second to start-up).
LAZY_MODEL_MODULES = {"TeacherGNN": "matchms_neims.models.teacher", "TeacherEnsemble": "matchms_neims.models.ensemble",
                      "SpectrumEnsemble": "matchms_neims.models.ensemble"}


def get_model_class(name: str) -> type:
    """The model class called ``name``.

    Raises
    ------
    KeyError
        When no model class of that name is known.
    """
    if name not in MODEL_CLASSES and name in LAZY_MODEL_MODULES:
        MODEL_CLASSES[name] = getattr(import_module(LAZY_MODEL_MODULES[name]), name)
    if name not in MODEL_CLASSES:
        raise KeyError(f"unknown model class {name!r}; known: {sorted(set(MODEL_CLASSES) | set(LAZY_MODEL_MODULES))}")
    return MODEL_CLASSES[name]


__all__ = ["BidirectionalHead", "LAZY_MODEL_MODULES", "MODEL_CLASSES", "NeimsMLP", "SpectrumModel", "StudentMoE",
           "get_model_class"]
