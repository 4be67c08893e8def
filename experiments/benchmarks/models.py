"""Benchmark section ``models``: train steps/s, inference frames/s and compile time per network.

The reference is the published toolkit's own PyTorch implementation on this 2-core CPU (torch 2.13,
2 threads), measured once and quoted here: DISTA-Net 2.3 s per batch-64 training step and about 100
inference frames/s, ISTA-Net 0.78 s per step and 290 frames/s. ``ratio`` = toolkit time / ours
(``> 1``: ours faster). When ``torch`` is importable, a plain PyTorch ISTA-Net and DISTA-Net written
here (same layers, batch-64 step with Adam) run side by side in the same process as a second reference.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax import models, train
from experiments.benchmarks.common import Row, best_time

SECTION = "models"
#: (seconds per batch-64 training step, inference frames/s) of the toolkit's PyTorch code on this CPU
TOOLKIT = {"dista_net": (2.3, 100.0), "ista_net": (0.78, 290.0)}


def _inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, 11, 11)).astype(np.float32)
    xy = rng.uniform(2, 8, (batch, 5, 2))
    bright = rng.uniform(220, 250, (batch, 5, 1))
    return images, np.concatenate([xy, bright], -1).astype(np.float32)


def _measure(name: str, batch: int, infer_batch: int, repeats: int, compiler_options=None) -> dict:
    """Train-step seconds, inference frames/s and compile times of ``name``.

    ``compiler_options``: ``None`` for the tuned options of :func:`csist_jax.models.compiler_options`
    (what training and evaluation use), ``{}`` for XLA's defaults.
    """
    module = models.create(name)
    images, targets = _inputs(batch)
    optimizer = optax.adam(1e-4)
    mesh = train.make_mesh()
    variables = jax.jit(module.init)(jax.random.PRNGKey(0), images[:1])
    state = train.init_state(variables, optimizer)
    state = jax.device_put(jax.tree.map(jnp.copy, state), NamedSharding(mesh, P()))
    step = train.make_train_step(module, optimizer, train.default_config(), mesh, compiler_options)
    t0 = time.perf_counter()
    state, measured = step(state, images, targets)
    jax.block_until_ready(measured["loss"])
    first = time.perf_counter() - t0
    holder = {"state": state}

    def one_step():
        holder["state"], m = step(holder["state"], images, targets)
        return m["loss"]

    step_time = best_time(one_step, repeats=repeats)
    apply = train.make_apply(module, mesh, compiler_options)
    infer_images, _ = _inputs(infer_batch, 1)
    t0 = time.perf_counter()
    jax.block_until_ready(apply(variables, infer_images))
    infer_first = time.perf_counter() - t0
    infer_time = best_time(lambda: apply(variables, infer_images), repeats=max(repeats, 5))
    return {
        "step_time": step_time,
        "compile": max(first - step_time, 0.0),
        "fps": infer_batch / infer_time,
        "infer_compile": max(infer_first - infer_time, 0.0),
    }


def _torch_reference(name: str, batch: int, repeats: int):
    """(step seconds, frames/s) of a plain PyTorch version of ``name``, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    nn, F = torch.nn, torch.nn.functional
    phi = torch.from_numpy(np.array(models.create(name).operator().matrix()))
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
    net = nn.ModuleList([stage() for _ in range(count)])
    q = torch.linalg.pinv(phi)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    images, _ = _inputs(batch)
    z = torch.from_numpy(images.reshape(batch, -1))
    label = torch.zeros(batch, hr * hr)

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

    def timed(fn):
        fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    step_time = timed(train_step)
    with torch.no_grad():
        infer = timed(lambda: forward(z))
    return step_time, batch / infer


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
    """The networks' main cost, one 3x3 'same' convolution at batch 64 on 33x33 maps: forward, input
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


def run(quick: bool) -> list[Row]:
    batch, infer_batch, repeats = (64, 64, 2) if quick else (64, 64, 3)
    names = ("ista_net", "dista_net") if quick else models.MODEL_NAMES
    tuned = models.compiler_options()
    rows = []
    for name in names:
        m = _measure(name, batch, infer_batch, repeats)
        ref = TOOLKIT.get(name)
        rows.append(
            Row(
                SECTION,
                f"{name} train step (batch {batch})",
                1.0 / m["step_time"],
                "steps/s",
                ratio=ref[0] / m["step_time"] if ref else None,
                target=">= 1.5x toolkit" if ref else "",
                note=f"{m['step_time']:.3f} s/step" + (f"; toolkit {ref[0]} s/step" if ref else ""),
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{name} inference (batch {infer_batch})",
                m["fps"],
                "frames/s",
                ratio=m["fps"] / ref[1] if ref else None,
                target=">= 1.5x toolkit" if ref else "",
                note=f"toolkit {ref[1]:.0f} frames/s" if ref else "",
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{name} compile (train step / inference)",
                m["compile"],
                "s",
                note=f"inference {m['infer_compile']:.1f} s",
            )
        )
        if tuned:
            d = _measure(name, batch, infer_batch, repeats, compiler_options={})
            rows.append(
                Row(
                    SECTION,
                    f"{name} tuned vs XLA-default options: train step",
                    1.0 / m["step_time"],
                    "steps/s",
                    ratio=d["step_time"] / m["step_time"],
                    note=f"XLA defaults {d['step_time']:.3f} s/step (YNNPACK convolutions)",
                )
            )
            rows.append(
                Row(
                    SECTION,
                    f"{name} tuned vs XLA-default options: inference",
                    m["fps"],
                    "frames/s",
                    ratio=m["fps"] / d["fps"],
                    note=f"XLA defaults {d['fps']:.0f} frames/s",
                )
            )
        if name in TOOLKIT:
            torch_ref = _torch_reference(name, batch, repeats)
            if torch_ref is None:
                note = "torch not installed: side-by-side PyTorch run skipped"
                rows.append(Row(SECTION, f"{name} plain PyTorch side by side", float("nan"), "", note=note))
            else:
                rows.append(
                    Row(
                        SECTION,
                        f"{name} train step vs plain PyTorch (this run)",
                        1.0 / m["step_time"],
                        "steps/s",
                        ratio=torch_ref[0] / m["step_time"],
                        note=f"PyTorch {torch_ref[0]:.3f} s/step",
                    )
                )
                rows.append(
                    Row(
                        SECTION,
                        f"{name} inference vs plain PyTorch (this run)",
                        m["fps"],
                        "frames/s",
                        ratio=m["fps"] / torch_ref[1],
                        note=f"PyTorch {torch_ref[1]:.0f} frames/s",
                    )
                )
    return rows + _conv_rows(32, max(repeats, 5)) + _conv_rows(64, max(repeats, 5))
