"""Neural network modules (``nn.Module`` only; saving and loading live in :mod:`matchms_neims.checkpoint`)."""

from __future__ import annotations

from importlib import import_module

from matchms_neims.models.heads import BidirectionalHead
from matchms_neims.models.neims import NeimsMLP
from matchms_neims.models.student import StudentMoE

#: Model classes a model file may name, by class name. Classes in :data:`LAZY_MODEL_MODULES` join on first use.
MODEL_CLASSES = {"NeimsMLP": NeimsMLP, "StudentMoE": StudentMoE}
#: Classes imported only when a model file needs them (torch_geometric adds about a second to start-up).
LAZY_MODEL_MODULES = {"TeacherGNN": "matchms_neims.models.teacher", "TeacherEnsemble": "matchms_neims.models.ensemble"}


def is_mixture_of_experts(model) -> bool:
    """Whether ``model`` is a mixture of experts whose ``forward_with_details`` gives ``expert_weights``."""
    return hasattr(model, "forward_with_details") and hasattr(model, "n_experts")


def deterministic_outputs(model, *inputs) -> tuple:
    """A forward pass of ``model`` on ``inputs``: ``(spectrum, expert_weights)`` for a mixture of experts,
    else ``(spectrum,)``."""
    if is_mixture_of_experts(model):
        output = model.forward_with_details(*inputs)
        return output.spectrum, output.expert_weights
    return (model(*inputs),)


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


__all__ = ["BidirectionalHead", "LAZY_MODEL_MODULES", "MODEL_CLASSES", "NeimsMLP", "StudentMoE",
           "deterministic_outputs", "get_model_class", "is_mixture_of_experts"]
