"""config.py: the pipeline schema, its defaults, YAML positions in errors, and --set overrides."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from stylepipe.cli.exit_codes import exit_code_for
from stylepipe.config.load import LoadedPipeline, load_pipeline
from stylepipe.config.overrides import apply_override, parse_override
from stylepipe.config.positions import format_loc
from stylepipe.config.schema import PipelineConfig
from stylepipe.core.errors import ConfigError, StylepipeError
from stylepipe.plan.build import build_plan

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def config_error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, overrides)
    return str(info.value)


MINIMAL = """
content: photo.jpg
styles: painting.jpg
"""


# --- valid pipelines ----------------------------------------------------------------------------


def test_minimal_pipeline_has_documented_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    loaded = load_pipeline(path)
    cfg = loaded.config
    assert isinstance(loaded, LoadedPipeline) and isinstance(cfg, PipelineConfig)
    assert cfg.version == 1 and cfg.mode == "transfer" and cfg.reconstruct.side == "content"
    assert cfg.content == ["photo.jpg"]
    assert (cfg.size.max_side, cfg.size.max_pixels, cfg.size.style_scale, cfg.size.style_max_side) == (256, None, 1.0, None)
    assert (cfg.optimize.optimizer, cfg.optimize.steps, cfg.optimize.lr, cfg.optimize.init, cfg.optimize.seed) == (
        "lbfgs", None, None, "content", 0)  # steps and pyramid: None = the mode's default (stylepipe/config/defaults.py)
    assert cfg.optimize.pyramid is None and cfg.optimize.noise == 0.3
    assert (cfg.network.name, cfg.network.weights, cfg.network.pooling, cfg.network.device) == (
        "vgg19-gatys", None, "avg", "auto")
    assert (cfg.output.dir, cfg.output.pattern, cfg.output.format, cfg.output.quality) == (
        "outputs", None, "jpg", 92)  # None: the mode's default pattern
    assert cfg.losses.content.layers == ["relu4_2"] and cfg.losses.content.weight == 1.0
    assert cfg.losses.style.layers == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert cfg.losses.style.weight == 200.0 and cfg.losses.tv.weight == 10.0 and cfg.losses.extra == []
    assert cfg.postprocess.preserve_colors is None
    assert (cfg.cache.enabled, cfg.cache.dir, cfg.cache.size_limit_mb) == (True, "cache", 2048)
    assert cfg.limits.max_input_pixels == 178_956_970
    assert cfg.plugins == [] and cfg.override_plugins is False and cfg.executor == "local"
    # where it came from: paths are relative to the file's folder
    assert loaded.path == path.resolve() and loaded.base_dir == tmp_path.resolve()
    assert loaded.resolve("x/y.jpg") == tmp_path.resolve() / "x" / "y.jpg"
    assert loaded.resolve("/abs/z.jpg") == Path("/abs/z.jpg")
    assert loaded.raw == {"content": "photo.jpg", "styles": "painting.jpg"}


def test_style_string_shorthand_becomes_image_source(tmp_path: Path) -> None:
    cfg = load_pipeline(write(tmp_path, MINIMAL)).config
    assert len(cfg.styles) == 1
    style = cfg.styles[0]
    assert style.source == "image" and style.name is None
    assert style.params() == {"path": "painting.jpg"}


def test_lists_and_mixed_style_entries(tmp_path: Path) -> None:
    path = write(tmp_path, """
        content:
          - a.jpg
          - photos/
          - "more/*.png"
        styles:
          - one.jpg
          - source: tiled
            path: two.jpg
            grid: 3
            name: two-big
          - source: blend
            styles:
              - {path: a.jpg, weight: 2}
              - {path: b.jpg}
        """)
    cfg = load_pipeline(path).config
    assert cfg.content == ["a.jpg", "photos/", "more/*.png"]
    assert [s.source for s in cfg.styles] == ["image", "tiled", "blend"]
    assert cfg.styles[0].params() == {"path": "one.jpg"}
    assert cfg.styles[1].params() == {"path": "two.jpg", "grid": 3} and cfg.styles[1].name == "two-big"
    assert cfg.styles[2].params() == {"styles": [{"path": "a.jpg", "weight": 2}, {"path": "b.jpg"}]}


def test_palette_mode_needs_no_content(tmp_path: Path) -> None:
    cfg = load_pipeline(write(tmp_path, "mode: palette\nstyles: painting.jpg\n")).config
    assert cfg.mode == "palette" and cfg.content == []


def test_reconstruct_style_needs_no_content(tmp_path: Path) -> None:
    cfg = load_pipeline(write(tmp_path, "mode: reconstruct\nreconstruct: style\nstyles: p.jpg\n")).config
    assert cfg.reconstruct.side == "style" and cfg.reconstruct.layers == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


# --- errors: FILE:LINE:COL: dotted.key: message ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "key", "message"),
    [
        pytest.param("content: a.jpg\nstyles: b.jpg\ncolour: red\n", "3:1", "colour",
                     "Extra inputs are not permitted", id="unknown-top-level-key"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noptimize:\n  steps: 10\n  stepz: 20\n", "5:3", "optimize.stepz",
                     "Extra inputs are not permitted", id="unknown-nested-key-points-at-key"),
        pytest.param("content: a.jpg\nstyles: b.jpg\nsize:\n  max_side: big\n", "4:13", "size.max_side",
                     "valid integer", id="wrong-type-points-at-value"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noptimize:\n  steps: 0\n", "4:10", "optimize.steps",
                     "greater than or equal to 1", id="out-of-range-low"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noutput:\n  quality: 101\n", "4:12", "output.quality",
                     "less than or equal to 100", id="out-of-range-high"),
        pytest.param("content: a.jpg\nstyles: b.jpg\nnetwork:\n  name: vgg16\n", "4:9", "network.name",
                     "'vgg19-gatys'", id="unknown-network"),
        pytest.param("content: a.jpg\nstyles: b.jpg\nnetwork:\n  device: gpu\n", "4:11", "network.device",
                     "use auto, cpu, cuda, cuda:N or mps", id="bad-device"),
        pytest.param('content: a.jpg\nstyles: b.jpg\noutput:\n  pattern: "../{content}.jpg"\n', "4:12", "output.pattern",
                     "relative path inside output.dir", id="pattern-with-dotdot"),
        pytest.param('content: a.jpg\nstyles: b.jpg\noutput:\n  pattern: "/tmp/{content}.jpg"\n', "4:12", "output.pattern",
                     "relative path inside output.dir", id="absolute-pattern"),
        pytest.param("content: a.jpg\nstyles: b.jpg\nsize:\n  max_side: null\n", "4:3", "size",
                     "set max_side or max_pixels", id="no-size-at-all"),
        pytest.param("content:\n  - a.jpg\n  - 5\nstyles: b.jpg\n", "3:5", "content.1",
                     "valid string", id="list-item-wrong-type"),
        pytest.param("mode: transfer\ncontent: a.jpg\n", "1:1", "(top level)",
                     "mode transfer needs `styles:`", id="transfer-without-styles"),
        pytest.param("mode: palette\ncontent: a.jpg\n", "1:1", "(top level)",
                     "mode palette needs `styles:`", id="palette-without-styles"),
        pytest.param("styles: b.jpg\n", "1:1", "(top level)",
                     "mode transfer needs `content:`", id="transfer-without-content"),
        pytest.param("mode: painting\ncontent: a.jpg\nstyles: b.jpg\n", "1:7", "mode",
                     "'transfer'", id="unknown-mode"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noutput:\n  bit_depth: 16\n", "4:14", "output.bit_depth",
                     "jpg holds 8 bits per channel; 16-bit output needs format png or tiff", id="16-bit-jpg-by-default"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noutput:\n  format: webp\n  bit_depth: 16\n", "5:14",
                     "output.bit_depth", "webp holds 8 bits per channel", id="16-bit-webp"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noutput:\n  format: png\n  bit_depth: 12\n", "5:14",
                     "output.bit_depth", "Input should be 8 or 16", id="12-bit"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noutput:\n  dpi: 0\n", "4:8", "output.dpi",
                     "greater than or equal to 1", id="zero-dpi"),
        pytest.param("content: a.jpg\nstyles: b.jpg\noutput:\n  format: tif\n  keep_metadata: true\n", "5:18",
                     "output.keep_metadata", "EXIF is not copied into tiff outputs", id="exif-into-tiff"),
    ],
)
def test_schema_errors_name_file_line_column_and_key(tmp_path: Path, text: str, where: str, key: str, message: str) -> None:
    path = write(tmp_path, text)
    error = config_error(path)
    assert "\n" not in error, "one problem, one line"
    assert error.startswith(f"{path}:{where}: {key}: "), error
    assert message in error


def test_error_is_a_config_error_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, "content: a.jpg\nstyles: b.jpg\ncolour: red\n"))
    assert isinstance(info.value, StylepipeError) and exit_code_for(info.value) == 2
    assert info.value.__cause__ is None  # no pydantic traceback chained into the user's face


def test_exact_message_format(tmp_path: Path) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles: b.jpg\nsize:\n  max_side: 8\n")
    assert config_error(path) == f"{path}:4:13: size.max_side: Input should be greater than or equal to 32"


def test_several_problems_give_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, """
        content: a.jpg
        styles: b.jpg
        optimize:
          steps: -1
          optimizer: sgd
        colour: red
        """)
    lines = config_error(path).splitlines()
    assert len(lines) == 3
    assert any(line.startswith(f"{path}:4:10: optimize.steps: ") for line in lines)
    assert any(line.startswith(f"{path}:5:14: optimize.optimizer: ") for line in lines)
    assert any(line.startswith(f"{path}:6:1: colour: ") for line in lines)


def test_unknown_style_parameter_points_at_the_key(tmp_path: Path) -> None:
    """Style parameters belong to the style source's model: checked when the plan is built."""
    shutil.copy(SAMPLES / "content" / "chelsea.jpg", tmp_path / "a.jpg")
    shutil.copy(SAMPLES / "styles" / "the_scream.jpg", tmp_path / "b.jpg")
    path = write(tmp_path, """
        content: a.jpg
        styles:
          - path: b.jpg
            weigth: 2
        """)
    loaded = load_pipeline(path)  # the schema accepts any key on a style entry...
    with pytest.raises(ConfigError) as info:
        build_plan(loaded, weights_id="test")  # ...and its source's model refuses this one
    assert str(info.value) == f"{path}:4:5: styles.0.weigth: Extra inputs are not permitted"


