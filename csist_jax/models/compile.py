"""XLA compiler options for the networks' jitted functions, and ``jit`` with them applied.

On XLA:CPU (jaxlib 0.10) convolutions are handed by default to the YNNPACK library, whose 3x3
convolutions here are 1.6-3.9x slower than XLA's own (Eigen) kernels, their weight gradients most of all
(64 -> 64 channels, batch 64, 33x33: weight gradient 136 ms vs 35 ms; forward 37.5 ms vs 21 ms).
Turning the YNNPACK fusions off makes a convolutional network's training step 1.9x faster on a CPU
(``python -m experiments.bench --only models`` runs both side by side). The option changes which
kernels run, not what is computed: results agree to float32 rounding.

For inference alone (no gradients), the 32-channel networks (ISTA-Net, ISTA-Net+) run faster with
YNNPACK's element-wise and reduction fusions on (it then fuses convolutions with their activations):
ISTA-Net about 550 vs 400 frames/s at batch 64; DISTA-Net and LISTA do not, and keep them off
(:data:`INFERENCE_FUSIONS`, measured by the same benchmark).

Use :func:`jit` (or pass :func:`compiler_options` to ``jax.jit``) for your own functions that run the
networks. Setting ``xla_cpu_experimental_ynn_fusion_type`` yourself in ``XLA_FLAGS`` takes precedence:
then no option is added.
"""

from __future__ import annotations

import functools
import os

import jax

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
#: the options used on a CPU backend: no YNNPACK fusions
CPU_OPTIONS = {_OPTION: ""}
#: network class name -> YNNPACK fusion types for its inference-only programs on a CPU
INFERENCE_FUSIONS = {
    "ISTANet": "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE",
    "ISTANetPlus": "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE",
}


@functools.cache
def _accepted(items: tuple) -> bool:
    """Whether this jaxlib compiles with ``items`` as options (an unknown option is an error)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(items)).lower(1.0).compile()
    except Exception:  # noqa: BLE001 - any failure means: don't use the option
        return False
    return True


def compiler_options(backend: str | None = None, *, inference_of=None) -> dict:
    """The compiler options for the networks on ``backend`` (default: JAX's default backend).

    ``inference_of``: a network (or its class name) when the program only runs it forward; its entry
    in :data:`INFERENCE_FUSIONS`, if any, is used. ``{}`` off a CPU, when ``XLA_FLAGS`` already sets
    the YNNPACK option, or when the installed jaxlib does not know it.
    """
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu" or _OPTION in os.environ.get("XLA_FLAGS", ""):
        return {}
    name = inference_of if isinstance(inference_of, str | None) else type(inference_of).__name__
    options = {_OPTION: INFERENCE_FUSIONS.get(name, CPU_OPTIONS[_OPTION])}
    return options if _accepted(tuple(options.items())) else {}


def jit(fun=None, *, inference_of=None, **kwargs):
    """``jax.jit`` with :func:`compiler_options` added (explicit ``compiler_options`` are merged over them).

    Works as ``jit(fn, ...)`` and as a decorator ``@jit`` / ``@jit(static_argnums=...)``;
    ``inference_of`` as in :func:`compiler_options`.
    """
    if fun is None:
        return functools.partial(jit, inference_of=inference_of, **kwargs)
    options = {**compiler_options(inference_of=inference_of), **(kwargs.pop("compiler_options", None) or {})}
    return jax.jit(fun, compiler_options=options or None, **kwargs)


__all__ = ["CPU_OPTIONS", "INFERENCE_FUSIONS", "compiler_options", "jit"]
