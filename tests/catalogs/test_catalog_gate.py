"""User values are data, never templates; a catalogue is code (issue 12).

Every expansion form Intake applies to catalogue parameter values (intake 2.0.9
``readers/user_parameters.py``: env, data, func, import, pickle64 and ``{...}`` fields; intake 1's
Jinja ``{{ }}``/``{% %}`` with env, client_env, shell, client_shell) is refused at one gate
(:mod:`catalogs.userinput`), with a message naming the parameter and the form, whatever path the
value takes (:func:`catalogs.catalog.read`, ``raincheck catalog show -p``). By default a catalogue
may name only raincheck's readers.
"""

from __future__ import annotations

import shutil
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from app.cli import main
from catalogs.catalog import (CatalogError, UntrustedCatalog, open_catalog, read, reader,
                              user_parameters)
from catalogs.readers import MissingOutput
from catalogs.userinput import UserInputError, check_text, check_value

from tests.conftest import GPM_FIXTURES

SECRET = "s3cr3t-gate-7f1c"
CMB = "2B.GPM.DPRGMI.CORRA2022.20140308-S220950-E234217.000144.V07A.HDF5"


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("AUDIT_SECRET", SECRET)
    return SECRET


@pytest.fixture
def canary(tmp_path, monkeypatch):
    """A module on sys.path that writes a file when imported: proof that nothing imported it."""
    name = f"rc_canary_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nvalue = 'CANARY'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    yield name, marker
    sys.modules.pop(name, None)


# --- every expansion form, refused at the gate -------------------------------------------------

FORMS = [  # (value, what the message must name)
    ("env(AUDIT_SECRET)", "env(...)"),
    ("env(AUDIT_SECRET)/x.HDF5", "env(...)"),
    ("ENV (AUDIT_SECRET)", "env(...)"),
    ("{env(AUDIT_SECRET)}", "env(...)"),
    ("client_env(AUDIT_SECRET)", "client_env(...)"),
    ("shell(touch /tmp/rc-gate-pwned)", "shell(...)"),
    ("client_shell(id)", "client_shell(...)"),
    ("func({canary}:value)", "func(...)"),
    ("{{func({canary}:value)}}", "Jinja"),
    ("import({canary}:value)", "import(...)"),
    ("import:{canary}", "'import:'"),
    ("data(CATALOG_PATH)", "data(...)"),
    ("data(swath)", "data(...)"),
    ("pickle64(gASVBQAAAAAAAACMAXiULg==)", "pickle64(...)"),
    ("{{ 7 * 7 }}", "Jinja"),
    ("{% for x in y %}", "Jinja"),
    ("{# comment #}", "Jinja"),
    ("{orbit}", "template field '{orbit}'"),
    ("pps/{CATALOG_DIR}", "template field '{CATALOG_DIR}'"),
    ("{granule.__class__}", "template field"),
    ("x}", "template brace"),
    ("os.getcwd()", "function-call form os.getcwd(...)"),
    ("<img src=x onerror=alert(1)>", "HTML markup '<i'"),
]


@pytest.mark.parametrize("value, form", FORMS)
def test_every_template_form_is_refused_for_granules(data_root, secret, canary, value, form):
    name, marker = canary
    value = value.replace("{canary}", name)
    with pytest.raises(UserInputError) as e:
        read(open_catalog(), "granule", granule=value)
    msg = str(e.value)
    assert "catalogue parameter 'granule'" in msg and form in msg, msg
    assert "never templates" in msg
    assert SECRET not in msg and str(data_root) not in msg and "demo.yaml" not in msg
    assert not marker.exists() and name not in sys.modules, "a parameter imported a module"


@pytest.mark.parametrize("entry, param", [("granules", "granule_dir"), ("model_output", "model"),
                                          ("orbit_index", "start"), ("orbit_index", "end"),
                                          ("orbit_index", "bbox"), ("swath", "orbit"), ("swath", "world")])