def test_style_parameter_of_wrong_type_points_at_the_value(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "styles" / "the_scream.jpg", tmp_path / "b.jpg")
    path = write(tmp_path, """
        mode: palette
        styles:
          - source: tiled
            path: b.jpg
            grid: many
        """)
    with pytest.raises(ConfigError) as info:
        build_plan(load_pipeline(path), weights_id="test")
    assert str(info.value).startswith(f"{path}:5:11: styles.0.grid: ")


def test_invalid_yaml_names_the_line_of_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles: b.jpg\n  bad: 1\n")
    error = config_error(path)
    assert error.startswith(f"{path}:3:"), error
    assert "invalid YAML" in error and "mapping values are not allowed" in error


def test_invalid_yaml_unclosed_flow_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles: b.jpg\nsize: {max_side: 3\n\nfoo: 2\n")
    assert config_error(path).startswith(f"{path}:5:")


def test_yaml_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = write(tmp_path, f"content: a.jpg\nstyles: b.jpg\nevil: !!python/object/apply:os.system ['touch {marker}']\n")
    error = config_error(path)
    assert error.startswith(f"{path}:3:") and "invalid YAML" in error
    assert not marker.exists()


def test_top_level_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- content: a.jpg\n- styles: b.jpg\n")
    assert config_error(path) == f"{path}: the pipeline must be a YAML mapping of settings, not a list"


def test_top_level_scalar_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "just some text\n")
    assert "must be a YAML mapping" in config_error(path)


