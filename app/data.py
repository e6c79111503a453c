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
from catalogs.config import PathOutsideRoots, PACKAGE_ASSETS, get_roots
from catalogs.schema import SchemaError
import os
import site
import sys
import sysconfig
import tempfile
import re
import html
import unicodedata
from catalogs import schema
from catalogs.store import open_dataset
from app.geometry import swath_geometry as build
import dataclasses
from catalogs.orbits import synthetic_orbits

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
    """The catalogue's identity on the server (its resolved path): a cache key, never shown to
    web users (they see :func:`catalog_name`)."""
    from catalogs.catalog import DEMO_CATALOG

    return str(Path(path).resolve()) if path else str(DEMO_CATALOG)


def catalog_name(path: str | None = None) -> str:
    """What the app shows for the catalogue: its title (metadata) and file name, no server path."""
    from catalogs.catalog import DEMO_CATALOG

    fname = Path(path).name if path else DEMO_CATALOG.name
    try:
        title = str((getattr(catalog(path), "metadata", None) or {}).get("title") or "").strip()
    except DataError:
        title = ""
    return f"{title} ({fname})" if title and title != fname else fname


# -- messages for web users -----------------------------------------------------------------

def _server_prefixes() -> list[tuple[str, str]]:
    """(absolute server folder, neutral label) pairs, longest first."""


    pairs: list[tuple[str, str]] = []
    try:
        roots = get_roots()
        pairs.append((str(roots.data_root), "<data root>"))
        pairs += [(str(r), "<read root>") for r in roots.read_roots]
    except Exception:  # an unusable data root: its own error says so
        pass
    pairs.append((str(PACKAGE_ASSETS), "<package assets>"))
    # (the paths below the roots above are the user's own; below the folders that follow, only
    # the file name is shown)
    pairs.append((str(Path(__file__).resolve().parents[1]), "<raincheck>"))
    libs = set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    libs |= {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")} - {None}
    try:
        libs.add(site.getusersitepackages())
    except Exception:
        pass
    pairs += [(str(p), "<site-packages>") for p in libs]
    pairs += [(str(p), "<python>") for p in {sysconfig.get_paths().get("stdlib"), sys.prefix, sys.base_prefix,
                                             sys.exec_prefix} if p]
    pairs.append((tempfile.gettempdir(), "<tmp>"))
    pairs.append((os.path.expanduser("~"), "~"))
    try:
        pairs.append((os.getcwd(), "<working dir>"))
    except OSError:
        pass
    out = []
    for folder, label in pairs:
        for f in {folder, os.path.realpath(folder)}:
            if f and f not in ("/", ".") and len(f) > 1:
                out.append((f.rstrip("/"), label))
    return sorted(set(out), key=lambda p: -len(p[0]))


#: Labels of the roots whose sub-paths are shown (the user's own relative paths).
_USER_ROOTS = ("<data root>", "<read root>", "<package assets>")
_FILE_URL = None
_ABS_PATH = None


def public_message(text: str) -> str:
    """``text`` without the server's paths: data roots, package folders, site-packages, the home
    and temporary folders become neutral labels (``<data root>/pps/x.HDF5``); any other absolute
    path is reduced to its file name (``…/passwd``). The full text goes to the server log."""

    global _FILE_URL, _ABS_PATH
    if _FILE_URL is None:
        _FILE_URL = re.compile(r"file://(/[^\s'\"]*)")
        _ABS_PATH = re.compile(r"(?<![\w.:/~<>…\\-])/(?=[^\s/])[^\s'\"(),;<>]*")
    text = str(text)
    out = _FILE_URL.sub(lambda m: m.group(1), text)
    for folder, label in _server_prefixes():
        keep = label in _USER_ROOTS

        def sub(m, label=label, keep=keep):
            rest = m.group(1) or ""
            if keep or not rest.strip("/"):
                return label + rest
            return f"{label}/…/{rest.rstrip('/').rsplit('/', 1)[-1]}"

        out = re.sub(re.escape(folder) + r"(/[^\s'\"(),;<>]*)?(?=[\s'\"(),;:<>]|$)", sub, out)
    out = _ABS_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], out)
    if out != text:
        log.info("message for a web user (server paths removed); full text: %s", text)
    return out


