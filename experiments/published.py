"""Every published number the experiments compare with, in one place and one key style.

Rows are keyed by the method's registry name (``csist_jax.models``; ``"ista"`` for analytic ISTA) and hold
the scores under the keys of :data:`AP_KEYS` (CSO-mAP and APs, x100 as printed), plus ``PSNR`` / ``SSIM``
or ``fps`` (frames/s on a GPU) where the source prints them. :func:`label` gives the name a table shows.
Sources: SPEC sec. 9-10 (the DISTA-Net paper's Table 1, the SeqCSIST paper's Table 7 and its noise rows,
the FOCUS paper's CSIST-100K re-runs). Methods the registry does not hold (HiT-SNG, BID, ...) are left out.
"""

from __future__ import annotations

#: the score keys of every row (CSO-mAP and the APs at 0.05..0.25 px)
AP_KEYS = ("mAP", "AP05", "AP10", "AP15", "AP20", "AP25")

#: the name a table shows for a method (every other method shows its registry name)
LABELS = {
    "ista": "ISTA",
    "fista": "FISTA",
    "lista": "LISTA",
    "ista_net": "ISTA-Net",
    "ista_net_plus": "ISTA-Net+",
    "dista_net": "DISTA-Net",
    "derefnet": "DeRefNet",
    "tdan": "TDAN",
}


def label(name: str) -> str:
    """The table label of method ``name`` (a registry name, or ``"ista"`` / ``"fista"``)."""
    return LABELS.get(name, name)


def _row(mAP, AP05, AP10, AP15, AP20, AP25, **extra) -> dict:
    return dict(mAP=mAP, AP05=AP05, AP10=AP10, AP15=AP15, AP20=AP20, AP25=AP25, **extra)


#: CSIST-100K, c = 3: the DISTA-Net paper's Table 1 (SPEC sec. 10.1), with USRNet, RPCANet and FOCUS
#: from the FOCUS paper's re-runs (sec. 10.3)
CSIST100K: dict[str, dict] = {
    "ista": _row(7.46, 0.01, 0.31, 2.39, 9.46, 25.14),
    "actnet": _row(45.61, 0.38, 7.46, 41.13, 83.12, 95.95, PSNR=36.8879, SSIM=0.9854),
    "ctnet": _row(45.11, 0.38, 7.53, 40.39, 82.11, 95.14, PSNR=35.6154, SSIM=0.9833),
    "dctlsa": _row(44.51, 0.39, 7.35, 39.35, 81.15, 94.34, PSNR=35.2259, SSIM=0.9832),
    "edsr": _row(45.32, 0.33, 7.07, 40.58, 83.24, 95.41, PSNR=36.4349, SSIM=0.9816),
    "egasr": _row(45.51, 0.42, 8.03, 41.32, 85.71, 95.08, PSNR=35.4549, SSIM=0.9745),
    "fenet": _row(45.77, 0.42, 8.19, 42.13, 83.30, 94.80, PSNR=36.4507, SSIM=0.9864),
    "rcan": _row(45.87, 0.42, 7.96, 41.81, 83.61, 95.57, PSNR=36.5860, SSIM=0.9831),
    "rdn": _row(45.81, 0.35, 7.11, 41.07, 84.07, 96.43, PSNR=36.1883, SSIM=0.9840),
    "san": _row(45.95, 0.36, 7.35, 41.17, 84.32, 96.57, PSNR=37.1805, SSIM=0.9848),
    "srcnn": _row(29.06, 0.23, 4.10, 21.65, 49.95, 69.39, PSNR=29.4140, SSIM=0.9566),
    "srfbn": _row(46.05, 0.43, 8.31, 42.83, 83.72, 94.95, PSNR=34.2945, SSIM=0.9815),
    "han": _row(45.70, 0.39, 7.46, 40.90, 83.61, 96.17, PSNR=36.6048, SSIM=0.9826),
    "ista_net": _row(45.16, 0.41, 7.71, 40.57, 82.58, 94.53, PSNR=35.6733, SSIM=0.9862),
    "ista_net_plus": _row(46.06, 0.42, 7.66, 41.58, 84.46, 96.17, PSNR=38.4998, SSIM=0.9887),
    "lamp": _row(14.22, 0.05, 1.11, 7.31, 21.56, 41.06, PSNR=27.8181, SSIM=0.9405),
    "liht": _row(10.35, 0.06, 0.92, 4.99, 14.74, 30.50, PSNR=27.5657, SSIM=0.9198),
    "lista": _row(30.13, 0.25, 4.13, 22.29, 51.18, 72.82, PSNR=30.1285, SSIM=0.9537),
    "fista_net": _row(44.66, 0.45, 7.68, 39.74, 81.24, 94.19, PSNR=38.4773, SSIM=0.9872),
    "tilista": _row(14.95, 0.06, 1.23, 7.72, 22.50, 46.23, PSNR=27.7790, SSIM=0.8895),
    "dista_net": _row(46.74, 0.38, 7.54, 42.44, 86.18, 97.14, PSNR=38.3825, SSIM=0.9887),
    "usrnet": _row(41.82, 0.30, 6.80, 35.70, 75.70, 90.50, fps=1084),
    "rpcanet": _row(45.47, 0.30, 6.60, 40.20, 83.80, 96.40, fps=1892),
    "focus": _row(45.50, 0.40, 7.30, 41.00, 83.20, 95.50, fps=122522),
}