@pytest.mark.parametrize("value", ["env(AUDIT_SECRET)", "func(this:s)", "{{ 1 }}", "{model}"])
def test_every_parameter_goes_through_the_gate(data_root, secret, entry, param, value):
    sys.modules.pop("this", None)
    with pytest.raises(UserInputError, match=f"catalogue parameter '{param}'") as e:
        read(open_catalog(), entry, **{param: value})
    assert SECRET not in str(e.value)
    assert "this" not in sys.modules  # `import this` prints the Zen: it would be imported here


def test_overrides_set_on_the_catalogue_are_gated_too(data_root, secret):
    with pytest.raises(UserInputError, match="env"):
        read(open_catalog()(granule="env(AUDIT_SECRET)"), "granule")


@pytest.mark.parametrize("value, what", [
    ("a\x00b", "U+0000"), ("a\x01b", "U+0001"), ("a\x1fb", "U+001F"), ("a\nb", "U+000A"),
    ("a\x7fb", "U+007F"), ("a\x85b", "U+0085"), ("abc\u202egpj.HDF5", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("a\u200bb", "U+200B"), ("a\u2066b", "U+2066"), ("a\u2028b", "U+2028"), ("a\ufeffb", "U+FEFF"),
])
def test_control_and_bidi_characters_are_refused(data_root, value, what):
    with pytest.raises(UserInputError) as e:
        read(open_catalog(), "granule", granule=value)
    assert what in str(e.value) and "catalogue parameter 'granule'" in str(e.value)
    assert "\x00" not in str(e.value) and "\u202e" not in str(e.value)  # the message shows them escaped


def test_huge_values_are_refused_with_their_size(data_root):
    with pytest.raises(UserInputError, match=r"too long \(10240 characters; at most 1024\)") as e:
        read(open_catalog(), "granule", granule="a" * 10240)
    assert len(str(e.value)) < 400


@pytest.mark.parametrize("orbit", ["1e309", "inf", "nan", "20000.5", "0x4e20", True, float("inf"), [1], None])
def test_orbit_must_be_a_whole_number(orbit):
    with pytest.raises(UserInputError, match="catalogue parameter 'orbit'.*(whole number|plain value)"):
        read(open_catalog(), "swath", orbit=orbit)


def test_intake_internal_parameters_are_not_user_parameters(data_root):
    assert not {"CATALOG_PATH", "CATALOG_DIR", "STORAGE_OPTIONS"} & set(user_parameters(open_catalog()))
    with pytest.raises(CatalogError, match="unknown catalogue parameter"):
        read(open_catalog(), "granule", CATALOG_DIR="/")


# --- ordinary values still work -----------------------------------------------------------------

def test_real_granule_names_and_folders_read(data_root):
    shutil.copytree(GPM_FIXTURES, data_root / "pps")
    cat = open_catalog()
    table = read(cat, "granules", granule_dir="pps")
    assert set(table["orbit"]) == {79, 144}
    ds = read(cat, "granule", granule=f"pps/{CMB}")
    assert ds.attrs["orbit_number"] == 144 and np.isfinite(ds.surface_precip.values).any()
    # the value reaches the reader as given: nothing templated, nothing substituted
    assert reader(cat, "granule", granule=f"pps/{CMB}").kwargs["path"] == f"pps/{CMB}"


@pytest.mark.parametrize("start, end, bbox", [("2019-01-01", "2019-01-02", "global"),
                                               ("2019-01-01T00:00", "2019-01-01T12:30:00", "170,-10,-170,10"),
                                               ("2019-01-01", "2019-01-02", "-20.5,-10,30,10.25")])
def test_dates_and_boxes_read(start, end, bbox):
    df = read(open_catalog(), "orbit_index", start=start, end=end, bbox=bbox)
    assert 0 < len(df) <= 17


def test_orbit_numbers_from_the_command_line_and_model_names(data_root):
    ds = read(open_catalog(), "truth", orbit=" 20001 ", world="0")
    assert ds.attrs["orbit_number"] == 20001
    for model in ("unet-reference", "unet_hybrid.v2", "Model-2"):
        with pytest.raises(MissingOutput):  # a valid name with no output yet: not refused by the gate
            read(open_catalog(), "model_output", model=model, orbit=20000)


@pytest.mark.parametrize("value", ["1C.GPM.GMI.XCAL2016-C.20140304-S175932-E193159.000079.V07A.HDF5",
                                   "2019-06-01", "bbox:10,20,30,40", "unet-reference", "a b/c d.HDF5",
                                   "Zürich–Genève", "100%", "a:b", "lat:-30:30"])
def test_plain_values_pass_the_gate(value):
    assert check_value("v", value) == value


def test_link_text_allows_polygons_but_not_control_characters():
    wkt = "polygon:POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))"
    assert check_text("region", wkt) == wkt
    with pytest.raises(UserInputError, match="U\\+202E"):
        check_text("region", "global\u202e")


def test_catalogue_templates_written_by_the_operator_still_expand(tmp_path, monkeypatch, data_root):
    """The catalogue's own text (trusted configuration) keeps Intake's templates: an env() default
    and a folder built around a parameter both work; the user's value is put in literally."""
    shutil.copytree(GPM_FIXTURES, data_root / "archive" / "pps")
    monkeypatch.setenv("RC_GATE_ARCHIVE", "archive")
    cat_file = tmp_path / "ops.yaml"
    cat_file.write_text(textwrap.dedent("""\
        version: 2
        metadata: {title: ops}
        aliases: {}
        data: {}
        user_parameters:
          archive: {description: archive folder, dtype: str, default: "env(RC_GATE_ARCHIVE)"}
          name: {description: granule file name, dtype: str, default: ""}
        entries:
          granule:
            reader: catalogs.readers:GranuleReader
            output_instance: xarray:Dataset
            metadata: {}
            kwargs: {path: "{archive}/pps/{name}"}
            user_parameters: {}
        """))
    cat = open_catalog(cat_file)
    assert reader(cat, "granule", name=CMB).kwargs["path"] == f"archive/pps/{CMB}"
    assert read(cat, "granule", name=CMB).attrs["orbit_number"] == 144
    assert read(cat, "granule", archive="archive", name=CMB).attrs["orbit_number"] == 144
    with pytest.raises(UserInputError, match="catalogue parameter 'archive'.*env"):
        read(cat, "granule", archive="env(HOME)", name=CMB)


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["import(os:getcwd)", "env(AUDIT_SECRET)", "func(this:s)", "{{7*7}}",
                                   "a\x01b"])
