"""Typed model/training configs: one set of defaults, ``inherit:`` resolved at load, unknown keys refused.

A config (``models/configs/*.yaml``) is read into :class:`ModelConfig` -- dataclasses, one per
section -- by :func:`parse_config`. Every key a trainer reads has its default here and nowhere
else; a key the dataclasses do not know is refused with a :class:`~models.base.ModelError`
naming the file, the key and the nearest valid name (a typo like ``epoch:`` no longer trains
with the default silently). Sizes are checked against :data:`SIZE_LIMITS` before anything is
built (a card asking for a 360 GB network allocates nothing).

``inherit: NAME`` is resolved by :func:`load_config` for every trainer: the keys of
:data:`INHERITED` (``channels`` and ``data`` for ``kind: flow``) come from config NAME unless
the config sets them, so research models share the reference's scenes and held-out sets.

The trainers keep taking plain dicts (tests and scripts edit them) and read their values through
:func:`parse_config`; the model card records the config as written (with ``inherit`` resolved).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from catalogs.outputs import check_name
from models.errors import ModelError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
KINDS = ("unet", "bayes", "flow")
#: the loss types of models.losses.ResearchLoss
LOSS_TYPES = ("pinball", "tail_pinball", "twcrps", "density")
#: the tail types of models.unet.QuantileUNet (``tail:``)
TAIL_TYPES = ("gpd",)
#: the input transforms of models.unet.QuantileUNet (``inputs: {transform: ...}``; models.research.invariant)
INPUT_TRANSFORMS = ("none", "local_anomaly")


# --------------------------------------------------------------------------- the sections
@dataclass
class SplitConfig:
    """One split of the scene sets: ``orbits`` orbits evenly spread over ``start``..``end``.

    On an archive (``data.archive``) the orbits are those of the archive's index whose 1C-GMI
    granule starts in ``start``..``end`` (both days included), in ``months`` (1-12; default all) and
    not in ``exclude_months``, drawn deterministically up to ``orbits``."""

    start: object = None  # ISO date (YAML may give a date)
    end: object = None
    orbits: int = 1
    scenes_per_orbit: int = 1
    scene_scans: int | None = None  # default: DataConfig.scene_scans
    months: list | None = None  # archive only: keep orbits of these months
    exclude_months: list | None = None  # archive only: drop orbits of these months (held out)


@dataclass
class ArchiveConfig:
    """A PPS archive as the data (``models.training.data``): ``granule_dir`` (a folder inside the
    configured data roots; a relative path is under the data root), or ``catalog`` (an Intake
    catalogue file) and ``entry`` (its granule-folder entry, reader ``GranuleDirectoryReader``),
    whose folder is then the archive."""

    granule_dir: str | None = None
    catalog: str | None = None
    entry: str = "granules"


@dataclass
class DataConfig:
    """The scene sets (``models.train.build_training_set``): simulated, or with ``archive`` the
    1C-GMI x 2B-CMB pairs of a PPS archive (``reference``; the splits' ``months`` /
    ``exclude_months``; :func:`check_data`); this section as written is hashed into the cache key
    of the scene sets."""

    source: str = "observed"
    world_seed: int = 0
    seed: int = 0
    orbit_scans: int = 2900  # usable scans of an orbit
    scene_scans: int = 128
    climate_offset_K: float | None = None  # simulated source only (research.hybrid)
    warming_K: float | None = None  # research.hybrid paired sets: the same weather this much warmer
    world: str | None = None  # research.hybrid paired sets: the world preset (catalogs.simulator.worlds)
    archive: ArchiveConfig | None = None  # a PPS archive instead of the synthetic world (1C-GMI x 2B-CMB pairs)
    reference: str = "2B-CMB"  # archive only: the reference product (2B-CMB surface precipitation)
    train: SplitConfig | None = None
    validation: SplitConfig | None = None
    test: SplitConfig | None = None
    ood: SplitConfig | None = None


@dataclass
class NetworkConfig:
    """The quantile U-Net (``models.unet.QuantileUNet``)."""

    base: int = 16
    depth: int = 3
    max_width: int = 256
    head_hidden: int = 0


@dataclass
class TrainingConfig:
    """The training loop (``models.training``) and the flow trainer. One set of defaults: the
    base and research U-Net trainers used to differ (epochs 10 vs 2, lr 2e-3 vs 5e-4)."""

    seed: int = 0
    threads: int = 2
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pct_start: float = 0.15  # OneCycle warm-up share (U-Net)
    flip: bool = True  # random along-track flips
    crop_cross: int = 0  # cross-track training window around the strip (0: the whole width)
    max_minutes: float = 1e9  # stop after the epoch/step that passes this
    resume: bool = True
    validate_init: bool = False  # validate before the first epoch too (history epoch 0; fine-tuning)
    max_scenes_per_epoch: int | None = None  # research U-Nets: a random subset each epoch
    score: bool = True  # score the held-out splits at the end
    # flow
    crop_along: int = 64
    window_cross: int = 48
    max_train_scenes: int | None = None
    max_validation_scenes: int | None = None


@dataclass
class InferenceConfig:
    tile_scans: int | None = None
    overlap: int | None = None
    cpu_batch_tiles: int | None = None
    channels_last: bool = True
    cpu_bf16: bool = False


@dataclass
class BayesConfig:
    database_size: int = 60000
    components: int = 6
    neighbours: int = 64
    sigmas: list = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    validation_pixels: int = 20000


@dataclass
class LossConfig:
    """``models.losses.ResearchLoss``: pinball, tail_pinball, twcrps or density."""

    type: str = "pinball"
    tail_from: float = 0.95
    gain: float = 4.0
    thresholds: list = field(default_factory=lambda: [0.0])
    threshold_weights: list | None = None
    beta: float = 0.5
    max_weight: float = 20.0


@dataclass
class PairedConfig:
    """``hybrid.paired``: the simulated set as paired counterfactual scenes: the same orbits, scene
    positions and weather at each of ``warmings`` (K above the scene's own climate) under the world
    preset ``world`` (``catalogs.simulator.simulate_orbit(..., warming_K=, world=)``)."""

    world: str = "today"
    warmings: list = field(default_factory=lambda: [0.0, 2.0, 4.0])
    #: "simulated" (the simulated source: its own forward-model errors, ice scattering x1.2, Tb offset) or
    #: "observed" (the observing system's own forward model: an ideal simulator, a diagnostic upper bound)
    source: str = "simulated"


@dataclass
class HybridConfig:
    """``models.research.hybrid``: simulated scenes mixed into every batch."""

    ratio: float = 0.25
    domain_weight: float = 1.0
    bias_correction: bool = True
    present_share: float | None = None
    simulated: SplitConfig | None = None
    calibration: SplitConfig | None = None
    paired: PairedConfig | None = None


@dataclass
class TailConfig:
    """An extreme-value tail of the quantile U-Net (``models.unet.QuantileUNet``, issue 15). ``gpd``:
    the quantile levels above ``threshold_level`` (one of ``quantile_levels``, with a level below
    it and one above) are the GPD quantiles of the exceedance over that level's quantile
    (``models.research.gpd``), with a per-pixel scale and a shape bounded to (``xi_min``,
    ``xi_max``), ``-1 < xi_min < 0 < xi_max < 1`` (the head starts at ``xi = 0``)."""

    type: str = "gpd"
    threshold_level: float = 0.99
    xi_min: float = -0.2
    xi_max: float = 0.5


@dataclass
class InputsConfig:
    """Climate-invariant inputs of the quantile U-Net (``models.research.invariant``, issue 15):
    ``local_anomaly`` feeds each channel's Tb minus its local clear-sky background (grey opening for
    the emission channels, closing for the scattering ones) over a ``window`` of odd (along, cross)
    pixels (or one odd int for both), and with ``surface_pd`` the 10.65 GHz V - H difference in
    place of the 10.65H anomaly; ``none``: the Tb as they are."""

    transform: str = "none"
    window: object = field(default_factory=lambda: [11, 31])
    surface_pd: bool = True


@dataclass
class ConditioningConfig:
    gmst: bool = False
    domain: bool = False


@dataclass
class FlowConfig:
    base: int = 16
    depth: int = 2
    patch: int = 2


@dataclass
class SamplingConfig:
    members: int = 10
    steps: int = 8
    seed: int = 0


@dataclass
class OODConfig:
    fit_scenes: int = 120
    max_pixels: int = 200_000
    shrinkage: float = 0.05


@dataclass
class ModelConfig:
    """A whole config. ``name`` and ``kind`` are required; every section has its defaults."""

    name: str = ""
    kind: str = ""
    inherit: str | None = None
    channels: object = "all"  # "all", "drain" or a list of channel labels
    quantile_levels: list | None = None
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    bayes: BayesConfig = field(default_factory=BayesConfig)
    compare_with: list = field(default_factory=list)
    # research U-Nets
    init_from: str | None = None
    loss: LossConfig | None = None
    hybrid: HybridConfig | None = None
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    tail: TailConfig | None = None  # an extreme-value (GPD) tail of the quantile head
    inputs: InputsConfig | None = None  # climate-invariant input transform (models.research.invariant)
    # flow
    base_model: str | None = None
    base_config: dict | None = None  # written into flow cards: the base U-Net's config
    flow: FlowConfig = field(default_factory=FlowConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    ood: OODConfig = field(default_factory=OODConfig)

    @property
    def research(self) -> bool:
        """Trained by the research trainer (a flow, or a U-Net with research keys)."""
        return self.kind == "flow" or any(x is not None for x in (self.loss, self.hybrid, self.init_from, self.inherit))


# --------------------------------------------------------------------------- parsing
def _section_type(tp):
    """The dataclass inside an annotation like ``SplitConfig | None`` (or None)."""
    if dataclasses.is_dataclass(tp):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for a in typing.get_args(tp):
            if dataclasses.is_dataclass(a):
                return a
    return None


def _scalar_ok(value, tp) -> bool:
    args = typing.get_args(tp) if (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) else (tp,)
    if value is None:
        return type(None) in args or tp is object
    for a in args:
        if a is object:
            return True
        if a is bool and isinstance(value, bool):
            return True
        if a is int and not isinstance(value, bool) and (isinstance(value, int) or
                                                         (isinstance(value, float) and value.is_integer())):
            return True
        if a is float and not isinstance(value, bool) and isinstance(value, (int, float)):
            return True
        if a is str and isinstance(value, str):
            return True
        if a in (list, dict) and isinstance(value, a):
            return True
    return False


def _convert(value, tp):
    args = typing.get_args(tp) if (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) else (tp,)
    if value is None or isinstance(value, bool):
        return value
    if int in args and isinstance(value, float) and value.is_integer() and float not in args:
        return int(value)
    if float in args and int not in args and isinstance(value, int):
        return float(value)
    return value


def _build(cls, d, where: str, path: str):
    if not isinstance(d, dict):
        raise ModelError(f"{where}: field {path or 'config'} must be a mapping, got {d!r:.60}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kw = {}
    for key, value in d.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in hints:
            near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(names)}"
            raise ModelError(f"{where}: unknown key {dotted!r}{hint}")
        tp = hints[key]
        sub = _section_type(tp)
        if sub is not None and value is not None:
            kw[key] = _build(sub, value, where, dotted)
        elif sub is not None and not _scalar_ok(value, tp):
            raise ModelError(f"{where}: field {dotted} must be a mapping, got {value!r:.60}")
        else:
            if not _scalar_ok(value, tp):
                want = " or ".join(getattr(a, "__name__", str(a)) for a in
                                   (typing.get_args(tp) or (tp,)))
                raise ModelError(f"{where}: field {dotted} must be {want}, got {value!r:.60}")
            kw[key] = _convert(value, tp)
    return cls(**kw)


def parse_config(cfg: dict, where: str = "config") -> ModelConfig:
    """The typed :class:`ModelConfig` of a config dict: defaults filled, an unknown key or a
    value of the wrong type refused (:class:`ModelError` naming ``where``, the key and the
    nearest valid name), sizes checked (:func:`check_config_sizes`)."""
    if not isinstance(cfg, dict):
        raise ModelError(f"{where} must be a mapping, got {type(cfg).__name__}")
    check_config_sizes(cfg, where)
    out = _build(ModelConfig, cfg, where, "")
    if out.kind and out.kind not in KINDS:
        raise ModelError(f"{where}: field kind must be one of {', '.join(KINDS)}, got {out.kind!r}")
    if out.loss is not None and out.loss.type not in LOSS_TYPES:
        raise ModelError(f"{where}: field loss.type must be one of {', '.join(LOSS_TYPES)}, got {out.loss.type!r}")
    if out.tail is not None:
        check_tail(out, where)
    if out.inputs is not None:
        check_inputs(out, where)
    check_data(out.data, cfg.get("data") or {}, where)
    return out


def check_inputs(cfg: ModelConfig, where: str) -> None:
    """Refuse, naming the field, an ``inputs`` section that cannot be built (:class:`InputsConfig`)."""
    i = cfg.inputs
    if cfg.kind and cfg.kind != "unet":
        raise ModelError(f"{where}: field inputs is for kind unet only, not {cfg.kind!r}")
    if i.transform not in INPUT_TRANSFORMS:
        raise ModelError(f"{where}: field inputs.transform must be one of {', '.join(INPUT_TRANSFORMS)}, "
                         f"got {i.transform!r}")
    w = i.window
    sides = [w, w] if isinstance(w, int) and not isinstance(w, bool) else w
    if (not isinstance(sides, list) or len(sides) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 3 <= v <= 255 and v % 2 for v in sides)):
        raise ModelError(f"{where}: field inputs.window must be an odd integer in 3..255 or [along, cross] "
                         f"of such integers, got {w!r:.60}")


def check_tail(cfg: ModelConfig, where: str) -> None:
    """Refuse, naming the field, a ``tail`` section that cannot be built (:class:`TailConfig`)."""
    t = cfg.tail
    if cfg.kind and cfg.kind != "unet":
        raise ModelError(f"{where}: field tail is for kind unet only, not {cfg.kind!r}")
    if t.type not in TAIL_TYPES:
        raise ModelError(f"{where}: field tail.type must be one of {', '.join(TAIL_TYPES)}, got {t.type!r}")
    if not -1.0 < t.xi_min < 0.0:
        raise ModelError(f"{where}: field tail.xi_min must be in (-1, 0), got {t.xi_min!r}")
    if not 0.0 < t.xi_max < 1.0:
        raise ModelError(f"{where}: field tail.xi_max must be in (0, 1) (the mean is infinite for xi >= 1), "
                         f"got {t.xi_max!r}")
    if not 0.0 < t.threshold_level < 1.0:
        raise ModelError(f"{where}: field tail.threshold_level must be in (0, 1), got {t.threshold_level!r}")
    levels = cfg.quantile_levels
    if levels is None:  # not resolved yet (inherit): checked again once it is
        return
    lv = [float(x) for x in levels]
    hits = [i for i, x in enumerate(lv) if abs(x - t.threshold_level) < 1e-9]
    if not hits:
        raise ModelError(f"{where}: field tail.threshold_level = {t.threshold_level} is not one of the "
                         f"quantile_levels {lv}")
    if hits[0] == 0 or hits[0] == len(lv) - 1:
        raise ModelError(f"{where}: field tail.threshold_level = {t.threshold_level} needs a quantile level "
                         "below it and one above it")


def data_config(data: dict, where: str = "config") -> DataConfig:
    """The typed data section (for callers that hold only ``config['data']``), checked
    (:func:`check_data`)."""
    out = _build(DataConfig, data, where, "data")
    check_data(out, data, where)
    return out


#: data keys of the synthetic world that mean nothing for an archive (refused there)
SYNTHETIC_ONLY = ("source", "world_seed", "orbit_scans", "climate_offset_K", "warming_K", "world")
#: the reference products an archive can give (collocated by catalogs.pairs.open_pair)
ARCHIVE_REFERENCES = ("2B-CMB",)


def _iso_day(value, field_: str, where: str):
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ModelError(f"{where}: field {field_} must be an ISO date (YYYY-MM-DD), got {value!r:.60}") from None


def _months(value, field_: str, where: str) -> list[int]:
    if value is None:
        return []
    if (not isinstance(value, list) or not value
            or not all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12 for m in value)):
        raise ModelError(f"{where}: field {field_} must be a non-empty list of months 1..12, got {value!r:.60}")
    return sorted(set(value))


def check_data(d: DataConfig, raw: dict, where: str = "config") -> None:
    """Refuse, naming the field, a data section that cannot be built: on an archive
    (``archive:``) one of ``granule_dir`` / ``catalog``, the reference 2B-CMB, no keys of the
    synthetic world, dated splits and months in 1..12; ``months`` / ``exclude_months`` /
    ``reference`` only on an archive."""
    splits = [s for s in ("train", "validation", "test", "ood") if getattr(d, s) is not None]
    if d.archive is None:
        if "reference" in raw:
            raise ModelError(f"{where}: field data.reference is for an archive (data.archive) only; the synthetic "
                             "world's reference is its radar reference")
        for s in splits:
            for key in ("months", "exclude_months"):
                if getattr(getattr(d, s), key) is not None:
                    raise ModelError(f"{where}: field data.{s}.{key} is for an archive (data.archive) only")
        return
    a = d.archive
    given = [k for k in ("granule_dir", "catalog") if getattr(a, k) not in (None, "")]
    if len(given) != 1:
        raise ModelError(f"{where}: field data.archive needs exactly one of granule_dir (a folder of PPS granules) "
                         f"or catalog (+ entry), got {', '.join(given) or 'neither'}")
    for k in ("granule_dir", "catalog", "entry"):
        v = getattr(a, k)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise ModelError(f"{where}: field data.archive.{k} must be a non-empty string, got {v!r:.60}")
    if d.reference not in ARCHIVE_REFERENCES:
        raise ModelError(f"{where}: field data.reference must be one of {', '.join(ARCHIVE_REFERENCES)} "
                         f"(the reference an archive gives), got {d.reference!r:.60}")
    for k in SYNTHETIC_ONLY:
        if k in raw:
            raise ModelError(f"{where}: field data.{k} is for the synthetic world; a data section with an "
                             "archive (data.archive) does not use it")
    if d.train is None:
        raise ModelError(f"{where}: field data.train is required (the training split of the archive)")
    for s in splits:
        spec = getattr(d, s)
        if spec.start is None or spec.end is None:
            raise ModelError(f"{where}: field data.{s} needs start and end (ISO dates)")
        a0, a1 = _iso_day(spec.start, f"data.{s}.start", where), _iso_day(spec.end, f"data.{s}.end", where)
        if a1 < a0:
            raise ModelError(f"{where}: field data.{s}.end ({a1}) is before data.{s}.start ({a0})")
        if spec.orbits < 1 or spec.scenes_per_orbit < 1:
            raise ModelError(f"{where}: fields data.{s}.orbits and data.{s}.scenes_per_orbit must be at least 1")
        keep = _months(spec.months, f"data.{s}.months", where)
        drop = _months(spec.exclude_months, f"data.{s}.exclude_months", where)
        if keep and not set(keep) - set(drop):
            raise ModelError(f"{where}: fields data.{s}.months and data.{s}.exclude_months leave no month")


def split_months(spec: SplitConfig) -> list[int]:
    """The months (1-12) a split of an archive takes orbits from."""
    keep = set(spec.months or range(1, 13))
    return sorted(keep - set(spec.exclude_months or ()))


def training_data(data: dict) -> dict:
    """What a model is trained on, from its data section (the model card's ``training_data``):
    ``{kind: archive, granule_dir | catalog + entry, reference, periods, months, held_out_months,
    orbits}`` or ``{kind: synthetic, world, source, world_seed, periods, orbits}``; ``orbits``
    is what the config asks for per split (the trainer records what it found)."""
    d = data_config(data)
    splits = [s for s in ("train", "validation", "test", "ood") if getattr(d, s) is not None]
    periods = {s: f"{getattr(d, s).start}..{getattr(d, s).end}" for s in splits}
    orbits = {s: int(getattr(d, s).orbits) for s in splits}
    if d.archive is None:
        out = {"kind": "synthetic", "world": d.world or "today", "source": d.source, "world_seed": d.world_seed,
               "periods": periods, "orbits": orbits}
        for k in ("climate_offset_K", "warming_K"):
            if getattr(d, k) is not None:
                out[k] = getattr(d, k)
        return out
    where = ({"granule_dir": d.archive.granule_dir} if d.archive.granule_dir
             else {"catalog": d.archive.catalog, "entry": d.archive.entry})
    months = {s: split_months(getattr(d, s)) for s in splits}
    held = sorted(set(range(1, 13)) - set(months["train"])) if d.train is not None else []
    return {"kind": "archive", **where, "reference": d.reference, "periods": periods, "months": months,
            "held_out_months": held, "orbits": orbits}


def split_scene_scans(data: DataConfig, split: str) -> int:
    spec = getattr(data, split)
    return int(spec.scene_scans if spec.scene_scans is not None else data.scene_scans)


# --------------------------------------------------------------------------- loading
#: keys a config takes from the config named by ``inherit`` when it does not set them
INHERITED = ("channels", "quantile_levels", "network", "inference", "data")
#: the same for ``kind: flow`` (its network, levels and inference are its own)
INHERITED_FLOW = ("channels", "data")


def resolve_inherit(config: dict, where: str = "config", _seen: tuple = ()) -> dict:
    """``config`` with ``inherit: NAME`` resolved (the keys of :data:`INHERITED`, for a flow
    :data:`INHERITED_FLOW`, from config NAME unless set). A chain of ``inherit`` is followed; a
    loop is refused."""
    parent_name = config.get("inherit")
    if not parent_name:
        return config
    if parent_name in _seen or parent_name == config.get("name"):
        raise ModelError(f"{where}: inherit {parent_name!r} loops back ({' -> '.join((*_seen, parent_name))})")
    parent = _read(parent_name)
    parent = resolve_inherit(parent, f"config {parent_name}", (*_seen, str(config.get("name")), parent_name))
    out = dict(config)
    for k in (INHERITED_FLOW if config.get("kind") == "flow" else INHERITED):
        if k not in out and k in parent:
            out[k] = copy.deepcopy(parent[k])
    return out


def config_path(path_or_name: str | os.PathLike) -> Path:
    p = Path(path_or_name)
    if not p.suffix:
        p = CONFIG_DIR / f"{path_or_name}.yaml"
    if not p.is_file():
        raise ModelError(f"config {str(path_or_name)!r} not found (shipped: "
                         f"{', '.join(sorted(q.stem for q in CONFIG_DIR.glob('*.yaml')))})")
    return p


def _read(path_or_name) -> dict:
    p = config_path(path_or_name)
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ModelError(f"config {p} is not valid YAML: {e}") from None
    except OSError as e:
        raise ModelError(f"cannot read config {p}: {e}") from None
    if not isinstance(cfg, dict) or "name" not in cfg or "kind" not in cfg:
        raise ModelError(f"config {p} must be a mapping with at least 'name' and 'kind'")
    return cfg


def load_config(path_or_name: str | os.PathLike) -> dict:
    """A model/training config from a YAML path or the name of a shipped config, as a dict with
    ``inherit`` resolved, checked key by key (:func:`parse_config`)."""
    p = config_path(path_or_name)
    cfg = _read(p)
    try:
        check_name(cfg["name"])
    except ValueError as e:
        raise ModelError(f"config {p}: field name: {e}") from None
    parse_config(cfg, f"config {p}")  # refuse unknown keys before resolving (names the file)
    cfg = resolve_inherit(cfg, f"config {p}")
    parse_config(cfg, f"config {p}")
    return cfg


def load_typed(path_or_name: str | os.PathLike) -> ModelConfig:
    """:func:`load_config` as a :class:`ModelConfig`."""
    return parse_config(load_config(path_or_name), f"config {path_or_name}")


# --------------------------------------------------------------------------- sizes
#: the largest network a card or config may ask for (parameters): 100 M (400 MB of float32)
#: against < 1 M for the shipped U-Nets; a card asking for more is refused before anything is
#: allocated (a card with ``base: 100000`` would ask for ≈ 360 GB)
MAX_PARAMETERS = 100_000_000
#: (dotted field, smallest, largest) of the integer sizes a card or config may give
SIZE_LIMITS = (
    ("network.base", 1, 1024), ("network.depth", 1, 8), ("network.max_width", 1, 4096),
    ("network.head_hidden", 0, 4096),
    ("flow.base", 1, 1024), ("flow.depth", 1, 8), ("flow.patch", 1, 64),
    ("sampling.members", 1, 1000), ("sampling.steps", 1, 1000),
    ("inference.tile_scans", 8, 16384), ("inference.cpu_batch_tiles", 1, 64),
    ("bayes.database_size", 1, 50_000_000), ("bayes.components", 1, 13), ("bayes.neighbours", 1, 100_000),
    ("training.epochs", 0, 100_000), ("training.batch_size", 1, 4096), ("training.crop_cross", 8, 4096),
    ("training.crop_along", 8, 16384), ("training.threads", 0, 1024),
)


def _get(cfg: dict, dotted: str):
    cur = cfg
    for k in dotted.split("."):
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _int_field(value, field_: str, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ModelError(f"{where}: field {field_} must be an integer in {lo}..{hi}, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise ModelError(f"{where}: field {field_} = {v} is out of range ({lo}..{hi})")
    return v


def unet_parameters(network: dict, n_quantiles: int, n_in: int = 15) -> int:
    """Parameters of :class:`models.unet.QuantileUNet` for a ``network`` config (an upper bound
    over the input channels), computed without building it."""
    d = NetworkConfig()
    base, depth = int(network.get("base", d.base)), int(network.get("depth", d.depth))
    max_width, head_hidden = int(network.get("max_width", d.max_width)), int(network.get("head_hidden", d.head_hidden))
    w = [min(base * 2 ** i, max_width) for i in range(depth + 1)]

    def block(cin, cout):
        return 9 * cin * cout + 9 * cout * cout + 4 * cout

    n, cin = 0, n_in
    for x in w[:-1]:
        n += block(cin, x)
        cin = x
    n += block(cin, w[-1])
    for i in reversed(range(depth)):
        n += 4 * w[i + 1] * w[i] + w[i] + block(2 * w[i], w[i])
    head_in = w[0]
    if head_hidden:
        n += (w[0] + n_in + 1) * head_hidden + (head_hidden + 1) * head_hidden
        head_in = head_hidden
    return n + (head_in + 1) * n_quantiles


def check_config_sizes(cfg: dict, where: str) -> None:
    """Refuse, naming the field, a config (or a card's config) whose sizes are not integers in
    their range (:data:`SIZE_LIMITS`) or whose network would exceed :data:`MAX_PARAMETERS`;
    runs before any network is built, so an absurd card allocates nothing."""
    if not isinstance(cfg, dict):
        raise ModelError(f"{where}: field config must be a mapping, got {type(cfg).__name__}")
    for field_, lo, hi in SIZE_LIMITS:
        v = _get(cfg, field_)
        if v is not None:
            _int_field(v, field_, lo, hi, where)
    levels = cfg.get("quantile_levels")
    if levels is not None:
        check_levels(levels, "config.quantile_levels", where)
    for key in ("network", "flow", "inference", "sampling", "bayes", "training", "conditioning"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise ModelError(f"{where}: field {key} must be a mapping, got {cfg[key]!r:.60}")
    if cfg.get("kind") == "unet" or isinstance(cfg.get("network"), dict):
        nq = len(levels) if isinstance(levels, list) else 1
        n = unet_parameters(cfg.get("network") or {}, nq)
        if n > MAX_PARAMETERS:
            raise ModelError(f"{where}: field network asks for a U-Net of {n:,} parameters "
                             f"({n * 4 / 2**30:.0f} GiB of float32), more than the limit of {MAX_PARAMETERS:,}")
    if isinstance(cfg.get("base_config"), dict):
        check_config_sizes(cfg["base_config"], f"{where} (base_config)")


def check_levels(levels, field_: str, where: str) -> None:
    if not isinstance(levels, list) or not 1 <= len(levels) <= 1000:
        raise ModelError(f"{where}: field {field_} must be a list of 1 to 1000 quantile levels, got {levels!r:.80}")
    try:
        lv = [float(x) for x in levels]
    except (TypeError, ValueError):
        raise ModelError(f"{where}: field {field_} must hold numbers in (0, 1), got {levels!r:.80}") from None
    if not all(0 < x < 1 for x in lv) or any(b <= a for a, b in zip(lv, lv[1:])):
        raise ModelError(f"{where}: field {field_} must be increasing numbers in (0, 1), got {levels!r:.80}")
