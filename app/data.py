"""The app's access to data: catalogue reads, shared across sessions, with clear error messages.

Nothing here computes science: it reads through :mod:`catalogs` (swaths, model outputs, the
orbit index) and :mod:`models` (registry, cards), memoises what is expensive to read (a
simulated orbit) for every session of the server, and turns every failure into
:class:`DataError`, whose message the UI shows as is.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """A selection the data cannot answer (the message is meant for the user)."""


class MissingModelOutput(DataError):
    """A model has no output for this orbit yet (press Run)."""


_EXPECTED = None


def _expected_errors() -> tuple[type[BaseException], ...]:
    global _EXPECTED
    if _EXPECTED is None:
        from catalogs.catalog import CatalogError
        from catalogs.config import PathOutsideRoots
        from catalogs.schema import SchemaError

        errs = [CatalogError, PathOutsideRoots, SchemaError, ValueError, LookupError, OSError]
        try:
            from catalogs.gpm import GranuleError

            errs.append(GranuleError)
        except Exception:  # pragma: no cover - gpm-api missing
            pass
        _EXPECTED = tuple(errs)
    return _EXPECTED


class Memo:
    """A small thread-safe LRU memo: one computation per key even with concurrent sessions."""

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()
        self._locks: dict = {}
        self._lock = threading.Lock()

    def get(self, key, fn):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            klock = self._locks.setdefault(key, threading.Lock())
        with klock:
            with self._lock:
                if key in self._data:
                    return self._data[key]
            value = fn()
            with self._lock:
                self._data[key] = value
                self._data.move_to_end(key)
                while len(self._data) > self.maxsize:
                    self._data.popitem(last=False)
                self._locks.pop(key, None)
            return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_catalogs = Memo(8)
_swaths = Memo(4)
_outputs = Memo(16)
_geoms = Memo(16)


def catalog(path: str | None = None):
    """The opened catalogue (default: the packaged demo)."""
    from catalogs.catalog import CatalogError, open_catalog

    key = str(Path(path).resolve()) if path else ""
    try:
        return _catalogs.get(key, lambda: open_catalog(path or None))
    except CatalogError as e:
        raise DataError(str(e)) from e


def catalog_label(path: str | None = None) -> str:
    from catalogs.catalog import DEMO_CATALOG

    return str(Path(path).resolve()) if path else str(DEMO_CATALOG)


def orbit_range() -> tuple[int, int]:
    from catalogs.simulator.geometry import ORBIT_RANGE

    return int(ORBIT_RANGE[0]), int(ORBIT_RANGE[1])


def load_swath(catalog_path: str | None, orbit: int | None = None, world: int = 0,
               granule: str | None = None, entry: str = "swath"):
    """One orbit's canonical swath: a synthetic orbit by number, or a real granule by path."""
    from catalogs.catalog import read

    cat = catalog(catalog_path)
    if granule:
        key = (catalog_label(catalog_path), "granule", str(granule))
        params = {"granule": str(granule)}
        entry = "granule"
    else:
        if orbit is None:
            raise DataError("choose an orbit number")
        key = (catalog_label(catalog_path), entry, int(orbit), int(world))
        params = {"orbit": int(orbit), "world": int(world)}
    try:
        ds = _swaths.get(key, lambda: read(cat, entry, **params).load())
    except DataError:
        raise
    except _expected_errors() as e:
        what = f"granule {granule}" if granule else f"orbit {orbit}"
        raise DataError(f"cannot read {what}: {e}") from e
    if "Tc" in ds and not np.isfinite(ds["Tc"].values).any():
        raise DataError(f"{'granule ' + str(granule) if granule else 'orbit ' + str(orbit)} holds no valid "
                        "brightness temperature (all fill values)")
    return ds


def checkpoint_of(model: str) -> str:
    """The checkpoint sha256 of the registered model ``model`` (its card's), or :class:`DataError`:
    outputs are found by exact identity (name and checkpoint), so a name that is not a registered
    model finds nothing (``unet`` never reads ``unet-reference``'s output)."""
    try:
        from models.registry import get_card
    except ImportError as e:
        raise DataError("the model registry is not available") from e
    from models.base import ModelError

    try:
        sha = get_card(model).checkpoint_sha256
    except (KeyError, ValueError, LookupError, ModelError) as e:
        raise DataError(f"model {model!r} is not a registered model: {e}") from e
    if not sha:
        raise DataError(f"model {model!r} has no checkpoint sha256 on its card")
    return str(sha)