def test_cli_parameters_give_a_clear_message(data_root, secret, value):
    r = CliRunner().invoke(main, ["catalog", "show", "granule", "-p", f"granule={value}"])
    assert r.exit_code == 1, r.output
    assert "catalogue parameter 'granule'" in r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, (TypeError, KeyError))
    assert SECRET not in r.output and "Zen of Python" not in r.output and "49" not in r.output


# --- a catalogue is code --------------------------------------------------------------------------

def _catalogue(tmp_path, entries: str, user_parameters: str = "{}") -> str:
    p = tmp_path / "cat.yaml"
    p.write_text("version: 2\nmetadata: {}\naliases: {}\ndata: {}\n"
                 f"user_parameters: {user_parameters}\nentries:\n{textwrap.indent(entries, '  ')}")
    return str(p)


def test_generic_function_reader_is_refused_before_anything_runs(tmp_path, canary):
    name, marker = canary
    pwned = tmp_path / "pwned"
    path = _catalogue(tmp_path, textwrap.dedent(f"""\
        boom:
          reader: intake.readers.convert:GenericFunc
          output_instance: builtins:int
          kwargs: {{func: "{{func(os:system)}}", args: ["touch {pwned}"]}}
          user_parameters: {{}}
        canary:
          reader: {name}:Reader
          kwargs: {{}}
          user_parameters: {{}}
        """))
    with pytest.raises(UntrustedCatalog) as e:
        read(open_catalog(path), "boom")
    msg = str(e.value)
    assert "entry 'boom' uses reader 'intake.readers.convert:GenericFunc'" in msg
    assert f"entry 'canary' uses reader '{name}:Reader'" in msg
    assert "--trust-catalog" in msg and "RAINCHECK_TRUST_CATALOG=1" in msg
    assert not pwned.exists() and not marker.exists()


