"""Benchmark section ``models``: the networks' speed on whatever backend JAX sees, with references.

    python -m experiments.bench --only models            # the full check (under 6 minutes on one GPU)
    python -m experiments.bench --only models --quick    # ISTA-Net and DISTA-Net only, smaller sizes

Rows, in order:

* ``environment``: device kind and count, jax / jaxlib / CUDA plugin / torch versions, the date: quote
  the other rows with it.
* Per network of :data:`csist_jax.models.UNFOLDING_NAMES` (ISTA-Net and DISTA-Net with ``--quick``): the
  training step (``train.make_train_step``, batch 64, Adam), inference (``train.make_apply``) at batch 64
  and at a large batch (4,096 on a GPU/TPU; 512 on a CPU, 128 with ``--quick``), bfloat16 inference at
  the large batch (variables' floating leaves and images cast to ``bfloat16``; the ratio is bfloat16 over
  float32, the note gives the largest difference to the float32 maps), compile times.
* ISTA-Net and DISTA-Net against a plain PyTorch version of the same network (written here: same layers,
  batch-64 step with Adam, ``torch.no_grad`` inference) on the same device in the same process: CUDA when
  ``torch.cuda.is_available()``, else the CPU with 2 threads. ``ratio`` = PyTorch time / ours.
* ``batched vs per-sample loop (before)``: the networks as they run now against ``batch_exact=True``
  (the per-sample ``lax.map`` loop every network ran before), train step and batch-64 inference;
  ``ratio`` = loop time / batched time (within 5% below 1 is reported as even). Every network on a CPU
  (ISTA-Net only with ``--quick``), ISTA-Net and DISTA-Net on an accelerator. Skipped when the installed
  networks have no such field.
* ``refine.localize`` on real CSIST-100K frames at a large batch (4,096 on a GPU/TPU, 1,024 on a CPU)
  and, on an accelerator, at batch 64 (the continuous localiser should gain from the batch as the
  networks do).
* DeRefNet on windows of 5 frames (not with ``--quick``): a training step (Adam on ``derefnet_loss``,
  64 windows on an accelerator, 32 on a CPU), inference (1,024 windows on an accelerator, 32 on a CPU),
  and the share of each taken by the alignment path alone (features conv, selective attention, two
  deformable convs, to_map on the neighbour maps; forward and backward for the training step).
* On a CPU only: the published toolkit's own PyTorch timings (quoted constants, :data:`TOOLKIT`), and
  without ``--quick`` the tuned compiler options against XLA's defaults and the 3x3 convolution
  primitives against PyTorch.

Times are medians of 30 calls after two untimed ones on an accelerator (10 with ``--quick``; 3 on a CPU,
2 with ``--quick``), each call waited on (``jax.block_until_ready``, ``torch.cuda.synchronize``). Functions
compared side by side in JAX are called alternately (a, b, a, b, ...), so a shared CPU's changing load
reaches both alike. The ``target`` column states what the README claims; ``[met]`` / ``[NOT met]`` at the
start of the note says whether this run meets it. On an accelerator an optional row (the loop
comparison, the batch-64 localiser, DeRefNet) runs only if the section is then expected to end within
:data:`ACCELERATOR_LIMIT_S` seconds (estimated from the compile times measured so far); otherwise a row
says it was skipped. Progress lines go to stderr.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax import models, physics, train
from csist_jax.train import config as train_config
from experiments.benchmarks.common import Row, best_time

SECTION = "models"
#: quoted constants, not measured here: (seconds per batch-64 training step, inference frames/s) of the
#: published toolkit's own PyTorch code on this project's 2-core CPU (torch 2.13, 2 threads)
TOOLKIT = {"dista_net": (2.3, 100.0), "ista_net": (0.78, 290.0)}
#: the networks with a plain PyTorch version below
TORCH_NETWORKS = ("ista_net", "dista_net")
#: on an accelerator, an optional row runs only if the section is expected to end within this (seconds)
ACCELERATOR_LIMIT_S = 330.0
#: a guess at DeRefNet's compile and run time on an accelerator (seconds), for that check: its training
#: step, inference and alignment-path rows (not measured on an accelerator yet)
DEREFNET_ESTIMATE_S = 120.0
#: the README's accelerator claims: ours / PyTorch ratios and DISTA-Net's large-batch frames/s
TARGET_TRAIN, TARGET_INFER, TARGET_INFER_LARGE = 2.0, 2.5, 3.0
TARGET_DISTA_FPS, TARGET_DISTA_FPS_BF16 = 60_000.0, 100_000.0
#: batched against the per-sample loop: a ratio this close below 1 is reported as even (timing noise)
LOOP_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class _Plan:
    accelerator: bool
    batch: int  # training batch and the small inference batch
    large: int  # the large inference batch
    repeats: int  # timed calls per measurement (median)
    loop_repeats: int  # timed calls for the per-sample loop (before) rows
    warmup: int  # untimed calls after the first (compiling) one
    localize_batch: int
    networks: tuple
    loop_networks: tuple  # the networks with before/after rows
    torch_large: bool  # PyTorch inference at the large batch too
    compare_options: bool  # CPU: tuned against XLA-default compiler options
    derefnet_batch: int  # DeRefNet windows per inference call (0: no DeRefNet rows)


def _plan(quick: bool) -> _Plan:
    if jax.default_backend() != "cpu":
        return _Plan(
            accelerator=True,
            batch=64,
            large=4096,
            repeats=10 if quick else 30,
            loop_repeats=5 if quick else 10,
            warmup=2,
            localize_batch=4096,
            networks=TORCH_NETWORKS if quick else models.UNFOLDING_NAMES,
            loop_networks=TORCH_NETWORKS,
            torch_large=True,
            compare_options=False,
            derefnet_batch=0 if quick else 1024,
        )
    networks = TORCH_NETWORKS if quick else models.UNFOLDING_NAMES
    return _Plan(
        accelerator=False,
        batch=64,
        large=128 if quick else 512,
        repeats=2 if quick else 3,
        loop_repeats=2 if quick else 3,
        warmup=0,
        localize_batch=256 if quick else 1024,
        networks=networks,
        loop_networks=("ista_net",) if quick else networks,
        torch_large=not quick,
        compare_options=not quick,
        derefnet_batch=0 if quick else 32,
    )


def _inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, 11, 11)).astype(np.float32)
    xy = rng.uniform(2, 8, (batch, 5, 2))
    bright = rng.uniform(220, 250, (batch, 5, 1))
    return images, np.concatenate([xy, bright], -1).astype(np.float32)


def _timed(fns: list[Callable[[], object]], repeats: int, warmup: int = 0) -> list[tuple[float, float]]:
    """``(first call seconds, median seconds of `repeats` further calls)`` for each of ``fns``.

    Every call is blocked on. The first call includes the compilation; ``warmup`` more untimed calls
    follow it. The timed calls of several functions alternate (a, b, a, b, ...), so that a change in the
    machine's load (a shared CPU) reaches all of them alike and their ratio stays meaningful."""
    firsts = []
    for fn in fns:
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        firsts.append(time.perf_counter() - t0)
    for fn in fns:
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            spent.append(time.perf_counter() - t0)
    return [(first, float(np.median(spent))) for first, spent in zip(firsts, times)]