def escape_text(text: str) -> str:
    """``text`` as literal text in a Markdown or HTML pane: HTML-escaped (no tag, attribute or
    entity of the text survives) and the Markdown punctuation that could make a link, an image,
    code, emphasis or math backslash-escaped (brackets, backtick, asterisk, dollar, tilde,
    backslash, and an underscore at a word edge: ``RAINCHECK_DATA_ROOT`` stays as it is)."""

    md = re.sub(r"[\\`*\[\]$~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", lambda m: "\\" + m.group(0), str(text))
    return html.escape(_visible_controls(md), quote=True)


def _visible_controls(text: str) -> str:
    """Control and formatting characters (NUL, ESC, a right-to-left override...) as ``\\uXXXX``
    (line breaks and tabs kept): a message never reorders or hides the text around them."""

    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
                   else f"\\u{ord(ch):04x}" for ch in text)


def for_html(text) -> str:
    """Like :func:`for_page` for plain HTML (a notification): server paths removed, HTML-escaped."""

    return html.escape(_visible_controls(public_message(str(text))), quote=True)


def for_page(text) -> str:
    """The one way a message or a user value reaches a pane: server paths removed
    (:func:`public_message`) and escaped (:func:`escape_text`)."""
    return escape_text(public_message(str(text)))


def orbit_range() -> tuple[int, int]:
    from catalogs.simulator.geometry import ORBIT_RANGE

    return int(ORBIT_RANGE[0]), int(ORBIT_RANGE[1])


def load_swath(catalog_path: str | None, orbit: int | None = None, world: int = 0,
               granule: str | None = None, entry: str = "swath"):
    """One orbit's canonical swath: a synthetic orbit by number, or a real granule by path."""
    from catalogs.catalog import read

    cat = catalog(catalog_path)
    if granule:
        entry = _granule_entry(cat, granule)
        key = (catalog_label(catalog_path), entry, str(granule))
        params = {"granule": str(granule)}
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


def _granule_entry(cat, granule: str) -> str:
    """The catalogue entry a real granule is read through: ``pair`` for a 1C-GMI when the
    catalogue has it (the orbit's 2B-CMB collocated as the reference, when it is found inside the
    data roots), else ``granule`` (the file alone)."""
    from catalogs.gpm import GranuleError, parse_granule_name

    try:
        product = parse_granule_name(granule).product
    except GranuleError:
        return "granule"  # the reader names what is wrong with the file name
    return "pair" if product == "1C-GMI" and "pair" in cat else "granule"


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

    return _geoms.get((*key, projection), lambda: build(np.asarray(lat), np.asarray(lon), projection))


_model_lists = Memo(4)


def _cards_stamp() -> tuple:
    """(path, mtime, size) of every model card: the registry's version."""
    from models.registry import CARD, _search_dirs

    out = []
    for d in _search_dirs():
        try:
            subs = sorted(d.iterdir()) if d.is_dir() else []
        except OSError:
            continue
        for sub in subs:
            try:
                st = (sub / CARD).stat()
            except OSError:
                continue
            out.append((str(sub), st.st_mtime_ns, st.st_size))
    return tuple(out)


def list_models() -> list[str]:
    """Names of the registered models ([] while the registry is unavailable); read once per
    version of the model cards (every session's page asks: parsing the cards took a second)."""
    try:
        from models.registry import list_models as _list
    except ImportError:
        return []

    def read():
        return tuple(m if isinstance(m, str) else getattr(m, "name", str(m)) for m in _list())

    try:
        return list(_model_lists.get(_cards_stamp(), read))
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

    if dataclasses.is_dataclass(card):
        return dataclasses.asdict(card)
    return dict(vars(card))


