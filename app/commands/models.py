"""`raincheck train`, `raincheck infer` and `raincheck models list/show`."""

from __future__ import annotations

import sys
import threading

import click


class _Bar:
    """A tqdm bar driven by ``progress(done, total, message)`` callbacks."""

    def __init__(self, desc: str):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.desc = desc
        self.bar = None
        self.last_msg = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.bar is None or self.bar.total != total or done < self.bar.n:
            if self.bar is not None:
                self.bar.close()
            self.bar = self._tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)
        if message and message != self.last_msg:
            self.bar.set_postfix_str(message[:60])
            self.last_msg = message

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def register(main: click.Group) -> None:
    @main.command("train")
    @click.argument("configs", nargs=-1, required=True)
    @click.option("--out", type=click.Path(file_okay=False), default=None,
                  help="Folder for model.safetensors + card.yaml (default: <data root>/models/<name>); "
                       "with several CONFIGs, the parent folder (<out>/<name>).")
    def train_cmd(configs: tuple[str, ...], out: str | None) -> None:
        """Train the model(s) described by CONFIG (YAML paths or shipped config names).

        Several configs train in order in one process, on the same cached data (models named in
        a later config's ``compare_with`` are scored on the same held-out pixels)."""
        from pathlib import Path

        from models.base import ModelError
        from models.registry import load_config
        from models.train import train

        command = " ".join(["raincheck", "train", *configs] + (["--out", out] if out else []))
        for config in configs:
            bar = _Bar("train")
            try:
                cfg = load_config(config)
                dest = out if (out is None or len(configs) == 1) else str(Path(out) / cfg["name"])
                card = train(cfg, progress=bar, cancel=threading.Event(), out=dest, command=command)
            except ModelError as e:
                raise click.ClickException(str(e)) from None
            finally:
                bar.close()
            click.echo(f"trained {card.name} ({card.kind}) -> {card.path}  sha256 {card.checkpoint_sha256[:12]}")
            _echo_metrics(card)

    @main.command("infer")
    @click.option("--model", "model_name", required=True, help="Registered model name (see `raincheck models list`).")
    @click.option("--orbit", required=True, type=int, help="Orbit number.")
    @click.option("--world", "world_seed", default=0, show_default=True, type=int, help="Synthetic world seed.")
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
    def infer_cmd(model_name: str, orbit: int, world_seed: int, device: str) -> None:
        """Retrieve one orbit with a model and store the result (a cache hit if already done)."""
        from models.base import ModelError
        from models.inference import run_inference

        bar = _Bar(f"{model_name} orbit {orbit}")
        info: dict = {}
        try:
            path = run_inference(model_name, orbit, world_seed=world_seed, device=device, progress=bar, info=info)
        except (ModelError, ValueError) as e:
            raise click.ClickException(str(e)) from None
        finally:
            bar.close()
        if info.get("cache_hit"):
            click.echo(f"cache hit: {path}")
        else:
            click.echo(f"device: {info.get('device')}")
            click.echo(f"wrote {path} in {info.get('seconds', 0):.1f} s")

    @main.group("models")
    def models_grp() -> None:
        """Registered retrieval models and their cards."""

    @models_grp.command("list")
    def list_cmd() -> None:
        """List the available models."""
        from models.registry import list_models

        for c in list_models():
            click.echo(f"{c.name:20s} {c.kind:6s} sha256 {c.checkpoint_sha256[:12]}  {c.path}")

    @models_grp.command("show")
    @click.argument("name")
    def show_cmd(name: str) -> None:
        """Show a model card."""
        import yaml

        from models.base import ModelError
        from models.registry import _plain, get_card

        try:
            card = get_card(name)
        except ModelError as e:
            raise click.ClickException(str(e)) from None
        d = card.to_dict()
        d["config"] = {k: v for k, v in d["config"].items() if k != "data"} | {"data": "(see training)"}
        d["training"] = {k: v for k, v in d["training"].items() if k != "history"}
        click.echo(yaml.safe_dump(_plain(d), sort_keys=False, allow_unicode=True))


def _echo_metrics(card) -> None:
    for split, res in (card.metrics or {}).items():
        click.echo(f"{split}: {res.get('pixels')} strip pixels")
        for name, m in res.items():
            if isinstance(m, dict) and "mse" in m:
                click.echo(f"  {name:16s} bias {m['bias_pct']:+7.1f} %  MSE {m['mse']:.4f}  r {m['correlation']:.3f}  "
                           f"CRPS {m['crps']:.4f}  POD/FAR 0.1 {m['pod_0p1']:.2f}/{m['far_0p1']:.2f}  "
                           f"10 {m['pod_10']:.2f}/{m['far_10']:.2f}")
