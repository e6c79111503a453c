"""Flow-matching ensembles on a CPU window: 10 members on 256 x 256 pixels.

    python -m benchmarks.bench_flow [--model flow-residual] [--members 10] [--steps N] [--repeats 3]

Optimised path (:meth:`models.research.flow.FlowRetriever.sample`): the base U-Net once (BatchNorm
folded), the conditioning part of the flow's first convolution computed once and shared, all
members batched through each of the (<= 10) Euler steps. Baseline in the same run: the same model
sampled member by member (unbatched), recomputing the conditioning at every step -- the naive
loop. Both use the same noise, so the members agree (checked). Goal on 2 CPU cores: <= 10 s.
Without a shipped flow model (``--untrained``) the timing uses random weights of the shipped
config's architecture (the cost does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _window(size: int) -> torch.Tensor:
    from catalogs.simulator import simulate_orbit

    sw = simulate_orbit(30000, n_scans=size)
    tc = sw["Tc"].transpose("along_track", "cross_track", "pmw_frequency").values[:size, :min(size, 221)]
    x = np.full((size, size, 13), np.nan, np.float32)
    x[:, :tc.shape[1]] = tc
    x[:, tc.shape[1]:] = tc[:, -1:]  # pad 221 -> 256 columns by repeating the edge column
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def _untrained(config: str = "flow-residual"):
    from models.registry import ModelCard, load_config
    from models.research.flow import FlowRetriever, build_flow, member_levels
    from models.unet_retriever import build_unet

    cfg = load_config(config)
    base_cfg = load_config(cfg["base_model"])
    cfg["base_config"] = {k: base_cfg[k] for k in ("name", "kind", "channels", "quantile_levels", "network")}
    members = int(cfg["sampling"]["members"])
    torch.manual_seed(0)
    t = {f"base.{k}": v for k, v in build_unet(base_cfg).state_dict().items()}
    t.update({f"flow.{k}": v for k, v in build_flow(cfg).state_dict().items()})
    t["residual_scale"] = torch.tensor([1.0], dtype=torch.float64)
    card = ModelCard(name=cfg["name"] + "-untrained", kind="flow", config=cfg, checkpoint_sha256="",
                     levels=member_levels(members))
    return FlowRetriever(card, t)


@torch.inference_mode()
def naive_sample(r, tb: torch.Tensor, members: int, steps: int, seed: int) -> torch.Tensor:
    """Member by member, conditioning recomputed at every step (same noise as the batched path)."""
    from models.research.flow import base_conditioning, rain_from_residual

    g = torch.Generator().manual_seed(seed)
    b, _, h, w = tb.shape
    noise = torch.randn((b * members, 1, h, w), generator=g).view(b, members, 1, h, w)
    out = []
    for m in range(members):
        cond, mean = base_conditioning(r.base, r.base_levels, tb, None)
        x = noise[:, m]
        for k in range(steps):
            t = torch.full((b,), k / steps)
            x = x + (1.0 / steps) * r.flow(x, t, r.flow.cond_features(cond))
        out.append(rain_from_residual(x[:, 0], mean, r.scale))
    return torch.stack(out, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="flow-residual")
    p.add_argument("--untrained", action="store_true", help="random weights of the shipped config (timing only)")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.untrained:
        r = _untrained()
    else:
        from models.registry import load_model

        r = load_model(a.model)
    steps = a.steps or r.steps
    tb = _window(a.size)
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        fast = r.sample(tb, members=a.members, steps=steps, seed=0)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    slow = naive_sample(r, tb, a.members, steps, 0)
    t_naive = time.perf_counter() - t
    diff = float((fast - slow).abs().max())
    from models.inference import device_name

    print(f"model {r.name}: {a.members} members x {a.size}x{a.size} pixels, {steps} Euler steps, "
          f"{device_name(torch.device('cpu'))}")
    print(f"batched + shared conditioning: {min(times):.2f} s (best of {a.repeats}; all: "
          f"{', '.join(f'{x:.2f}' for x in times)})")
    print(f"naive member-by-member:        {t_naive:.2f} s")
    print(f"ratio naive / optimised: {t_naive / min(times):.1f}x; max |difference| {diff:.2e} mm/h; "
          f"goal <= 10 s: {'met' if min(times) <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