def test_missing_pipeline_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert config_error(path) == f"{path}: pipeline file not found"


def test_unreadable_pipeline_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\xff")
    error = config_error(path)
    assert error.startswith(f"{path}: cannot read the pipeline file")


def test_pipeline_path_that_is_a_folder(tmp_path: Path) -> None:
    assert config_error(tmp_path).startswith(f"{tmp_path}: cannot read the pipeline file")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank-lines", "comment-only"])
def test_empty_file_is_an_error_about_the_missing_inputs(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    error = config_error(path)
    assert error.startswith(f"{path}: ") and "needs `content:`" in error


def test_format_loc() -> None:
    assert format_loc(("styles", 0, "path")) == "styles.0.path"
    assert format_loc(()) == "(top level)"


# --- --set overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("optimize.steps=50", ["optimize", "steps"], 50),
        ("styles.0.grid=3", ["styles", 0, "grid"], 3),
        ("optimize.lr=0.5", ["optimize", "lr"], 0.5),
        ("size.max_pixels=null", ["size", "max_pixels"], None),
        ("size.max_pixels=", ["size", "max_pixels"], None),
        ("content=[a.jpg, b.jpg]", ["content"], ["a.jpg", "b.jpg"]),
        ("cache.enabled=false", ["cache", "enabled"], False),
        ("network.device=cuda:1", ["network", "device"], "cuda:1"),
        ('output.pattern="{index}_{content}.{ext}"', ["output", "pattern"], "{index}_{content}.{ext}"),
        ("output.dir=a=b", ["output", "dir"], "a=b"),
        ("  optimize.seed =7", ["optimize", "seed"], 7),
        ("losses.style.layer_weights={relu1_1: 2}", ["losses", "style", "layer_weights"], {"relu1_1": 2}),
    ],
)
def test_parse_override(text: str, parts: list, value: object) -> None:
    assert parse_override(text) == (parts, value)


