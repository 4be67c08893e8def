"""The comparison zoo: the other methods of the published CSIST tables (SPEC sec. 10), in one interface.

Every model here is a :class:`csist_jax.models.layers.MapNetwork`: ``apply(variables, images[n, 11,
11])`` (raw 0..255) returns HR maps ``[n, 11c, 11c]``, so ``models.create``, ``train_and_evaluate``, the
checkpoints, metrics and table scripts treat them like the unfolding networks. The super-resolution
networks among them subclass :class:`csist_jax.models.layers.SuperResolutionNetwork` (TDAN declares the
same): they use neither ``Q`` nor the operator, so they hold no ``Q`` and training fits none. The class
defaults are the sizes the toolkit's configs train (the published tables); each model file's ``SMALL``
gives the sizes the tests and the CPU tables use, and its ``PARAMS_C3`` our parameter count at the
published size.

The registry below maps a name of ``csist_jax.models.create`` to ``(module, class)`` in this package,
imported on first use (several of these modules are large). Adding a method: a module here with its
class, ``SMALL`` and ``PARAMS_C3``; a line in :data:`ZOO` (its entry in ``csist_jax.models.REGISTRY``
follows from it); its published parameter counts in :data:`PUBLISHED_PARAMS`;
the shared tests (``tests/models/test_baselines.py``) then cover it (docs/adding_a_method.md).
"""

from __future__ import annotations

import importlib

#: single-frame baselines: name -> (module of this package, class)
ZOO: dict[str, tuple[str, str]] = {
    # deep unfolding and learned sparse coding
    "fista_net": ("fista_net", "FISTANet"),
    "ista_net_pp": ("ista_net_pp", "ISTANetPP"),
    "liht": ("lista_family", "LIHT"),
    "lamp": ("lista_family", "LAMP"),
    "tilista": ("lista_family", "TiLISTA"),
    "usrnet": ("usrnet", "USRNet"),
    "rpcanet": ("rpcanet", "RPCANet"),
    # super-resolution networks
    "srcnn": ("srcnn", "SRCNN"),
    "espcn": ("espcn", "ESPCN"),
    "edsr": ("edsr", "EDSR"),
    "rdn": ("rdn", "RDN"),
    "rcan": ("rcan", "RCAN"),
    "san": ("san", "SAN"),
    "han": ("han", "HAN"),
    "dbpn": ("dbpn", "DBPN"),
    "srfbn": ("srfbn", "SRFBN"),
    "gmfn": ("gmfn", "GMFN"),
    "cfgn": ("cfgn", "CFGN"),
    "ctnet": ("ctnet", "CTNet"),
    "actnet": ("actnet", "ACTNet"),
    "dctlsa": ("dctlsa", "DCTLSA"),
    "egasr": ("egasr", "EGASR"),
    "fenet": ("fenet", "FENet"),
    "srgan": ("gan_generators", "SRGANGenerator"),
    "esrgan": ("gan_generators", "ESRGANGenerator"),
    "bsrgan": ("gan_generators", "BSRGANGenerator"),
    # the one-stage speed reference
    "focus": ("focus", "FOCUS"),
}

#: multi-frame baselines (windows and centre indices in, like DeRefNet)
SEQUENCE_ZOO: dict[str, tuple[str, str]] = {"tdan": ("tdan", "TDAN")}

#: published parameter counts as printed, c = 3: (CSIST-100K, DISTA-Net Table 1; SeqCSIST, Table 7)
PUBLISHED_PARAMS: dict[str, tuple[str | None, str | None]] = {
    "fista_net": ("0.074M", "74.60K"),
    "ista_net_pp": (None, "0.76M"),
    "liht": ("21.10M", "21.10M"),
    "lamp": ("2.126M", "2.13M"),
    "tilista": ("2.126M", "2.22M"),
    "usrnet": (None, "1.07M"),
    "rpcanet": (None, "0.68M"),
    "srcnn": ("0.019M", "15.84K"),
    "espcn": (None, "54.75M (sic)"),
    "edsr": ("1.552M", "0.39M"),
    "rdn": ("22.306M", "22.31M"),
    "rcan": ("1.079M", None),
    "san": ("4.442M", None),
    "han": ("64.342M", None),
    "dbpn": (None, "1.96M"),
    "srfbn": ("0.373M", None),
    "gmfn": (None, "2.80M"),
    "cfgn": (None, None),
    "ctnet": ("0.400M", None),
    "actnet": ("46.212M", None),
    "dctlsa": ("0.865M", None),
    "egasr": ("2.897M", None),
    "fenet": ("0.348M", None),
    "srgan": (None, "35.31M"),
    "esrgan": (None, "50.45M"),
    "bsrgan": (None, "36.06M"),
    "focus": (None, None),
    "tdan": (None, "0.59M"),
}


def _module(name: str):
    entry = ZOO.get(name) or SEQUENCE_ZOO.get(name)
    if entry is None:
        raise ValueError(f"{name!r} is not a baseline; known: {sorted(ZOO) + sorted(SEQUENCE_ZOO)}")
    return importlib.import_module(f"{__name__}.{entry[0]}"), entry[1]


def get_class(name: str):
    """The module class of the baseline ``name`` (imports its module)."""
    module, cls = _module(name)
    return getattr(module, cls)


def small_config(name: str) -> dict:
    """The reduced sizes of ``name`` that the tests and the CPU tables use (its module's ``SMALL``)."""
    module, _ = _module(name)
    return dict(module.SMALL[name])


def params_c3(name: str) -> int:
    """Our parameter count of ``name`` at its published size, c = 3 (its module's ``PARAMS_C3``)."""
    module, _ = _module(name)
    return int(module.PARAMS_C3[name])


__all__ = ["PUBLISHED_PARAMS", "SEQUENCE_ZOO", "ZOO", "get_class", "params_c3", "small_config"]