def orbit_index(catalog_path: str | None, start: str, end: str, region: str = "global"):
    """Synthetic orbits that crossed ``region`` (global, an AR6/SREX code, land, ocean, lat:S:N,
    or bbox:lon0,lat0,lon1,lat1; see :func:`evaluation.regions.get_region`) between ``start`` and ``end``."""

    region = (region or "global").strip()
    try:
        if region == "global":
            return synthetic_orbits(start, end, region_name="global")
        from evaluation.regions import get_region

        r = get_region(region)
        return synthetic_orbits(start, end, mask=r.mask, region_name=region)
    except _expected_errors() as e:
        raise DataError(f"cannot list orbits for {region} between {start} and {end}: {e}") from e


# -- real granules: Run on demand, their outputs, the training domain, the granule picker ----

@dataclasses.dataclass(frozen=True)
class RealGranule:
    """A real granule a model may run on (:func:`real_granule`)."""

    path: Path  # resolved, under a data root
    filename: str
    product: str  # "1C-GMI"
    orbit: int
    source: str  # its folder in the output store: "pps-1C-GMI"
    content: str  # sha256 of the file: with the model, the key of its output and of its job


def real_granule(granule: str) -> RealGranule:
    """The granule at ``granule`` (a user's path) if a model may run on it: an official PPS name of
    a 1C-GMI granule (observed Tb; a 2B-CMB's Tb are simulated: refused), under the configured data
    roots, an existing file. Else :class:`DataError` saying which. Nothing but the file's bytes
    (for its content hash) is read."""
    from catalogs.gpm import GranuleError
    from catalogs.store import file_sha256
    from models.granule_run import check_granule

    if not granule or not str(granule).strip():
        raise DataError("choose a real granule: type its path or find the granules crossing the region")
    try:
        g = check_granule(str(granule))
        content = file_sha256(g.path)
    except (GranuleError, PathOutsideRoots) as e:
        raise DataError(str(e)) from e
    except OSError as e:
        raise DataError(f"cannot read granule {Path(str(granule)).name}: {e}") from e
    return RealGranule(g.path, g.info.filename, g.product, g.orbit, g.source, content)


def granule_output_path(model: str, g: RealGranule) -> Path:
    """Where ``raincheck infer --granule`` and the app's Run store the registered ``model``'s
    retrieval of ``g`` (:func:`models.run.run_inference`'s key: checkpoint + content)."""
    from catalogs.outputs import output_path

    try:
        return output_path(model, checkpoint_of(model), g.orbit, g.source, g.content)
    except ValueError as e:
        raise DataError(str(e)) from e


def granule_output_stored(model: str, g: RealGranule) -> bool:
    """Whether the store already holds ``model``'s retrieval of ``g``."""
    from catalogs.store import is_complete

    try:
        return is_complete(granule_output_path(model, g))
    except (DataError, OSError):
        return False


def load_granule_output(model: str, g: RealGranule):
    """The registered ``model``'s retrieval of the real granule ``g`` (with its ``ood_score``),
    :class:`MissingModelOutput` if not computed yet."""
    from catalogs.store import is_complete

    path = granule_output_path(model, g)
    if not is_complete(path):
        raise MissingModelOutput(f"model {model} has no output for {g.filename} yet: press Run to compute it "
                                 f"(or `raincheck infer --model {model} --granule <path>`)")
    key = ("granule", model, str(path), path.stat().st_mtime)
    try:
        return _outputs.get(key, lambda: schema.validate(open_dataset(path), kind="retrieval"))
    except _expected_errors() as e:
        raise DataError(f"cannot read the output of {model} for {g.filename}: {e}") from e