def test_parse_override_values_are_typed() -> None:
    assert type(parse_override("a=3")[1]) is int
    assert type(parse_override("a=3.0")[1]) is float
    assert type(parse_override("a='3'")[1]) is str


@pytest.mark.parametrize("text", ["foo", "=5", " =5", ""])
def test_parse_override_needs_key_equals_value(text: str) -> None:
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        parse_override(text)


def test_parse_override_value_that_is_not_yaml_is_a_string() -> None:
    assert parse_override("output.pattern={mode}/{content}.{ext}") == (["output", "pattern"], "{mode}/{content}.{ext}")
    assert parse_override("content=[a.jpg, b.jpg") == (["content"], "[a.jpg, b.jpg")


def test_apply_override_nested_and_creating_sections() -> None:
    raw: dict = {"optimize": {"steps": 10}, "size": None}
    apply_override(raw, ["optimize", "steps"], 50)
    apply_override(raw, ["postprocess", "preserve_colors"], "lab")
    apply_override(raw, ["size", "max_side"], 64)  # an empty (null) section is filled in
    apply_override(raw, ["a", "b", "c"], 1)
    assert raw == {"optimize": {"steps": 50}, "size": {"max_side": 64},
                   "postprocess": {"preserve_colors": "lab"}, "a": {"b": {"c": 1}}}


def test_apply_override_list_indices() -> None:
    raw: dict = {"styles": [{"path": "a.jpg"}, {"path": "b.jpg"}], "content": ["x.jpg"]}
    apply_override(raw, ["styles", 1, "grid"], 3)
    apply_override(raw, ["content", 0], "y.jpg")
    assert raw == {"styles": [{"path": "a.jpg"}, {"path": "b.jpg", "grid": 3}], "content": ["y.jpg"]}


@pytest.mark.parametrize(
    ("raw", "parts", "match"),
    [
        ({"styles": [{"path": "a.jpg"}]}, ["styles", 3, "grid"], "index 3 is past the end"),
        ({"content": ["a.jpg"]}, ["content", 5], "no such list item"),
        ({"content": ["a.jpg"]}, ["content", "name"], "no such list item"),
        ({"optimize": 5}, ["optimize", "steps"], "optimize is not a mapping"),
        ({"styles": [{"path": "a.jpg", "grid": 2}]}, ["styles", 0, "grid", "x"], "styles.0.grid is not a mapping"),
    ],
)
def test_apply_override_errors(raw: dict, parts: list, match: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(match)):
        apply_override(raw, parts, 1)


