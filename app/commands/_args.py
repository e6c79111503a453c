"""Checks of command-line values shared by the sub-commands (not a command module itself).

Every check runs before any work is done or anything is written, and refuses a bad value with
a message that names the option and the value (a ``click.BadParameter``: exit status 2)."""

from __future__ import annotations

import click

MAX_ORBITS = 400_000  # catalogs.orbits.MAX_ORBITS: more than the whole record
ORBITS_HELP = "expected '20000:20010' (inclusive), '20000:21000:10' or '5,6,7'"


def record_range() -> tuple[int, int]:
    """First and last orbit of the synthetic record (1998-2060)."""
    from catalogs.simulator.geometry import ORBIT_RANGE

    return int(ORBIT_RANGE[0]), int(ORBIT_RANGE[1])


def parse_orbits(spec: str, param: str = "--orbits", *, strict: bool = True) -> list[int]:
    """Orbit numbers of ``'a:b'`` (inclusive), ``'a:b:step'`` or ``'5,6,7'`` (mixed with commas).

    Refuses (naming the bad part) what is not a number, an inverted range, a step < 1, a range
    reaching outside the synthetic record and an empty list; ranges are checked at their ends,
    before any list is made, so an absurd range costs nothing. Single orbits outside the record
    are refused too unless ``strict`` is False (a batch then reports each as a failed orbit)."""
    lo, hi = record_range()
    out: list[int] = []
    parts = [p.strip() for p in str(spec).split(",")]
    if not any(parts):
        raise click.BadParameter(f"{spec!r} names no orbit: {ORBITS_HELP}", param_hint=param)
    for part in parts:
        if not part:
            continue
        bits = part.split(":")
        try:
            nums = [int(b) for b in bits]
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an orbit number or range: {ORBITS_HELP}",
                                     param_hint=param) from None
        if len(nums) > 3:
            raise click.BadParameter(f"{part!r}: {ORBITS_HELP}", param_hint=param)
        a, b = nums[0], nums[1] if len(nums) > 1 else nums[0]
        step = nums[2] if len(nums) > 2 else 1
        if b < a:
            raise click.BadParameter(f"{part!r} ends before it starts (did you mean {b}:{a}?)", param_hint=param)
        if step < 1:
            raise click.BadParameter(f"{part!r}: the step must be at least 1, got {step}", param_hint=param)
        for o in (a, b):
            if not lo <= o <= hi and (strict or len(nums) > 1):
                raise click.BadParameter(f"orbit {o} (in {part!r}) is outside the synthetic record: orbits "
                                         f"{lo}..{hi} (1998-2060)", param_hint=param)
        if len(out) + (b - a) // step + 1 > MAX_ORBITS:
            raise click.BadParameter(f"{spec!r} asks for more than {MAX_ORBITS} orbits", param_hint=param)
        out += range(a, b + 1, step)
    return out


def parse_years(spec: str, param: str = "--years") -> tuple[int, int]:
    """``'1998-2060'`` or ``'2016'`` → (first, last), inside the synthetic record's years."""
    from evaluation.cube import DEMO

    first, last = (int(y) for y in DEMO["years"])
    bits = [b.strip() for b in str(spec).split("-")]
    try:
        if len(bits) not in (1, 2):
            raise ValueError
        ys = [int(b) for b in bits]
    except ValueError:
        raise click.BadParameter(f"{spec!r}: expected 'YYYY-YYYY' or 'YYYY'", param_hint=param) from None
    y0, y1 = ys[0], ys[-1]
    if y1 < y0:
        raise click.BadParameter(f"{spec!r} ends before it starts (did you mean {y1}-{y0}?)", param_hint=param)
    if y0 < first or y1 > last:
        raise click.BadParameter(f"{spec!r} is outside the synthetic record ({first}-{last})", param_hint=param)
    return y0, y1


def check_sources(sources: list[str], param: str = "--sources") -> list[str]:
    """truth, reference and registered model names; anything else is refused before a build."""
    from evaluation import cube as CB
    from models.base import ModelError
    from models.registry import get_card

    if not sources:
        raise click.BadParameter("no source given: use truth, reference and/or model names", param_hint=param)
    for s in sources:
        base = s[: -len(CB.STRIP)] if s.endswith(CB.STRIP) else s
        if base in CB.BUILTIN:
            continue
        try:
            get_card(base)
        except ModelError as e:
            raise click.BadParameter(f"{s!r} is neither truth, reference nor a usable model: {e}",
                                     param_hint=param) from None
    return sources