def test_stock_reader_of_files_outside_the_roots_is_refused(tmp_path):
    path = _catalogue(tmp_path, textwrap.dedent("""\
        host:
          reader: intake.readers.readers:FileTextReader
          output_instance: builtins:str
          kwargs: {data: {cls: "intake.readers.datatypes:Text", url: /etc/hostname}}
          user_parameters: {}
        """))
    with pytest.raises(UntrustedCatalog, match="entry 'host' uses reader 'intake.readers.readers:FileTextReader'"):
        open_catalog(path)


def test_class_references_and_importing_templates_are_refused(tmp_path, canary):
    name, marker = canary
    ok_entry = textwrap.dedent("""\
        truth:
          reader: catalogs.readers:SyntheticSwathReader
          output_instance: xarray:Dataset
          kwargs: {orbit_number: "{orbit}", product: "func(os:system)"}
          user_parameters: {}
        """)
    path = _catalogue(tmp_path, ok_entry,
                      f'{{orbit: {{cls: "{name}:Param", default: 20000}}}}')
    with pytest.raises(UntrustedCatalog) as e:
        open_catalog(path)
    assert f"names the class '{name}:Param' (cls)" in str(e.value)
    assert "holds the template func(...), which imports code" in str(e.value)
    assert not marker.exists() and name not in sys.modules


def test_trusting_a_catalogue_is_explicit(tmp_path, monkeypatch):
    path = _catalogue(tmp_path, textwrap.dedent("""\
        host:
          reader: intake.readers.readers:FileTextReader
          output_instance: builtins:str
          kwargs: {data: {cls: "intake.readers.datatypes:Text", url: /etc/hostname}}
          user_parameters: {}
        """))
    monkeypatch.delenv("RAINCHECK_TRUST_CATALOG", raising=False)
    assert "host" in open_catalog(path, trust=True).entries
    monkeypatch.setenv("RAINCHECK_TRUST_CATALOG", "1")
    assert "host" in open_catalog(path).entries
    with pytest.raises(UntrustedCatalog):
        open_catalog(path, trust=False)
    r = CliRunner().invoke(main, ["catalog", "list", "--catalog", path], env={"RAINCHECK_TRUST_CATALOG": ""})
    assert r.exit_code == 1 and "uses reader 'intake.readers.readers:FileTextReader'" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["catalog", "list", "--catalog", path, "--trust-catalog"],
                           env={"RAINCHECK_TRUST_CATALOG": ""})
    assert r.exit_code == 0 and "host" in r.output, r.output


# --- what web users see: no server path, no markup ------------------------------------------------

def test_messages_for_web_users_name_no_server_path(data_root):
    import site
    from pathlib import Path

    from app.data import public_message

    repo = Path(__file__).resolve().parents[2]
    sp = site.getsitepackages()[0]
    text = (f"path '../x' resolves to '/etc/passwd', outside the configured data roots ({data_root}, "
            f"{repo}/catalogs/assets); {data_root}/pps/{CMB}: file not found; {sp}/intake/readers/entry.py; "
            f"{Path.home()}/.config/secret.json; file://{repo}/catalogs/demo.yaml")
    out = public_message(text)
    for p in (str(data_root), str(repo), sp, str(Path.home()), "/etc/"):
        assert p not in out, (p, out)
    assert f"<data root>/pps/{CMB}" in out  # the user's own path below the root stays readable
    assert "<package assets>" in out and "…/passwd" in out and "…/entry.py" in out and "…/demo.yaml" in out
    plain = "12 mm h-1 over 1/2 of bbox:10,20,30,40 and lat:-30:30 at http://127.0.0.1:5006/?view=trends"
    assert public_message(plain) == plain


def test_values_reach_panes_as_text():
    from app.data import escape_text, for_page

    out = for_page('<img src="x" onerror="alert(1)"> [a](javascript:alert(1)) ![i](http://e.org/p.png) *b* `c`')
    assert "<" not in out and ">" not in out and '"' not in out
    assert "\\[a\\]" in out and "!\\[i\\]" in out and "\\*b\\*" in out and "\\`c\\`" in out
    assert escape_text("RAINCHECK_DATA_ROOT unit-model raincheck.compare/1") == \
        "RAINCHECK_DATA_ROOT unit-model raincheck.compare/1"


