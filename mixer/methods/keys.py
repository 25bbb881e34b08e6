"""Hyper-parameter declarations that several learners share (JSON-schema fragments).

A learner class lists its keys in ``hyperparameters``: key -> {description, type, default,
...}. These fragments are merged into those mappings so a shared key is described once.
"""

from __future__ import annotations

from mixer.models.activations import ACTIVATIONS

MLP = {
    "width": {
        "description": "Hidden width of the MLPs (plrnn: the width of its ReLU layer).",
        "type": "integer",
        "minimum": 1,
        "default": 64,
    },
    "depth": {
        "description": "Hidden layers of the MLPs (ignored by plrnn, which is shallow).",
        "type": "integer",
        "minimum": 1,
        "default": 3,
    },
    "activation": {
        "description": "Activation of the MLPs (plrnn always uses ReLU).",
        "enum": list(ACTIVATIONS),
        "default": "silu",
    },
}

CONTEXT_DIM = {
    "context_dim": {
        "description": (
            "Size d_xi of each environment's context. With split_context each expert reads "
            "d_xi / K of it, so K must divide it."
        ),
        "type": "integer",
        "minimum": 1,
        "default": 6,
    },
}

CONTEXT = {
    **CONTEXT_DIM,
    "context_init": {
        "description": "'zeros' (the paper) or 'random' (N(0, 1e-2^2)).",
        "enum": ["zeros", "random"],
        "default": "zeros",
    },
}