def _verdict(value: float, minimum: float, tolerance: float = 0.0) -> str:
    """``[met]`` when ``value >= minimum``; ``[even]`` when within ``tolerance`` (relative) below it."""
    if value >= minimum:
        return "[met] "
    if value >= minimum * (1.0 - tolerance):
        return f"[even, within {100 * tolerance:.0f}%] "
    return "[NOT met] "


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch():
    """``(torch, device)`` with device ``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``; None without."""
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available():
        return torch, "cuda"
    torch.set_num_threads(2)
    return torch, "cpu"


def _environment_row(plan: _Plan) -> Row:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    parts = [f"jax {jax.__version__}", f"jaxlib {_version('jaxlib')}"]
    for plugin in ("jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu"):
        if _version(plugin):
            parts.append(f"{plugin} {_version(plugin)}")
    ref = _torch()
    if ref is None:
        parts.append("torch not installed (pip install torch for the PyTorch rows)")
    else:
        torch, where = ref
        cuda = f" (CUDA {torch.version.cuda}, {torch.cuda.get_device_name()})" if where == "cuda" else ""
        parts.append(f"torch {torch.__version__} on {where}{cuda}")
    if not plan.accelerator:
        parts.append(f"{os.cpu_count()} CPU cores, 1-min load average {os.getloadavg()[0]:.1f} at the start")
    parts.append(datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    name = f"environment: {jax.default_backend()} {kind}"
    return Row(SECTION, name[:52], jax.device_count(), "devices", note=", ".join(parts))


def _variables(module, images):
    return jax.jit(module.init)(jax.random.PRNGKey(0), images[:1])


def _train_fn(
    module, variables, images, targets, compiler_options=None, *, frame=None, config=None
) -> Callable[[], jax.Array]:
    """One call = one ``train.make_train_step`` update (Adam, batch on the device); returns the loss.

    A multi-frame network takes windows ``images``, their centre indices ``frame`` and its ``config``."""
    config = train.default_config() if config is None else config
    optimizer = train_config.optimizer(config) if config.optim.weight_decay else optax.adam(1e-4)
    mesh = train.make_mesh()
    state = train.init_state(variables, optimizer)
    # distinct buffers: the state is donated, and initialisers may return one array twice
    state = jax.device_put(jax.tree.map(jnp.copy, state), NamedSharding(mesh, P()))
    sharded = NamedSharding(mesh, P("data"))
    inputs = [images, targets] + ([] if frame is None else [frame])
    inputs = [jax.device_put(x, sharded) for x in inputs]
    step = train.make_train_step(module, optimizer, config, mesh, compiler_options)
    holder = {"state": state}

    def one_step():
        holder["state"], measured = step(holder["state"], *inputs)
        return measured["loss"]

    return one_step


def _apply_fn(module, variables, images, compiler_options=None) -> Callable[[], jax.Array]:
    """One call = ``train.make_apply(module)(variables, images)`` with the images on the device."""
    mesh = train.make_mesh()
    apply = train.make_apply(module, mesh, compiler_options)
    images = jax.device_put(images, NamedSharding(mesh, P("data")))
    return lambda: apply(variables, images)


def _bfloat16(tree):
    return jax.tree.map(
        lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _measure(name: str, plan: _Plan) -> dict:
    """Train step, inference at both batches and bfloat16 inference of ``name`` as it runs now; the
    train-step and batch-64 callables are kept for the side-by-side rows."""
    module = models.create(name)
    images, targets = _inputs(plan.batch)
    large_images, _ = _inputs(plan.large, 1)
    variables = _variables(module, images)
    out = {"variables": variables, "images": images, "targets": targets}
    out["train_fn"] = _train_fn(module, variables, images, targets)
    out["infer_fn"] = _apply_fn(module, variables, images)
    large = _apply_fn(module, variables, large_images)
    (first, out["step"]), (infer_first, out["infer"]), (_, out["large"]) = _timed(
        [out["train_fn"], out["infer_fn"], large], plan.repeats, plan.warmup
    )
    out["compile"], out["infer_compile"] = max(first - out["step"], 0.0), max(infer_first - out["infer"], 0.0)
    out["large_bf16"] = None
    try:
        large16 = _apply_fn(module, _bfloat16(variables), _bfloat16(large_images))
        ((_, seconds),) = _timed([large16], plan.repeats, plan.warmup)
        maps16 = large16()
    except Exception as err:  # noqa: BLE001 - the row reports the failure instead of ending the run
        out["bf16_note"] = f"bfloat16 failed: {type(err).__name__}: {str(err).splitlines()[0][:80]}"
        return out
    out["large_bf16"] = seconds
    maps = np.asarray(large(), np.float32)
    error = np.max(np.abs(np.asarray(maps16.astype(jnp.float32)) - maps)) / max(np.max(np.abs(maps)), 1e-12)
    if maps16.dtype == jnp.bfloat16:
        out["bf16_note"] = f"computes in bfloat16; max |bf16 - f32| = {100 * error:.2g}% of the f32 map max"
    else:
        out["bf16_note"] = f"output {maps16.dtype}: this version does not compute in the input's dtype"
    return out


def _network_rows(name: str, plan: _Plan, m: dict) -> list[Row]:
    b, big = plan.batch, plan.large
    n = plan.repeats
    toolkit = None if plan.accelerator else TOOLKIT.get(name)
    dista = plan.accelerator and name == "dista_net"
    step_note = f"{m['step'] * 1e3:.2f} ms/step, median of {n}"
    infer_note = f"median of {n}"
    if toolkit:
        step_note += f"; toolkit (quoted) {toolkit[0]} s/step"
        infer_note += f"; toolkit (quoted) {toolkit[1]:.0f} frames/s"
    fps, fps_large = b / m["infer"], big / m["large"]
    large_note = f"{fps_large / fps:.1f}x the frames/s of batch {b}"
    if dista:
        large_note = _verdict(fps_large, TARGET_DISTA_FPS) + large_note
    rows = [
        Row(
            SECTION,
            f"{name} train step (batch {b})",
            1.0 / m["step"],
            "steps/s",
            ratio=toolkit[0] / m["step"] if toolkit else None,
            target=">= 1.5x toolkit" if toolkit else "",
            note=step_note,
        ),
        Row(
            SECTION,
            f"{name} inference (batch {b})",
            fps,
            "frames/s",
            ratio=fps / toolkit[1] if toolkit else None,
            target=">= 1.5x toolkit" if toolkit else "",
            note=infer_note,
        ),
        Row(
            SECTION,
            f"{name} inference (batch {big})",
            fps_large,
            "frames/s",
            target=f">= {TARGET_DISTA_FPS:,.0f} fr/s" if dista else "",
            note=large_note,
        ),
    ]
    if m["large_bf16"] is None:
        rows.append(
            Row(SECTION, f"{name} inference bfloat16 (batch {big})", float("nan"), "", note=m["bf16_note"])
        )
    else:
        fps16 = big / m["large_bf16"]
        note = "ratio = bfloat16 / float32; " + m["bf16_note"]
        if dista:
            note = _verdict(fps16, TARGET_DISTA_FPS_BF16) + note
        rows.append(
            Row(
                SECTION,
                f"{name} inference bfloat16 (batch {big})",
                fps16,
                "frames/s",
                ratio=m["large"] / m["large_bf16"],
                target=f">= {TARGET_DISTA_FPS_BF16:,.0f} fr/s" if dista else "",
                note=note,
            )
        )
    rows.append(
        Row(
            SECTION,
            f"{name} compile (train step / inference)",
            m["compile"],
            "s",
            note=f"inference {m['infer_compile']:.1f} s (batch {b})",
        )
    )
    return rows


def _torch_reference(name: str, plan: _Plan, ref) -> dict:
    """Median seconds of a plain PyTorch ``name`` on ``ref = (torch, device)``: ``{"step": s, "infer":
    {batch: s}}``, the batch-64 Adam step of the training loss and ``no_grad`` inference."""
    torch, device = ref
    nn, F = torch.nn, torch.nn.functional
    phi = torch.from_numpy(np.array(physics.sampling_matrix(3))).to(device)
    hr = 33

    def xavier(*shape):
        return nn.Parameter(nn.init.xavier_normal_(torch.empty(*shape)))

    class IstaStage(nn.Module):
        def __init__(self, ch=32):
            super().__init__()
            self.step, self.thr = nn.Parameter(torch.tensor(0.5)), nn.Parameter(torch.tensor(0.01))
            self.f1, self.f2 = xavier(ch, 1, 3, 3), xavier(ch, ch, 3, 3)
            self.b1, self.b2 = xavier(ch, ch, 3, 3), xavier(1, ch, 3, 3)

        def back(self, u):
            return F.conv2d(F.relu(F.conv2d(u, self.b1, padding=1)), self.b2, padding=1)

        def forward(self, x, z):
            r = (x - self.step * ((x @ phi.T - z) @ phi)).view(-1, 1, hr, hr)
            f = F.conv2d(F.relu(F.conv2d(r, self.f1, padding=1)), self.f2, padding=1)
            u = torch.sign(f) * F.relu(f.abs() - self.thr)
            return self.back(u).view(-1, hr * hr), self.back(f) - r

    class Lsk(nn.Module):
        def __init__(self, ch=64):
            super().__init__()
            self.dw = nn.Conv2d(ch, ch, 3, padding=1, groups=ch)
            self.s0, self.s1 = nn.Conv2d(ch, ch // 2, 1), nn.Conv2d(ch, ch // 2, 1)
            self.sel, self.ex = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(ch // 2, ch, 1)

        def forward(self, x):
            a1, a2 = self.s0(x), self.s1(self.dw(x))
            both = torch.cat([a1, a2], 1)
            m = torch.sigmoid(self.sel(torch.cat([both.mean(1, True), both.amax(1, True)], 1)))
            return x * self.ex(a1 * m[:, :1] + a2 * m[:, 1:])

    class DistaStage(nn.Module):
        def __init__(self, ch=64):
            super().__init__()
            self.step = nn.Parameter(torch.tensor(0.5))
            self.f1, self.f2 = xavier(ch, 1, 3, 3), xavier(ch, ch, 3, 3)
            self.b1, self.b2 = xavier(ch, ch, 3, 3), xavier(1, ch, 3, 3)
            self.w1, self.w2, self.lsk = nn.Linear(hr * hr, 256), nn.Linear(256, 9), Lsk(ch)

        def back(self, u):
            return F.conv2d(F.relu(F.conv2d(u, self.b1, padding=1)), self.b2, padding=1)

        def forward(self, x, z):
            n = x.shape[0]
            r = (x - self.step * ((x @ phi.T - z) @ phi)).view(-1, 1, hr, hr)
            main = F.conv2d(F.relu(F.conv2d(r, self.f1, padding=1)), self.f2, padding=1)
            k = self.w2(self.w1(x)).view(n, 1, 3, 3)  # one kernel per sample, as a grouped conv
            dyn = torch.sigmoid(F.conv2d(r.view(1, n, hr, hr), k, padding=1, groups=n)).view(n, 1, hr, hr)
            xf = 0.7 * main + 0.3 * dyn
            u = torch.sign(xf) * F.relu(xf.abs() - self.lsk(xf))
            return self.back(u).view(-1, hr * hr), self.back(xf) - r

    stage, count = (IstaStage, 9) if name == "ista_net" else (DistaStage, 6)
    net = nn.ModuleList([stage() for _ in range(count)]).to(device)
    q = torch.linalg.pinv(phi)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def frames(batch: int, seed: int):
        return torch.from_numpy(_inputs(batch, seed)[0].reshape(batch, -1)).to(device)

    z = frames(plan.batch, 0)
    label = torch.zeros(plan.batch, hr * hr, device=device)

    def forward(z):
        x, syms = z @ q.T, []
        for s in net:
            x, sym = s(x, z)
            syms.append(sym)
        return x, syms

    def train_step():
        opt.zero_grad()
        x, syms = forward(z)
        loss = F.mse_loss(x, label) + 0.01 * sum(s.pow(2).mean() for s in syms)
        loss.backward()
        opt.step()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        for _ in range(3 if device == "cuda" else 1):
            fn()
        times = []
        for _ in range(plan.repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    out = {"step": timed(train_step), "infer": {}}
    batches = (plan.batch, plan.large) if plan.torch_large else (plan.batch,)
    with torch.no_grad():
        for i, batch in enumerate(batches):
            zb = z if batch == plan.batch else frames(batch, i)
            out["infer"][batch] = timed(lambda zb=zb: forward(zb))
    return out


def _torch_rows(name: str, plan: _Plan, m: dict, ref) -> list[Row]:
    if ref is None:
        note = "torch not installed: side-by-side PyTorch run skipped (pip install torch to run it)"
        return [Row(SECTION, f"{name} plain PyTorch side by side", float("nan"), "", note=note)]
    t = _torch_reference(name, plan, ref)
    where = f"PyTorch on {ref[1]}, median of {plan.repeats}"
    accel = plan.accelerator

    def row(label, value, unit, ratio, minimum, note):
        target = f">= {minimum:g}x" if accel else ""
        prefix = _verdict(ratio, minimum) if accel else ""
        return Row(SECTION, f"{name} {label}", value, unit, ratio=ratio, target=target, note=prefix + note)

    rows = [
        row(
            f"train step vs plain PyTorch (batch {plan.batch})",
            1.0 / m["step"],
            "steps/s",
            t["step"] / m["step"],
            TARGET_TRAIN,
            f"{where}: {t['step'] * 1e3:.2f} ms/step",
        )
    ]
    for batch, seconds, minimum in (
        (plan.batch, m["infer"], TARGET_INFER),
        (plan.large, m["large"], TARGET_INFER_LARGE),
    ):
        if batch not in t["infer"]:
            continue
        rows.append(
            row(
                f"inference vs plain PyTorch (batch {batch})",
                batch / seconds,
                "frames/s",
                t["infer"][batch] / seconds,
                minimum,
                f"{where}: {batch / t['infer'][batch]:,.0f} frames/s",
            )
        )
    return rows


def _loop_rows(name: str, plan: _Plan, m: dict) -> list[Row]:
    """The network now against its per-sample loop (``batch_exact=True``, how every network ran before),
    timed alternately with the batched version."""
    cls = type(models.create(name))
    if "batch_exact" not in cls.__dataclass_fields__:
        note = "no batch_exact field in this version: before/after rows skipped"
        return [Row(SECTION, f"{name} batched vs per-sample loop (before)", float("nan"), "", note=note)]
    module = models.create(name, batch_exact=True)
    images, variables = m["images"], m["variables"]
    key = jax.random.PRNGKey(0)
    if jax.tree.structure(jax.eval_shape(module.init, key, images[:1])) != jax.tree.structure(variables):
        variables = _variables(module, images)
    loop_train = _train_fn(module, variables, images, m["targets"])
    loop_infer = _apply_fn(module, variables, images)
    (_, step), (_, loop_step) = _timed([m["train_fn"], loop_train], plan.loop_repeats, plan.warmup)
    # inference calls are short: three times the calls, for a steadier ratio
    infer_repeats = 3 * plan.loop_repeats
    (_, infer), (_, loop_infer_s) = _timed([m["infer_fn"], loop_infer], infer_repeats, plan.warmup)
    label = f"{name} batched vs per-sample loop (before)"
    return [
        Row(
            SECTION,
            f"{label}: train step",
            1.0 / step,
            "steps/s",
            ratio=loop_step / step,
            target=">= 1x",
            note=_verdict(loop_step / step, 1.0, LOOP_TOLERANCE)
            + f"loop {loop_step * 1e3:.1f} ms/step, batched {step * 1e3:.1f} ms/step "
            + f"(alternate calls, median of {plan.loop_repeats})",
        ),
        Row(
            SECTION,
            f"{label}: inference b{plan.batch}",
            plan.batch / infer,
            "frames/s",
            ratio=loop_infer_s / infer,
            target=">= 1x",
            note=_verdict(loop_infer_s / infer, 1.0, LOOP_TOLERANCE)
            + f"loop {plan.batch / loop_infer_s:,.0f} frames/s (alternate calls, median of {infer_repeats})",
        ),
    ]


def _options_rows(name: str, plan: _Plan, m: dict) -> list[Row]:
    """CPU: the tuned compiler options (what training and evaluation use) against XLA's defaults."""
    if not models.compiler_options():
        return []
    module = models.create(name)
    images, variables = m["images"], m["variables"]
    default_train = _train_fn(module, variables, images, m["targets"], compiler_options={})
    default_infer = _apply_fn(module, variables, images, compiler_options={})
    (_, step), (_, default_step), (_, infer), (_, default_infer_s) = _timed(
        [m["train_fn"], default_train, m["infer_fn"], default_infer], plan.repeats, plan.warmup
    )
    label = f"{name} tuned vs XLA-default options"
    return [
        Row(
            SECTION,
            f"{label}: train step",
            1.0 / step,
            "steps/s",
            ratio=default_step / step,
            note=f"XLA defaults {default_step:.3f} s/step (YNNPACK convolutions); alternate calls",
        ),
        Row(
            SECTION,
            f"{label}: inference b{plan.batch}",
            plan.batch / infer,
            "frames/s",
            ratio=default_infer_s / infer,
            note=f"XLA defaults {plan.batch / default_infer_s:.0f} frames/s; alternate calls",
        ),
    ]


def _localize_row(plan: _Plan, batch: int, repeats: int) -> tuple[Row, float, float]:
    """``refine.localize`` frames/s on real CSIST-100K frames (image only, every default)."""
    from csist_jax.data import csist100k
    from csist_jax.refine import localize

    data = csist100k.generate(seed=0, n=batch, start=2_000_000_000)
    images = jnp.asarray(data["image"], jnp.float32)
    warmup = min(plan.warmup, 1)
    ((first, seconds),) = _timed([lambda: localize(images)[0]], repeats, warmup)
    compile_s = max(first - seconds, 0.0)
    note = f"CSIST-100K frames; compile {compile_s:.1f} s; median of {repeats}"
    name = f"refine.localize, image only (batch {batch})"
    return Row(SECTION, name, batch / seconds, "frames/s", note=note), batch / seconds, compile_s


def _derefnet_alignment(params, centre, neighbours, channels: int):
    """DeRefNet's alignment path alone, as its ``__call__`` runs it (step 3 of the module docstring), with
    the network's ``params``: ``centre`` ``[n, hr, hr, 1]`` and ``neighbours`` ``[(T-1) n, hr, hr, 1]``
    (neighbour-major, as the network batches them) -> the aligned maps ``[(T-1) n, hr, hr, 1]``."""
    from flax import linen as nn

    from csist_jax.models.derefnet import DeformConv3, SelectiveAttention

    def conv(name, features, x):
        return nn.Conv(features, (3, 3), padding="SAME").apply({"params": params[name]}, x)

    copies = neighbours.shape[0] // centre.shape[0]
    f_centre = jnp.tile(jax.nn.relu(conv("features", channels, centre)), (copies, 1, 1, 1))
    f_neighbours = jax.nn.relu(conv("features", channels, neighbours))
    guide = SelectiveAttention(channels).apply({"params": params["attention"]}, f_centre, f_neighbours)
    aligned = DeformConv3(channels).apply({"params": params["align1"]}, f_neighbours, guide)
    aligned = DeformConv3(channels).apply({"params": params["align2"]}, aligned, aligned)
    return conv("to_map", 1, aligned)


def _derefnet_alignment_gap(module, variables, windows, centre_index) -> float:
    """Largest ``|_derefnet_alignment - the network's aligned maps|`` over the largest aligned value, on
    ``windows``: the network's own inputs to its alignment (those of its two ``features`` conv calls,
    centre then neighbours) are recorded inside one jitted call."""
    from flax import linen as nn

    def run(variables, windows, centre_index):
        seen = []

        def record(next_fun, args, kwargs, context):
            if context.module.name == "features" and context.method_name == "__call__":
                seen.append(args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            _, aux = module.apply(variables, windows, centre_index, return_aux=True)
        centre, neighbours = seen
        ours = _derefnet_alignment(variables["params"], centre, neighbours, module.channels)
        n, t = windows.shape[:2]
        ours = jnp.swapaxes(ours.reshape(t - 1, n, *aux["aligned"].shape[2:]), 0, 1)
        return jnp.max(jnp.abs(ours - aux["aligned"])) / jnp.max(jnp.abs(aux["aligned"]))

    return float(jax.jit(run)(variables, windows, centre_index))


def _derefnet_rows(plan: _Plan) -> list[Row]:
    """DeRefNet on windows of 5 frames (random 0..255 frames, centre indices 2..17, a one-target label):
    one step of the training route (``train.make_train_step`` with the published SeqCSIST recipe: Adam
    with weight decay 1e-5 on ``derefnet_loss``, objective ``"toolkit"``, state donated), inference, and
    the share of both taken by the alignment path alone (:func:`_derefnet_alignment` on random maps of
    the same shapes, with the network's parameters; forward and backward for the training step). The
    training batch is ``plan.derefnet_batch`` on a CPU and at most ``plan.batch`` (the published 64) on
    an accelerator."""
    n = plan.derefnet_batch
    b = min(n, plan.batch) if plan.accelerator else n
    repeats = plan.repeats if plan.accelerator else 2
    module = models.create("derefnet")
    hr, t, channels = module.hr, 5, module.channels
    rng = np.random.default_rng(0)
    windows = jnp.asarray(rng.uniform(0, 255, (n, t, 11, 11)), jnp.float32)
    centre = jnp.asarray(np.arange(n) % 16 + 2, jnp.int32)
    variables = jax.jit(module.init)(jax.random.PRNGKey(0), windows[:1], centre[:1])
    # as after training, the offset convs off their zero initialisation (offsets of a few hundredths to
    # 1.7 px on these inputs): the deformable convs sample between pixels and the path check sees them
    params = dict(variables["params"])
    for i, name in enumerate(("align1", "align2")):
        offset = dict(params[name]["offset"])
        offset["kernel"] = 1e-2 * jax.random.normal(jax.random.PRNGKey(i + 1), offset["kernel"].shape)
        params[name] = {**params[name], "offset": offset}
    constants = {k: v for k, v in variables.items() if k != "params"}
    variables = {**constants, "params": params}

    # the training route's step (train.make_train_step) with the published SeqCSIST recipe
    from experiments.configs.common import seqcsist_published

    config = train_config.resolve(seqcsist_published("derefnet"))
    targets = jnp.tile(jnp.asarray([[[5.0, 5.0, 230.0]]], jnp.float32), (b, 1, 1))
    train_step = _train_fn(module, variables, windows[:b], targets, frame=centre[:b], config=config)

    apply = models.jit(module.apply, inference_of=module)
    align_params = {k: params[k] for k in ("features", "attention", "align1", "align2", "to_map")}
    maps = jnp.asarray(rng.uniform(0, 255, (t * n, hr, hr, 1)), jnp.float32)
    maps_centre, maps_neighbours = maps[:n], maps[n:]
    train_maps = maps_centre[:b], maps_neighbours[: (t - 1) * b]
    align = models.jit(lambda p, c, nb: _derefnet_alignment(p, c, nb, channels), inference_of=module)

    @models.jit
    def align_backward(p, c, nb):
        aligned, pull = jax.vjp(lambda p, c, nb: _derefnet_alignment(p, c, nb, channels), p, c, nb)
        return pull(jnp.ones_like(aligned))

    (step_first, step_s), (first, infer_s), (_, align_s), (_, align_train_s) = _timed(
        [
            train_step,
            lambda: apply(variables, windows, centre),
            lambda: align(align_params, maps_centre, maps_neighbours),
            lambda: align_backward(align_params, *train_maps),
        ],
        repeats,
        plan.warmup,
    )
    gap = _derefnet_alignment_gap(module, variables, windows[:2], centre[:2])
    same = "the network's own path" if gap < 1e-5 else "NOT the network's path"

    def path(batch: int) -> str:
        return (
            f"features conv, selective attention, 2 deformable convs and to_map on the {t - 1} x {batch} "
            f"neighbour maps with the network's parameters ({same}: max difference {gap:.0e} of its "
            f"largest aligned value); median of {repeats}, alternate calls"
        )

    return [
        Row(
            SECTION,
            f"derefnet training (batch {b} windows)",
            b / step_s,
            "windows/s",
            note=f"{step_s * 1e3:.0f} ms/step, Adam on derefnet_loss (objective 'toolkit'); "
            f"compile {max(step_first - step_s, 0.0):.1f} s; median of {repeats}",
        ),
        Row(
            SECTION,
            f"derefnet inference (batch {n} windows)",
            n / infer_s,
            "windows/s",
            note=f"windows/s of 5 frames; compile {max(first - infer_s, 0.0):.1f} s; median of {repeats}",
        ),
        Row(
            SECTION,
            f"derefnet alignment share: inference (batch {n})",
            100.0 * align_s / infer_s,
            "%",
            note=f"alignment alone {align_s * 1e3:.0f} ms of {infer_s * 1e3:.0f} ms: " + path(n),
        ),
        Row(
            SECTION,
            f"derefnet alignment share: training (batch {b})",
            100.0 * align_train_s / step_s,
            "%",
            note=f"alignment forward + backward {align_train_s * 1e3:.0f} ms of the {step_s * 1e3:.0f} ms "
            "step: " + path(b),
        ),
    ]


def _jit_time(fn, args, repeats: int, options) -> float:
    compiled = jax.jit(fn, compiler_options=options or None)
    return best_time(lambda: compiled(*args), repeats)


def _torch_conv_times(x, w, dy, repeats: int) -> dict:
    """PyTorch's (oneDNN) seconds for the same convolution, or ``{}`` without torch."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(2)
    tx = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    tw = torch.from_numpy(np.asarray(w)).permute(3, 2, 0, 1).contiguous()
    tdy = torch.from_numpy(np.asarray(dy)).permute(0, 3, 1, 2).contiguous()
    grad = torch.nn.grad
    with torch.no_grad():
        return {
            "forward": best_time(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), repeats),
            "input gradient": best_time(lambda: grad.conv2d_input(tx.shape, tw, tdy, padding=1), repeats),
            "weight gradient": best_time(lambda: grad.conv2d_weight(tx, tw.shape, tdy, padding=1), repeats),
        }


def _conv_rows(channels: int, repeats: int) -> list[Row]:
    """CPU: the networks' main cost, one 3x3 'same' convolution at batch 64 on 33x33 maps: forward, input
    gradient and weight gradient with tuned and default XLA options, and PyTorch's when importable."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 33, 33, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, channels, channels)) * 0.05, jnp.float32)
    dy = jnp.asarray(rng.normal(size=(64, 33, 33, channels)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)

    def input_gradient(w, dy):
        return jax.vjp(lambda x_: conv(x_, w), x)[1](dy)

    def weight_gradient(x, dy):
        return jax.vjp(lambda w_: conv(x, w_), w)[1](dy)

    parts = {"forward": (conv, (x, w)), "input gradient": (input_gradient, (w, dy))}
    parts["weight gradient"] = (weight_gradient, (x, dy))
    reference = _torch_conv_times(x, w, dy, repeats)
    tuned = models.compiler_options()
    rows = []
    for part, (fn, args) in parts.items():
        ours = _jit_time(fn, args, repeats, tuned)
        default = _jit_time(fn, args, repeats, {})
        note = f"XLA defaults {default * 1e3:.1f} ms"
        if part in reference:
            note += f"; PyTorch {reference[part] * 1e3:.1f} ms"
        name = f"conv3x3 {channels}->{channels} batch 64: {part}"
        rows.append(Row(SECTION, name, ours * 1e3, "ms", ratio=default / ours, note=note))
    return rows


def _skipped(name: str, elapsed: float, estimate: float) -> Row:
    note = (
        f"skipped: the section had run {elapsed:.0f} s and this row needs about {estimate:.0f} s more "
        f"(limit {ACCELERATOR_LIMIT_S:.0f} s)"
    )
    return Row(SECTION, name, float("nan"), "", note=note)


def run(quick: bool) -> list[Row]:
    plan = _plan(quick)
    start = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - start

    def progress(what: str) -> None:
        print(f"[models] {what} ({elapsed():.0f} s)", file=sys.stderr, flush=True)

    def fits(estimate: float) -> bool:
        return not plan.accelerator or elapsed() + estimate < ACCELERATOR_LIMIT_S

    rows = [_environment_row(plan)]
    ref = _torch()
    deferred = []
    for name in plan.networks:
        m = _measure(name, plan)
        rows += _network_rows(name, plan, m)
        if name in TORCH_NETWORKS:
            rows += _torch_rows(name, plan, m, ref)
        if plan.compare_options:
            rows += _options_rows(name, plan, m)
        if name in plan.loop_networks:
            if plan.accelerator:  # optional there: measured after the required rows, if time allows
                deferred.append((name, m))
            else:  # on a CPU right away, alternating with the batched calls
                rows += _loop_rows(name, plan, m)
        progress(f"{name} done")
    localize_repeats = min(plan.repeats, 10) if plan.accelerator else 2
    large_row, large_fps, localize_compile = _localize_row(plan, plan.localize_batch, localize_repeats)
    rows.append(large_row)
    progress("localize done")
    for name, m in deferred:
        # the loop versions compile about as long as the batched ones did
        estimate = 1.5 * (m["compile"] + m["infer_compile"]) + 5.0
        if fits(estimate):
            rows += _loop_rows(name, plan, m)
        else:
            rows.append(_skipped(f"{name} batched vs per-sample loop (before)", elapsed(), estimate))
        progress(f"{name} per-sample loop done")
    if plan.accelerator and not quick:
        estimate = localize_compile + 5.0
        if fits(estimate):
            small_row, small_fps, _ = _localize_row(plan, plan.batch, localize_repeats)
            small_row.note = (
                f"batch {plan.localize_batch} runs {large_fps / small_fps:.1f}x these frames/s; "
                + (small_row.note)
            )
            rows.append(small_row)
        else:
            rows.append(_skipped(f"refine.localize, image only (batch {plan.batch})", elapsed(), estimate))
        progress("localize at batch 64 done")
    if plan.derefnet_batch:
        if fits(DEREFNET_ESTIMATE_S):
            rows += _derefnet_rows(plan)
        else:
            rows.append(
                _skipped("derefnet training, inference, alignment share", elapsed(), DEREFNET_ESTIMATE_S)
            )
        progress("derefnet done")
    if not plan.accelerator and not quick:
        rows += _conv_rows(32, 5) + _conv_rows(64, 5)
    return rows