def training_domain(model: str) -> str:
    """What the registered ``model`` was trained on: ``"archive"`` (real PPS data) or
    ``"synthetic"`` (the simulator's orbits), as its card says (:func:`models.registry.training_domain`:
    the card's ``training_data``, or for an older card its config's data section)."""
    try:
        from models.registry import get_card
        from models.registry import training_domain as domain
    except ImportError as e:
        raise DataError("the model registry is not available") from e
    from models.base import ModelError

    try:
        return domain(get_card(model))
    except (KeyError, ValueError, LookupError, ModelError) as e:
        raise DataError(f"unknown model {model!r}: {e}") from e


def domain_note(model: str, product: str = "1C-GMI") -> str | None:
    """The note the map shows when ``model`` runs on a real granule of ``product`` outside the
    domain it was trained on (None: trained on real data, or not a registered model)."""
    try:
        if training_domain(model) != "synthetic":
            return None
    except DataError:
        return None
    return (f"{model} was trained on synthetic Tb; this granule is real PPS {product}: outside its training "
            "domain — see the OOD score")


_granule_tables = Memo(8)
_latlons = Memo(256)
GRANULE_PRODUCT = "1C-GMI"
#: seconds a folder's granule listing is reused before the folder is scanned again
GRANULE_SCAN_TTL_S = 60


def granule_folders(catalog_path: str | None = None) -> list[Path]:
    """The folders the granule picker searches: the catalogue's ``granule_dir`` (its default) when
    set, else the configured read roots (``RAINCHECK_READ_ROOTS``); each confined to the roots."""
    folder = ""
    try:
        p = catalog(catalog_path).user_parameters.get("granule_dir")
        folder = str(getattr(p, "default", "") or "").strip()
    except (DataError, AttributeError):
        folder = ""
    roots = get_roots()
    try:
        return [roots.confine(folder)] if folder else list(roots.read_roots)
    except PathOutsideRoots as e:
        raise DataError(f"the catalogue's granule_dir: {e}") from e


def granule_index(catalog_path: str | None, start: str, end: str, region: str = "global"):
    """The 1C-GMI granules under :func:`granule_folders` that crossed ``region`` (a
    :func:`evaluation.regions.get_region` spec) between ``start`` and ``end``: one row per granule
    (``product, orbit, start, end, ..., path``, and ``coverage``, the fraction of its pixels in the
    region, for a region other than global), from the file names and each candidate's geolocation
    (:func:`catalogs.orbits.granule_orbits`)."""
    import time

    import pandas as pd

    from catalogs.gpm import GranuleError, open_latlon, scan_granules
    from catalogs.orbits import granule_orbits

    region = (region or "global").strip()
    folders = granule_folders(catalog_path)
    if not folders:
        raise DataError("no folder of real granules: set the catalogue's granule_dir or RAINCHECK_READ_ROOTS")
    stamp = int(time.time() // GRANULE_SCAN_TTL_S)
    try:
        tables = [_granule_tables.get((str(f), stamp), lambda f=f: scan_granules(f)) for f in folders]
        table = pd.concat(tables, ignore_index=True).drop_duplicates("path")
        table = table[table["product"] == GRANULE_PRODUCT]
        mask = None
        if region != "global":
            from evaluation.regions import get_region

            mask = get_region(region).mask

        skipped: list[str] = []

        def latlon(path):
            try:
                st = Path(path).stat()
                return _latlons.get((path, st.st_mtime_ns, st.st_size), lambda: open_latlon(path))
            except (GranuleError, OSError) as e:  # one bad file does not hide the others: listed as skipped
                skipped.append(f"{Path(path).name}: {e}")
                return np.full(1, np.nan), np.full(1, np.nan)

        df = granule_orbits(table, start, end, mask=mask, open_latlon=latlon)
    except DataError:
        raise
    except _expected_errors() as e:
        raise DataError(f"cannot list the granules crossing {region} between {start} and {end}: {e}") from e
    if "coverage" not in df:
        df["coverage"] = 1.0
    df.attrs["skipped"] = skipped
    return df