#: SeqCSIST: the SeqCSIST paper's Table 7 (SPEC sec. 10.2; frames/s on a GPU, as printed)
SEQCSIST: dict[str, dict] = {
    "ista": _row(10.72, 0.14, 1.97, 8.74, 18.22, 24.53, fps=0.1),
    "ista_net": _row(48.95, 0.70, 11.20, 49.70, 87.70, 95.40, fps=4052),
    "ista_net_plus": _row(51.02, 1.00, 13.70, 52.70, 90.40, 93.70, fps=5504),
    "derefnet": _row(51.55, 1.00, 14.40, 54.90, 90.40, 97.10, fps=367),
    "srcnn": _row(49.64, 1.40, 16.30, 51.20, 85.00, 94.30, fps=102961),
    "gmfn": _row(50.94, 0.70, 11.90, 51.20, 92.10, 98.80, fps=855),
    "dbpn": _row(50.40, 0.80, 12.50, 51.20, 90.00, 97.40, fps=7109),
    "srgan": _row(26.96, 0.30, 3.90, 19.40, 46.90, 64.30, fps=12965),
    "bsrgan": _row(33.21, 0.40, 6.10, 27.50, 57.20, 74.90, fps=1528),
    "esrgan": _row(36.86, 0.40, 6.00, 30.30, 66.80, 80.70, fps=1024),
    "rdn": _row(49.61, 0.70, 10.60, 48.20, 90.40, 98.20, fps=919),
    "edsr": _row(50.19, 0.60, 10.30, 48.80, 92.20, 99.00, fps=11476),
    "espcn": _row(47.18, 1.60, 15.30, 46.60, 80.30, 92.00, fps=144901),
    "tdan": _row(47.96, 0.50, 8.60, 43.80, 89.30, 97.50, fps=259),
    "liht": _row(6.36, 0.10, 1.00, 4.30, 10.40, 16.00, fps=253),
    "lamp": _row(9.09, 0.10, 1.50, 6.50, 15.00, 22.30, fps=7172),
    "fista_net": _row(50.61, 1.00, 12.60, 51.40, 90.70, 97.30, fps=4052),
    "ista_net_pp": _row(50.50, 0.70, 10.40, 49.20, 92.8, 99.40, fps=1751),
    "lista": _row(9.39, 0.10, 1.70, 6.90, 15.40, 22.70, fps=490),
    "usrnet": _row(49.25, 0.70, 9.80, 46.60, 91.20, 98.90, fps=622),
    "tilista": _row(13.52, 0.20, 2.10, 9.50, 22.60, 33.30, fps=4716),
    "rpcanet": _row(47.17, 0.70, 10.20, 44.50, 84.60, 95.90, fps=2601),
}

#: SeqCSIST mAP under Gaussian read noise of std sigma > 0 (grey levels; SPEC sec. 9; how the paper drew
#: the noise is not stated); sigma 0 is the :data:`SEQCSIST` row
SEQCSIST_NOISE: dict[str, dict[float, float]] = {"derefnet": {2.0: 49.09, 5.0: 47.23}}

#: parameter counts of the library's own networks as printed: (CSIST-100K Table 1, SeqCSIST Table 7);
#: the baselines' are ``csist_jax.models.baselines.PUBLISHED_PARAMS``
PARAMS: dict[str, tuple[str | None, str | None]] = {
    "ista_net": ("0.171M", "0.17M"),
    "ista_net_plus": ("0.337M", "0.38M"),
    "dista_net": ("2.179M", None),
    "lista": ("21.10M", "21.10M"),
    "derefnet": (None, "0.89M"),
}


def csist100k_map(name: str) -> float | None:
    """The published CSIST-100K CSO-mAP of method ``name`` (None when not published)."""
    return CSIST100K.get(name, {}).get("mAP")


def seqcsist_noise(name: str) -> dict[float, float]:
    """``{sigma: mAP}`` published for method ``name`` on SeqCSIST (sigma 0 from Table 7; empty when the
    method has no published row)."""
    if name not in SEQCSIST:
        return {}
    return {0.0: SEQCSIST[name]["mAP"], **SEQCSIST_NOISE.get(name, {})}
