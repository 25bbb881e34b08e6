"""MixER models: expert banks (stacked over K), the top-1 mixture layer, batched rollouts, and
the layers a learner is built from.

The names are loaded on first use (importing ``mixer.models`` alone does not import torch, so
the torch-free layers can read ``mixer.models.integrate.solvers``)::

    from mixer.models import Expert, StackedLayers, mlp_sizes, activation_fn, rollout
"""

from __future__ import annotations

from mixer.registry import lazy_exports

_EXPORTS = {
    "mixer.models.activations": ("ACTIVATIONS", "act_and_slope", "activation_fn"),
    "mixer.models.backbones": ("BACKBONES", "backbone_class", "build_mixture", "register_backbone"),
    "mixer.models.coda": ("CoDAExpert",),
    "mixer.models.expert": (
        "Expert",
        "Layer",
        "StackedLayers",
        "apply_layers",
        "as_generator",
        "fan_in_uniform",
        "mlp_sizes",
    ),
    "mixer.models.geps": ("GEPSExpert",),
    "mixer.models.integrate.rollout": ("VectorField", "rollout", "uniform_steps"),
    "mixer.models.integrate.solvers": ("SOLVERS",),
    "mixer.models.moe": ("GATE_MODES", "MixtureOfExperts", "expert_context_dim"),
    "mixer.models.ncf": ("NCFExpert",),
    "mixer.models.plrnn": ("PLRNNExpert",),
    "mixer.models.shared": ("shared_mlp_field",),
}
__all__, __getattr__, __dir__ = lazy_exports("mixer.models", globals(), _EXPORTS)
