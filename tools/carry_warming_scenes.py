"""Carry forced-response scene summaries across a simulator version bump where the scene did not change.

The warming store (``evaluation.warming.run``) keys every scene summary by PRODUCT_VERSION, so a
bump invalidates all of them. sim-4 -> sim-5 changed one thing: the longitude patterns of
``catalogs.simulator.climate.climatology`` now wrap across the antimeridian. Everything else the
simulator does is pixel-local given the climatology (random streams, geometry, land mask) or local
within the ``_MARGIN_SCANS`` margin it computes around a segment (beam filling, parallax, anvils). So
a scene whose climatology, over its scans and margins, is bit-identical under the old and the new
code has bit-identical Tb, truth and reference at every warming level, and every model's summary of
it is unchanged. This script checks exactly that, scene by scene, against the old ``climate.py``
read from git, and copies the summaries of unchanged scenes into the new version's store (their
metadata say ``carried_from``). A rerun of ``raincheck warming run`` then computes only the changed
scenes. ``--verify N`` also simulates N unchanged scenes and one changed scene with both versions
(a git worktree of the old revision) and compares the swaths byte for byte.

    python tools/carry_warming_scenes.py --old-rev 268169b --from-version raincheck-sim-4 [--dry-run] [--verify 3]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalogs.simulator import N_SCANS, PRODUCT_VERSION, _MARGIN_SCANS, climate_at, geometry  # noqa: E402
from evaluation.warming import run as wrun  # noqa: E402

SCENE = re.compile(r"o(\d+)-s(\d+)-n(\d+)$")


def old_climate(rev: str) -> types.ModuleType:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:catalogs/simulator/climate.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("old_climate")
    exec(compile(src, f"{rev}:catalogs/simulator/climate.py", "exec"), mod.__dict__)
    return mod


def scene_unchanged(old: types.ModuleType, orbit: int, first: int, n: int) -> bool:
    """The climatology over the scans the simulator computes for this segment is bit-identical."""
    a, b = max(0, first - _MARGIN_SCANS), min(N_SCANS, first + n + _MARGIN_SCANS)
    geo = geometry.swath_geometry(orbit, b - a, first_scan=a)
    new_c = climate_at(geo)[3]
    old_c = climate_at(geo, old.climatology)[3]
    return set(new_c) == set(old_c) and all(np.array_equal(new_c[k], old_c[k]) for k in new_c)


def carry_scene(src: Path, dst: Path, from_version: str) -> int:
    """Copy one scene's summaries (every warming level, every source) with metadata updated."""
    n = 0
    for f in sorted(src.glob("w*/*.npz")):
        target = dst / f.parent.name / f.name
        if not wrun._usable(f) or wrun._usable(target):
            continue
        with np.load(f, allow_pickle=False) as z:
            summ = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
        marker = json.loads((f.parent / (f.name + ".raincheck-complete.json")).read_text())
        for m in (meta, marker):
            if "product_version" in m.get("identity", {}):
                m["identity"]["product_version"] = PRODUCT_VERSION
            m["carried_from"] = from_version
        target.parent.mkdir(parents=True, exist_ok=True)
        wrun._write_summary(target, summ, marker)
        n += 1
    return n


def _swath_bytes(tree: Path, orbit: int, first: int, n: int, warming: float, world: str) -> str:
    code = ("import hashlib, sys; sys.path.insert(0, {t!r}); from catalogs.simulator import simulate_orbit; "
            "ds = simulate_orbit({o}, 0, n_scans={n}, scan_start={s}, warming_K={w}, world={wd!r}); "
            "h = hashlib.sha256(); [h.update(ds[v].values.tobytes()) for v in ('Tc', 'surface_precip', "
            "'surface_precip_truth', 'water_vapour', 'surface_type')]; print(h.hexdigest())"
            ).format(t=str(tree), o=orbit, n=n, s=first, w=warming, wd=world)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree).stdout.strip()


def verify(rev: str, unchanged: list, changed: list, k: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), rev], check=True,
                       capture_output=True)
        try:
            for (o, s, n), expect in [(sc, True) for sc in unchanged[:k]] + [(sc, False) for sc in changed[:1]]:
                same = _swath_bytes(old_tree, o, s, n, 2.0, "published") == _swath_bytes(ROOT, o, s, n, 2.0, "published")
                print(f"verify o{o}-s{s}-n{n} at +2 K (published): swaths {'identical' if same else 'differ'}"
                      f" (expected {'identical' if expect else 'a difference'})")
                if same != expect:
                    raise SystemExit("the climatology check disagrees with the simulator: do not carry")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-rev", required=True, help="git revision holding the old catalogs/simulator/climate.py")
    ap.add_argument("--from-version", required=True, help="the old PRODUCT_VERSION, e.g. raincheck-sim-4")
    ap.add_argument("--root", default=None, help="warming store (default: <data root>/warming)")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--verify", type=int, default=0, metavar="N")
    a = ap.parse_args()
    if a.from_version == PRODUCT_VERSION:
        raise SystemExit(f"--from-version {a.from_version} is the current PRODUCT_VERSION")
    old = old_climate(a.old_rev)
    base = wrun.store_root(a.root) / "scenes"
    verdict: dict[tuple, bool] = {}
    for src_ws in sorted(base.glob(f"*/{a.from_version}/ws*")):
        carried = changed = files = 0
        for src in sorted(p for p in src_ws.iterdir() if SCENE.match(p.name)):
            key = tuple(int(x) for x in SCENE.match(src.name).groups())
            if key not in verdict:
                verdict[key] = scene_unchanged(old, *key)
            if not verdict[key]:
                changed += 1
                continue
            carried += 1
            if not a.dry_run:
                files += carry_scene(src, base / src_ws.parent.parent.name / PRODUCT_VERSION / src_ws.name / src.name,
                                     a.from_version)
        print(f"{src_ws.relative_to(base)}: {carried} scenes unchanged (carried {files} summaries), {changed} changed")
    if a.verify:
        verify(a.old_rev, [k for k, v in verdict.items() if v], [k for k, v in verdict.items() if not v], a.verify)


if __name__ == "__main__":
    main()