def load_output(catalog_path: str | None, model: str, orbit: int, world: int = 0):
    """A registered model's retrieval for a synthetic orbit (the output of its card's checkpoint,
    found by exact identity), :class:`MissingModelOutput` if not computed yet, or
    :class:`DataError` for a name that is not a registered model.

    World seed 0 reads through the catalogue's ``model_output`` entry (with the checkpoint hash
    when the catalogue has the ``sha256`` parameter); other world seeds (stored under
    ``synthetic-w<seed>``, which the entry does not expose) read the same store directly."""
    from catalogs.catalog import read
    from catalogs.readers import MissingOutput, find_output

    sha = checkpoint_of(model)
    source = "synthetic" if int(world) == 0 else f"synthetic-w{int(world)}"
    try:
        path = find_output(model, int(orbit), source, sha)  # the store the catalogue entry reads
    except MissingOutput as e:
        raise MissingModelOutput(str(e)) from e
    except (ValueError, LookupError) as e:
        raise DataError(str(e)) from e
    key = (catalog_label(catalog_path), model, int(orbit), str(path), path.stat().st_mtime)

    def _read():
        cat = catalog(catalog_path)
        if int(world) == 0 and "sha256" in cat.user_parameters:
            return read(cat, "model_output", model=model, orbit=int(orbit), sha256=sha)
        from catalogs import schema
        from catalogs.store import open_dataset

        return schema.validate(open_dataset(path), kind="retrieval")

    try:
        return _outputs.get(key, _read)
    except MissingOutput as e:
        raise MissingModelOutput(str(e)) from e
    except _expected_errors() as e:
        raise DataError(f"cannot read the output of {model} for orbit {orbit}: {e}") from e


def output_stored(model: str, orbit: int, world: int = 0) -> bool:
    """Whether the model-output store already holds the registered ``model``'s retrieval of
    ``orbit`` (its card's checkpoint; False for a name that is not a registered model)."""
    from catalogs.readers import MissingOutput, find_output

    source = "synthetic" if int(world) == 0 else f"synthetic-w{int(world)}"
    try:
        find_output(model, int(orbit), source, checkpoint_of(model))
        return True
    except (DataError, MissingOutput, ValueError, LookupError, OSError):
        return False


def swath_geometry(key: tuple, lat, lon, projection: str):
    """Memoised :func:`app.geometry.swath_geometry` (key identifies the swath)."""
    from app.geometry import swath_geometry as build

    return _geoms.get((*key, projection), lambda: build(np.asarray(lat), np.asarray(lon), projection))


def list_models() -> list[str]:
    """Names of the registered models ([] while the registry is unavailable)."""
    try:
        from models.registry import list_models as _list
    except ImportError:
        return []
    try:
        out = []
        for m in _list():
            out.append(m if isinstance(m, str) else getattr(m, "name", str(m)))
        return out
    except Exception as e:  # a broken registry must not take the app down
        log.warning("model registry unavailable: %s", e)
        return []


def model_card(name: str) -> dict:
    """A model card as a plain dict (name, checkpoint sha256, training period, metrics)."""
    try:
        from models.registry import get_card
    except ImportError as e:
        raise DataError("the model registry is not available") from e
    from models.base import ModelError

    try:
        card = get_card(name)
    except (KeyError, ValueError, LookupError, ModelError) as e:
        raise DataError(f"unknown model {name!r}: {e}") from e
    if hasattr(card, "to_dict"):
        return dict(card.to_dict())
    import dataclasses

    if dataclasses.is_dataclass(card):
        return dataclasses.asdict(card)
    return dict(vars(card))


def orbit_index(catalog_path: str | None, start: str, end: str, region: str = "global"):
    """Synthetic orbits that crossed ``region`` (global, an AR6/SREX code, land, ocean, lat:S:N,
    or bbox:lon0,lat0,lon1,lat1; see :func:`evaluation.regions.get_region`) between ``start`` and ``end``."""
    from catalogs.orbits import synthetic_orbits

    region = (region or "global").strip()
    try:
        if region == "global":
            return synthetic_orbits(start, end, region_name="global")
        from evaluation.regions import get_region

        r = get_region(region)
        return synthetic_orbits(start, end, mask=r.mask, region_name=region)
    except _expected_errors() as e:
        raise DataError(f"cannot list orbits for {region} between {start} and {end}: {e}") from e