def test_shorthand_style_entries_grow_keys() -> None:
    raw: dict = {"styles": ["a.jpg", {"source": "image", "path": "b.jpg"}]}
    apply_override(raw, ["styles", 0, "grid"], 3)
    assert raw["styles"][0] == {"path": "a.jpg", "grid": 3}
    one: dict = {"styles": "a.jpg"}  # a single style written as a string
    apply_override(one, ["styles", 0, "name"], "mine")
    assert one == {"styles": [{"path": "a.jpg", "name": "mine"}]}


@pytest.mark.parametrize("override", ["styles.0.grid=3", "styles.1.grid=3"])
def test_grid_on_an_image_style_makes_it_tiled(tmp_path: Path, override: str) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles:\n  - a.jpg\n  - source: image\n    path: b.jpg\n")
    style = load_pipeline(path, [override]).config.styles[int(override[7])]
    assert style.source == "tiled" and style.params()["grid"] == 3


def test_command_line_paths_are_relative_to_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", "content: a.jpg\nstyles: b.jpg\noutput: {dir: out}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_pipeline(path, ["output.dir=big", "cache.dir=/abs/cache", "styles.0.path=c.jpg", "optimize.init=noise",
                               "output.pattern={content}.{ext}"]).config
    assert cfg.output.dir == str(tmp_path / "big") and cfg.cache.dir == "/abs/cache"
    assert cfg.styles[0].params()["path"] == str(tmp_path / "c.jpg")
    assert cfg.optimize.init == "noise" and cfg.output.pattern == "{content}.{ext}"  # not paths
    assert cfg.content == ["a.jpg"]  # what the file says stays relative to the file


def test_load_with_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, """
        content: a.jpg
        styles:
          - source: tiled
            path: b.jpg
            grid: 2
        optimize:
          steps: 10
        """)
    loaded = load_pipeline(path, [
        "optimize.steps=50",
        "optimize.lr=0.25",
        "styles.0.grid=3",
        "size.max_side=64",  # a section the file lacks
        "content=[a.jpg, c.jpg]",
        "postprocess.preserve_colors=null",
        "losses.tv.weight=1e-3",  # YAML 1.1 reads 1e-3 as text; pydantic makes it a float
    ])
    cfg = loaded.config
    assert cfg.optimize.steps == 50 and cfg.optimize.lr == 0.25
    assert cfg.styles[0].params() == {"path": "b.jpg", "grid": 3}
    assert cfg.size.max_side == 64 and cfg.size.max_pixels is None
    assert cfg.content == [str(Path.cwd() / "a.jpg"), str(Path.cwd() / "c.jpg")]  # command line: working directory
    assert cfg.postprocess.preserve_colors is None
    assert cfg.losses.tv.weight == pytest.approx(1e-3)
    # the file itself is untouched
    assert "steps: 10" in path.read_text()


def test_override_can_fix_a_bad_value_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles: b.jpg\nsize:\n  max_side: big\n")
    assert load_pipeline(path, ["size.max_side=64"]).config.size.max_side == 64


def test_later_override_wins(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_pipeline(path, ["optimize.steps=5", "optimize.steps=6"]).config.optimize.steps == 6


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("optimize.steps=0", "optimize.steps", "greater than or equal to 1"),
        ("optimize.stepz=5", "optimize.stepz", "Extra inputs are not permitted"),
        ("size.max_side=big", "size.max_side", "valid integer"),
        ("network.name=alexnet", "network.name", "'vgg19-gatys'"),
        ("output.quality=[1, 2]", "output.quality", "valid integer"),
    ],
)
def test_error_in_overridden_key_is_reported_as_from_set(tmp_path: Path, override: str, key: str, message: str) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles: b.jpg\noptimize:\n  steps: 10\nsize:\n  max_side: 64\n")
    error = config_error(path, (override,))
    assert error.startswith(f"--set: {key}: "), error
    assert message in error
    assert f"{path}:" not in error


