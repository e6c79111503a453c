import numpy as np
import pytest
import xarray as xr

from catalogs import schema
from catalogs.schema import SchemaError, validate

from tests.conftest import make_tiny_swath


def test_valid_swath_passes(tiny_swath):
    assert validate(tiny_swath) is tiny_swath
    assert tuple(tiny_swath["pmw_frequency"].values) == schema.CHANNELS
    assert tiny_swath["Tc"].attrs["units"] == "K"
    assert tiny_swath["surface_precip"].attrs["units"] == "mm h-1"
    assert tiny_swath.attrs["orbit_number"] == 1234


def test_make_swath_flags_fill_and_out_of_range():
    tc = 200 + np.zeros((4, 3, 13))
    tc[0, 0, 3] = -9999.9
    tc[1, 1, :] = np.nan
    ds = make_tiny_swath(n_scans=4, n_pix=3, tc=tc)
    assert np.isnan(ds["Tc"].values[0, 0, 3])
    assert ds["quality_flag"].values[0, 0] & 2
    assert ds["quality_flag"].values[1, 1] & 1
    assert ds["quality_flag"].values[2, 2] & 3 == 0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ds: ds.drop_vars("Tc"), "missing variable 'Tc'"),
        (lambda ds: ds.rename_dims(along_track="scan"), "missing dimension 'along_track'"),
        (lambda ds: ds.isel(pmw_frequency=slice(0, 12)), "13 GMI channels, found 12"),
        (lambda ds: ds.assign(Tc=ds.Tc.assign_attrs(units="degC")), "units 'K'"),
        (lambda ds: ds.assign(Tc=ds.Tc.where(False, -9999.9)), "outside the physical range"),
        (lambda ds: ds.assign_coords(lat=ds.lat + 100), "'lat' outside [-90, 90]"),
        (lambda ds: ds.drop_attrs(deep=False), "missing global attribute 'orbit_number'"),
        (lambda ds: ds.assign(surface_precip=ds.surface_precip.assign_attrs(units="mm/day")), "'surface_precip' must have units"),
        (lambda ds: ds.assign(surface_precip=-ds.surface_precip - 1), "negative rain rates"),
        (lambda ds: ds.assign(surface_type=ds.surface_type + 7), "'surface_type' has values outside"),
        (lambda ds: ds.assign(Tc=ds.Tc.transpose("pmw_frequency", ...)), "must have dims"),
        (lambda ds: ds.drop_vars("time"), "missing coordinate 'time'"),
    ],
)
def test_each_violation_is_named(tiny_swath, mutate, message):
    with pytest.raises(SchemaError, match=None) as err:
        validate(mutate(tiny_swath))
    assert message in str(err.value)


def test_not_a_dataset():
    with pytest.raises(SchemaError, match="expected an xarray.Dataset"):
        validate(xr.DataArray([1]))


def test_retrieval_schema(tiny_swath):
    q = np.array([0.1, 0.5, 0.9])
    shape = tiny_swath.lat.shape
    pq = np.sort(np.random.default_rng(0).random(shape + (3,)), axis=-1).astype(np.float32)
    ds = xr.Dataset(
        {
            "precip_quantiles": (("along_track", "cross_track", "quantile"), pq, {"units": "mm h-1"}),
            "precip_mean": (("along_track", "cross_track"), pq.mean(-1), {"units": "mm h-1"}),
            "precip_median": (("along_track", "cross_track"), pq[..., 1], {"units": "mm h-1"}),
            "pop": (("along_track", "cross_track"), pq[..., 1], {"units": "1"}),
            "p_heavy": (("along_track", "cross_track"), pq[..., 0], {"units": "1"}),
        },
        coords={"lat": tiny_swath.lat, "lon": tiny_swath.lon, "time": tiny_swath.time, "quantile": q},
        attrs={"orbit_number": 1, "sensor": "GMI", "source": "model:test"},
    )
    validate(ds, kind="retrieval")
    crossed = ds.assign(precip_quantiles=ds.precip_quantiles[..., ::-1].assign_coords(quantile=q))
    with pytest.raises(SchemaError, match="quantiles cross"):
        validate(crossed, kind="retrieval")
