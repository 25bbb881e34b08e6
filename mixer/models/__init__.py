"""MixER models: expert banks (stacked over K), the top-1 mixture layer and batched rollouts."""

from mixer.models.base import ACTIVATIONS, Expert
from mixer.models.coda import CoDAExpert
from mixer.models.geps import GEPSExpert
from mixer.models.moe import GATE_MODES, MixtureOfExperts, expert_context_dim
from mixer.models.ncf import NCFExpert
from mixer.models.plrnn import PLRNNExpert
from mixer.models.registry import BACKBONES, backbone_class, build_mixture
from mixer.models.rollout import VectorField, rollout, uniform_steps

__all__ = [
    "ACTIVATIONS",
    "BACKBONES",
    "GATE_MODES",
    "CoDAExpert",
    "Expert",
    "GEPSExpert",
    "MixtureOfExperts",
    "NCFExpert",
    "PLRNNExpert",
    "VectorField",
    "backbone_class",
    "build_mixture",
    "expert_context_dim",
    "rollout",
    "uniform_steps",
]
