"""The selection and its URL: a shared link restores the state; bad link values are reported."""

from __future__ import annotations

from panel.io.location import Location

from app.state import URL_KEYS, Selection, sync_url


def test_link_restores_selection():
    a = Selection()
    loc = Location()
    assert sync_url(a, loc) == []
    a.param.update(orbit=20123, models=["m1", "m2"], view="trends", channel="36.64H", quantile_level=0.75,
                   region="WAF", season="JJA", projection="Robinson", layers=["truth"])
    b = Selection()
    assert sync_url(b, Location(search=loc.search)) == []
    for name in URL_KEYS:
        assert getattr(b, name) == getattr(a, name), name


def test_bad_link_values_are_reported_and_the_rest_applied():
    s = Selection()
    problems = sync_url(s, Location(search="?orbit=abc&channel=XYZ&y0=2016&view=extremes"))
    assert len(problems) == 2
    assert any("orbit" in p for p in problems) and any("channel" in p for p in problems)
    assert s.orbit == Selection.param.orbit.default
    assert s.start_year == 2016 and s.view == "extremes"


def test_query_and_describe_are_plain():
    s = Selection(models=["a", "b"])
    q = s.query()
    assert q["models"] == "a,b" and q["orbit"] == s.orbit
    assert set(s.describe()) == set(URL_KEYS)


def test_one_registry_of_views():
    # the views, their order, labels, components and exporters all come from app.state.VIEW_SPECS
    from app.export import exporters
    from app.state import VIEW_LABELS, VIEW_SPECS, VIEWS
    from app.views import make_views

    names = [v.name for v in VIEW_SPECS]
    assert list(Selection.param.view.objects) == list(VIEWS) == names
    assert VIEW_LABELS == {v.name: v.label for v in VIEW_SPECS}
    assert list(exporters()) == names
    assert list(make_views(Selection())) == [v.name for v in VIEW_SPECS if v.factory]


def test_a_refused_region_leaves_no_option_behind(data_root):
    """A link's region with a control character is refused (put back to the previous region) and
    the region list does not keep it as an option; a box region is listed while it is current."""
    from app.main import Sidebar

    s = Selection()
    loc = Location()
    assert sync_url(s, loc) == []
    bar = Sidebar(selection=s)
    named = dict(bar.region.options)
    loc.search = "?region=global%E2%80%AE"  # the browser sends the link's query
    assert s.region == "global" and bar.region.value == "global"
    assert "global\u202e" not in bar.region.options.values() and bar.region.options == named
    s.region = "bbox:-10,-20,15,20"
    assert bar.region.value == s.region and s.region in bar.region.options.values()
    s.region = "WAF"
    assert bar.region.options == named
