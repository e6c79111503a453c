"""`raincheck infer`, `raincheck models list/show` through the real CLI group."""

from __future__ import annotations

from click.testing import CliRunner

from app.cli import main
from tests.models.test_models_inference import register_random_unet


def test_infer_cli_then_cache_hit(data_root):
    register_random_unet()
    runner = CliRunner()
    r1 = runner.invoke(main, ["infer", "--model", "rand-unet", "--orbit", "5000", "--device", "cpu"])
    assert r1.exit_code == 0, r1.output
    assert "device: cpu" in r1.output and "orbit-005000.zarr" in r1.output
    r2 = runner.invoke(main, ["infer", "--model", "rand-unet", "--orbit", "5000"])
    assert r2.exit_code == 0 and "cache hit" in r2.output


def test_cli_errors_and_listing(data_root):
    register_random_unet()
    runner = CliRunner()
    r = runner.invoke(main, ["infer", "--model", "nope", "--orbit", "1"])
    assert r.exit_code != 0 and "unknown model 'nope'" in r.output
    r = runner.invoke(main, ["models", "list"])
    assert r.exit_code == 0 and "rand-unet" in r.output
    r = runner.invoke(main, ["models", "show", "rand-unet"])
    assert r.exit_code == 0 and "checkpoint_sha256" in r.output
    r = runner.invoke(main, ["train", "no-such-config"])
    assert r.exit_code != 0 and "not found" in r.output