@pytest.mark.parametrize("search, problem", [
    ("?source=real&granule=env(AUDIT_SECRET)", "granule='env(AUDIT_SECRET)': looks like the template function env"),
    ("?granule=a%00b", "granule='a\\x00b': contains the control or formatting character U+0000"),
    ("?region=glob%E2%80%AEal", "region='glob\\u202eal': contains the control or formatting character U+202E"),
    ("?models=a%1Bb", "U+001B"),
    ("?view=%3Cscript%3Ex%3C/script%3E", "view='<script>x</script>': not a valid view; choose one of swath, "),
    ("?orbit=1e309", "orbit='1e309': not a whole number"),
    ("?y0=2050&y1=2000", "y0=2050 and y1=2000: the period ends before it starts"),
    ("?from=2019-06-05&to=2019-06-01", "from=2019-06-05 and to=2019-06-01: the period ends before it starts"),
    ("?from=yesterday", "from='yesterday': not an ISO date"),
])
def test_hostile_link_values_are_reported_and_not_applied(search, problem, secret):
    from panel.io.location import Location

    from app.state import Selection, sync_url

    s = Selection()
    problems = sync_url(s, Location(search=search))
    assert len(problems) == 1 and problem in problems[0], problems
    assert SECRET not in problems[0]
    fresh = Selection()
    for name in ("granule", "region", "models", "view", "orbit", "start_year", "end_year", "pick_start", "pick_end"):
        assert getattr(s, name) == getattr(fresh, name), name  # the refused value kept its default


def test_serve_refuses_an_untrusted_catalogue_before_serving(tmp_path, monkeypatch):
    from tests.app.test_app_serve import free_port

    monkeypatch.delenv("RAINCHECK_TRUST_CATALOG", raising=False)
    path = _catalogue(tmp_path, textwrap.dedent("""\
        host:
          reader: intake.readers.readers:FileTextReader
          output_instance: builtins:str
          kwargs: {data: {cls: "intake.readers.datatypes:Text", url: /etc/hostname}}
          user_parameters: {}
        """))
    r = CliRunner().invoke(main, ["serve", "--catalog", path, "--port", str(free_port())])
    assert r.exit_code == 1, r.output
    assert "entry 'host' uses reader 'intake.readers.readers:FileTextReader'" in r.output
    assert "--trust-catalog" in r.output and "Traceback" not in r.output


def test_text_values_stay_gated_after_the_link(secret):
    """The browser may send the link again after the first sync, and widgets set values too: a
    refused value goes back to the previous one, with a message."""
    from panel.io.location import Location

    from app.state import Selection, sync_url

    s, told = Selection(), []
    assert sync_url(s, Location(search="?source=real&granule=pps/a.HDF5"), notify=told.append) == []
    s.granule = "env(AUDIT_SECRET)"
    assert s.granule == "pps/a.HDF5" and len(told) == 1 and "template function env" in told[0]
    s.region = "ocean\x1b[31m"
    assert s.region == "global" and "U+001B" in told[1]
    s.granule = "pps/b.HDF5"  # a plain value is applied
    assert s.granule == "pps/b.HDF5" and len(told) == 2


def test_format_fields_in_the_catalogue_take_the_users_value_literally(tmp_path):
    path = _catalogue(tmp_path, textwrap.dedent("""\
        g:
          reader: catalogs.readers:GranuleReader
          output_instance: xarray:Dataset
          metadata: {}
          kwargs: {path: "orbits/{orbit:06d}/{name!s}.HDF5", granule: "{{literal}} {name}"}
          user_parameters: {}
        """), "{orbit: {dtype: int, default: 1}, name: {dtype: str, default: x}}")
    r = reader(open_catalog(path), "g", orbit="20001", name="a b%c")
    assert r.kwargs["path"] == "orbits/020001/a b%c.HDF5"
    assert r.kwargs["granule"] == "{literal} a b%c"  # the catalogue's own escaped braces stay as Intake makes them
    assert reader(open_catalog(path), "g").kwargs["path"] == "orbits/000001/x.HDF5"  # defaults: Intake's templating