def test_set_and_file_errors_are_told_apart(tmp_path: Path) -> None:
    path = write(tmp_path, "content: a.jpg\nstyles: b.jpg\noutput:\n  quality: 500\n")
    lines = config_error(path, ("optimize.steps=0",)).splitlines()
    assert sorted(line.split(": ")[0] for line in lines) == sorted(["--set", f"{path}:4:12"])


def test_bad_set_syntax_through_load_pipeline(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=r"^--set 'foo': expected KEY=VALUE"):
        load_pipeline(path, ["foo"])


def test_override_of_style_parameter_error_is_from_set(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "styles" / "the_scream.jpg", tmp_path / "b.jpg")
    path = write(tmp_path, "mode: palette\nstyles:\n  - source: tiled\n    path: b.jpg\n")
    with pytest.raises(ConfigError) as info:
        build_plan(load_pipeline(path, ["styles.0.grid=99"]), weights_id="test")
    assert str(info.value).startswith("--set: styles.0.grid: ")


# --- every mistake at once, with hints --------------------------------------------------------------


def test_four_mistakes_at_different_depths_are_reported_in_one_round(tmp_path: Path) -> None:
    from stylepipe.running.runner import load_checked

    (tmp_path / "photo.jpg").write_bytes((SAMPLES / "content" / "chelsea.jpg").read_bytes())
    path = write(tmp_path, """
        optimise: {steps: 3}
        content: [photo.jpg, missing.jpg]
        styles:
          - source: tiled
            path: photo.jpg
            gird: 3
        size: {max_side: 10}
        """)
    with pytest.raises(ConfigError) as info:
        load_checked(path)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:1:1: optimise: Extra inputs are not permitted (did you mean `optimize`?)",
        f"{path}:2:22: content.1: file not found: {tmp_path / 'missing.jpg'}",
        f"{path}:6:5: styles.0.gird: Extra inputs are not permitted (did you mean `grid`?)",
        f"{path}:7:18: size.max_side: Input should be greater than or equal to 32",
    ]


def test_misspelt_values_get_the_closest_name(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, MINIMAL + "mode: transfr\nnetwork: {pooling: mx}\n"))
    assert "mode: Input should be 'transfer', 'palette' or 'reconstruct' (did you mean `transfer`?)" in error
    assert "(did you mean `max`?)" in error
    error = config_error(write(tmp_path, MINIMAL + "losses:\n  style: {layers: [relu1_1, rleu2_1]}\n"))
    assert "unknown VGG19 layer(s) rleu2_1 (did you mean `relu2_1`?)" in error


@pytest.mark.parametrize("written", ["jpeg", "JPG", "Jpeg"])
def test_jpeg_is_accepted_for_jpg(tmp_path: Path, written: str) -> None:
    assert load_pipeline(write(tmp_path, MINIMAL + f"output: {{format: {written}}}\n")).config.output.format == "jpg"


@pytest.mark.parametrize(("fmt", "expected"), [("tif", "tiff"), ("TIFF", "tiff"), ("png", "png")])
def test_16_bits_and_a_dpi_for_the_formats_that_hold_them(tmp_path: Path, fmt: str, expected: str) -> None:
    output = load_pipeline(write(tmp_path, MINIMAL + f"output: {{format: {fmt}, bit_depth: 16, dpi: 300}}\n")).config.output
    assert (output.format, output.bit_depth, output.dpi) == (expected, 16, 300)
    defaults = load_pipeline(write(tmp_path, MINIMAL)).config.output
    assert (defaults.bit_depth, defaults.dpi) == (8, None)  # None: keep each content photo's own dpi


def test_a_16_bit_jpg_set_on_the_command_line_is_refused_there(tmp_path: Path) -> None:
    error = config_error(write(tmp_path, MINIMAL), ("output.bit_depth=16",))
    assert error == "--set: output.bit_depth: jpg holds 8 bits per channel; 16-bit output needs format png or tiff"
