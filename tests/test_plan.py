"""plan.py: inputs expanded into jobs, outputs named safely, and resume decisions by fingerprint.

`build_plan` needs no network (the weights' identity is passed in) and never decodes a picture,
so these tests only hash the sample files that they copy into tmp_path.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

import stylepipe.plan.inputs as inputs_module
from stylepipe.config.load import load_pipeline
from stylepipe.core.errors import ConfigError
from stylepipe.core.optimize import Pyramid
from stylepipe.plan.build import build_plan
from stylepipe.plan.jobs import Plan
from stylepipe.plan.outputs import output_path, safe_name
from stylepipe.plan.resume import is_done, sidecar_path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
CONTENT_NAMES = ["astronaut", "chelsea", "coffee", "tubingen"]
STYLE_NAMES = ["shipwreck", "starry_night", "the_scream", "woman-with-hat-matisse"]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project folder: content/ and styles/ with copies of the sample pictures."""
    root = tmp_path / "project"
    for kind in ("content", "styles"):
        (root / kind).mkdir(parents=True)
        for picture in sorted((SAMPLES / kind).glob("*.jpg")):
            shutil.copy(picture, root / kind / picture.name)
    return root


def write(folder: Path, text: str) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def make(folder: Path, text: str, *overrides: str, force: bool = False, weights_id: str = "test") -> Plan:
    return build_plan(load_pipeline(write(folder, text), overrides), weights_id=weights_id, force=force)


def plan_error(folder: Path, text: str, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        make(folder, text, *overrides)
    return str(info.value)


def stems(paths) -> list[str]:
    return [Path(p).stem for p in paths]


def contents(plan: Plan) -> list[Path | None]:
    return list(dict.fromkeys(job.content for job in plan.jobs))


BASIC = """
content: content/chelsea.jpg
styles: styles/the_scream.jpg
"""


# --- inputs ------------------------------------------------------------------------------------


def test_folder_expands_to_its_pictures_sorted(project: Path) -> None:
    (project / "content" / "notes.txt").write_text("not a picture")
    (project / "content" / "sub").mkdir()
    shutil.copy(project / "content" / "chelsea.jpg", project / "content" / "sub" / "hidden.jpg")
    shutil.copy(project / "content" / "coffee.jpg", project / "content" / "zebra.JPEG")
    plan = make(project, "content: content\nstyles: styles/the_scream.jpg\n")
    assert stems(contents(plan)) == CONTENT_NAMES + ["zebra"]  # not notes.txt, not sub/
    assert all(p.parent == project / "content" for p in contents(plan))


def test_glob_only_picture_suffixes_sorted(project: Path) -> None:
    (project / "content" / "chelsea.txt").write_text("x")
    (project / "content" / "cat.json").write_text("{}")
    plan = make(project, 'content: "content/c*"\nstyles: styles/the_scream.jpg\n')
    assert stems(contents(plan)) == ["chelsea", "coffee"]


def test_recursive_glob(project: Path) -> None:
    nested = project / "content" / "a" / "b"
    nested.mkdir(parents=True)
    shutil.copy(project / "content" / "chelsea.jpg", nested / "deep.png")
    plan = make(project, 'content: "content/**/*.png"\nstyles: styles/the_scream.jpg\n')
    assert contents(plan) == [nested / "deep.png"]


def test_inputs_are_deduplicated_in_first_seen_order(project: Path) -> None:
    plan = make(project, """
        content:
          - content/tubingen.jpg
          - content
          - "content/c*.jpg"
          - content/chelsea.jpg
        styles: styles/the_scream.jpg
        """)
    assert stems(contents(plan)) == ["tubingen", "astronaut", "chelsea", "coffee"]
    assert len(plan.jobs) == 4


def test_explicit_file_is_taken_whatever_its_suffix(project: Path) -> None:
    shutil.copy(project / "content" / "chelsea.jpg", project / "content" / "cat.picture")
    plan = make(project, "content: content/cat.picture\nstyles: styles/the_scream.jpg\n")
    assert contents(plan) == [project / "content" / "cat.picture"]


def test_glob_matching_nothing_names_the_entry_and_line(project: Path) -> None:
    text = 'content:\n  - content/chelsea.jpg\n  - "content/*.gif"\nstyles: styles/the_scream.jpg\n'
    error = plan_error(project, text)
    assert error.startswith(f"{project / 'pipeline.yaml'}:3:5: content.1: no pictures match 'content/*.gif'"), error


def test_folder_without_pictures_is_an_error(project: Path) -> None:
    (project / "empty").mkdir()
    error = plan_error(project, "content: [empty]\nstyles: styles/the_scream.jpg\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:1:11: content.0: no pictures match 'empty'"), error


def test_missing_content_file_names_the_entry_and_line(project: Path) -> None:
    error = plan_error(project, "content:\n  - content/nosuch.jpg\nstyles: styles/the_scream.jpg\n")
    assert error == f"{project / 'pipeline.yaml'}:2:5: content.0: file not found: {project / 'content' / 'nosuch.jpg'}"


def test_missing_first_style_file(project: Path) -> None:
    error = plan_error(project, "content: content/chelsea.jpg\nstyles:\n  - styles/nosuch.jpg\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:3:5: styles.0.path: ")
    assert "nosuch.jpg" in error


def test_missing_later_style_file_names_its_own_index_and_line(project: Path) -> None:
    error = plan_error(project, """
        content: content/chelsea.jpg
        styles:
          - styles/the_scream.jpg
          - styles/shipwreck.jpg
          - styles/nosuch.jpg
        """)
    assert "styles.2" in error and "nosuch.jpg" in error, error
    assert error.startswith(f"{project / 'pipeline.yaml'}:5:"), error


def test_missing_tiled_style_file_names_its_index(project: Path) -> None:
    error = plan_error(project, """
        content: content/chelsea.jpg
        styles:
          - styles/the_scream.jpg
          - {source: tiled, path: styles/nosuch.jpg}
        """)
    assert error.startswith(f"{project / 'pipeline.yaml'}:4:5: styles.1: style file not found: "), error


def test_missing_blend_part_names_its_style(project: Path) -> None:
    error = plan_error(project, """
        mode: palette
        styles:
          - source: blend
            styles: [{path: styles/the_scream.jpg}, {path: styles/gone.jpg}]
        """)
    assert "styles.0: style file not found" in error and "gone.jpg" in error


def test_unknown_style_source_names_the_key(project: Path) -> None:
    error = plan_error(project, "content: content/chelsea.jpg\nstyles:\n  - source: nosuch\n    path: x.jpg\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:3:13: styles.0.source: unknown style source 'nosuch'")
    assert "image" in error and "tiled" in error and "blend" in error


def test_image_style_folder_gives_one_style_per_picture(project: Path) -> None:
    plan = make(project, "content: content/chelsea.jpg\nstyles:\n  - styles\n")
    assert [job.style_label for job in plan.jobs] == STYLE_NAMES
    # a long form names one picture: a name cannot label four styles
    assert "is a folder" in plan_error(project, "content: content/chelsea.jpg\nstyles:\n  - path: styles\n    name: ignored\n")


# --- jobs per mode -------------------------------------------------------------------------------


def test_transfer_jobs_are_content_times_style(project: Path) -> None:
    plan = make(project, """
        content: ["content/chelsea.jpg", "content/coffee.jpg", "content/tubingen.jpg"]
        styles: ["styles/the_scream.jpg", "styles/shipwreck.jpg"]
        """)
    pairs = [(job.content.stem, job.style_label) for job in plan.jobs]
    assert pairs == [(c, s) for c in ("chelsea", "coffee", "tubingen") for s in ("the_scream", "shipwreck")]
    assert [job.index for job in plan.jobs] == list(range(6))
    assert [t.name for t in plan.terms] == ["content", "style", "tv"]
    assert plan.settings.mode == "transfer" and plan.settings.init == "content"
    assert plan.todo == plan.jobs and plan.done == []
    assert all(job.error is None and job.fingerprint for job in plan.jobs)
    assert len({job.fingerprint for job in plan.jobs}) == 6


def test_palette_mode_one_job_per_style_without_content(project: Path) -> None:
    plan = make(project, """
        mode: palette
        content: content/nosuch.jpg  # not used, so not looked for
        styles: [styles/the_scream.jpg, styles/shipwreck.jpg]
        """)
    assert [(job.content, job.style_label) for job in plan.jobs] == [(None, "the_scream"), (None, "shipwreck")]
    assert [t.name for t in plan.terms] == ["style", "tv"]
    assert plan.settings.init == "noise"
    assert [job.output.name for job in plan.jobs] == ["palette__the_scream.jpg", "palette__shipwreck.jpg"]
    assert plan.jobs[0].content_label == "-"


def test_reconstruct_content_sweeps_each_layer_alone_per_photo(project: Path) -> None:
    plan = make(project, """
        mode: reconstruct
        reconstruct: content
        content: [content/chelsea.jpg, content/coffee.jpg]
        styles: [styles/the_scream.jpg, styles/shipwreck.jpg]
        losses:
          tv: {weight: 0.5}
        """)
    layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    assert [(job.content.stem, job.style, job.layers) for job in plan.jobs] == [
        (photo, None, layer) for photo in ("chelsea", "coffee") for layer in layers]
    assert [[(t.name, list(t.layers)) for t in job.sweep.terms] for job in plan.jobs[:2]] == [
        [("content", ["conv1_1"]), ("tv", [])], [("content", ["conv2_1"]), ("tv", [])]]
    assert not any(t.side == "style" for t in plan.terms)
    assert plan.settings.init == "noise" and plan.settings.mode == "reconstruct-content"
    assert [job.output.name for job in plan.jobs[:2]] == ["chelsea__reconstruct-content__conv1_1.jpg",
                                                         "chelsea__reconstruct-content__conv2_1.jpg"]
    assert plan.jobs[0].style_ref is None and len({job.fingerprint for job in plan.jobs}) == 10


def test_reconstruct_style_sweeps_growing_layer_sets_per_style(project: Path) -> None:
    plan = make(project, "mode: reconstruct\nreconstruct: {side: style, layers: [conv1_1, conv2_1, conv3_1]}\n"
                         "styles: [styles/the_scream.jpg]\n")
    assert [(job.content, job.style_label, job.layers) for job in plan.jobs] == [
        (None, "the_scream", "conv1_1"), (None, "the_scream", "conv1_1+conv2_1"), (None, "the_scream", "conv1_1+conv2_1+conv3_1")]
    assert [(t.name, list(t.layers)) for t in plan.terms] == [("style", ["conv1_1", "conv2_1", "conv3_1"]), ("tv", [])]  # targets once
    assert plan.settings.init == "noise"
    assert plan.jobs[1].output.name == "the_scream__reconstruct-style__conv1_1+conv2_1.jpg"


def test_reconstruct_both_sides_and_palette_differ(project: Path) -> None:
    both = make(project, "mode: reconstruct\nreconstruct: both\ncontent: content/chelsea.jpg\nstyles: styles/the_scream.jpg\n")
    assert [job.sweep.side for job in both.jobs] == ["content"] * 5 + ["style"] * 5
    palette = make(project, "mode: palette\nstyles: styles/the_scream.jpg\n")
    assert palette.jobs[0].fingerprint not in {job.fingerprint for job in both.jobs}


def test_modes_warn_about_settings_they_ignore(project: Path) -> None:
    plan = make(project, "mode: palette\ncontent: content/chelsea.jpg\nstyles: styles/the_scream.jpg\n"
                         "optimize: {init: content}\n")
    assert len(plan.warnings) == 2
    assert "pipeline.yaml:2:10: `content:` is not used by mode palette" in plan.warnings[0]
    assert "optimize.init: content is ignored" in plan.warnings[1]
    assert make(project, "mode: palette\nstyles: styles/the_scream.jpg\n").warnings == []


def test_no_active_term_is_an_error(project: Path) -> None:
    error = plan_error(project, "mode: palette\nstyles: styles/the_scream.jpg\nlosses:\n  style: {weight: 0}\n")
    assert "losses: no content or style term is active in mode palette" in error


def test_init_picture_is_resolved_and_hashed(project: Path) -> None:
    plan = make(project, BASIC + "optimize:\n  init: styles/shipwreck.jpg\n")
    assert plan.settings.init == "image" and plan.settings.init_path == project / "styles" / "shipwreck.jpg"
    error = plan_error(project, BASIC + "optimize:\n  init: nosuch.png\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:4:9: optimize.init: ")


# --- output naming ---------------------------------------------------------------------------------


def test_default_output_names(project: Path) -> None:
    plan = make(project, "content: [content/chelsea.jpg, content/coffee.jpg]\nstyles: styles/the_scream.jpg\n")
    out = project / "outputs"
    assert plan.output_dir == out.resolve()
    assert [job.output for job in plan.jobs] == [out / "chelsea__the_scream.jpg", out / "coffee__the_scream.jpg"]


def test_pattern_fields_index_mode_ext(project: Path) -> None:
    plan = make(project, BASIC + "output:\n  dir: results\n  format: png\n  pattern: '{index}-{mode}-{content}-{style}.{ext}'\n")
    assert plan.jobs[0].output == project / "results" / "00000-transfer-chelsea-the_scream.png"


def test_pattern_with_subfolders(project: Path) -> None:
    plan = make(project, BASIC + "output:\n  pattern: '{style}/{content}.{ext}'\n")
    job = plan.jobs[0]
    assert job.output == project / "outputs" / "the_scream" / "chelsea.jpg"
    assert sidecar_path(plan.output_dir, job.output) == project / "outputs" / ".stylepipe" / "the_scream" / "chelsea.jpg.json"


def test_output_dir_argument_overrides_config(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    plan = build_plan(load_pipeline(write(project, BASIC)), weights_id="test", output_dir=other)
    assert plan.output_dir == other.resolve() and plan.jobs[0].output.parent == other.resolve()


def test_unsafe_style_name_cannot_escape_the_output_folder(project: Path) -> None:
    plan = make(project, """
        content: content/chelsea.jpg
        output: {dir: out}
        styles:
          - path: styles/the_scream.jpg
            name: "../../evil"
          - path: styles/shipwreck.jpg
            name: "/etc/passwd"
          - path: styles/starry_night.jpg
            name: "Starry night, Van Gogh (1889) ★"
        """)
    out = (project / "out").resolve()
    for job in plan.jobs:
        assert job.output.resolve().parent == out, job.output
        assert "/" not in job.output.name and ".." not in job.output.name
    assert [job.output.name for job in plan.jobs] == [
        "chelsea__evil.jpg", "chelsea__etc_passwd.jpg", "chelsea__Starry night, Van Gogh (1889) ★.jpg"]
    assert [job.style_label for job in plan.jobs][0] == "../../evil"  # the label itself is kept for reports


@pytest.mark.parametrize(
    ("label", "safe"),
    [("../../evil", "evil"), ("..", "_"), ("", "_"), ("a b/c\\d", "a b_c_d"), (".hidden", "hidden"),
     ("x+y-z.1", "x+y-z.1"), ("é", "é"), ("e\u0301", "é"), ("a" * 300, "a" * 120), ("猫" * 50, "猫" * 40),
     ('a<b>c:d"e|f?g*h\x00i\x1fj', "a_b_c_d_e_f_g_h_i_j"), ("nul", "_nul"), ("mon été 2024", "mon été 2024")],
)
def test_safe_name(label: str, safe: str) -> None:
    assert safe_name(label) == safe


def test_output_path_stays_inside_whatever_the_fields(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for evil in ("../../x", "/abs", "..", "a/../../b", "\x00", "~"):
        path = output_path(out, "{content}/{style}.jpg", {"content": evil, "style": evil})
        assert out.resolve() in path.parents


def test_output_path_refuses_a_pattern_that_names_the_folder_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside"):
        output_path(tmp_path / "out", "", {"content": "a"})


def test_same_stem_in_two_folders_is_a_collision(project: Path) -> None:
    (project / "more").mkdir()
    shutil.copy(project / "content" / "coffee.jpg", project / "more" / "chelsea.jpg")
    error = plan_error(project, "content: [content/chelsea.jpg, more/chelsea.jpg]\nstyles: styles/the_scream.jpg\n")
    assert "output.pattern" in error and "chelsea__the_scream.jpg" in error
    assert str(project / "content" / "chelsea.jpg") in error and str(project / "more" / "chelsea.jpg") in error
    # {index} makes the names distinct again
    plan = make(project, "content: [content/chelsea.jpg, more/chelsea.jpg]\nstyles: styles/the_scream.jpg\n",
                "output.pattern='{index}_{content}__{style}.{ext}'")
    assert len({job.output for job in plan.jobs}) == 2


def test_pattern_without_style_collides_across_styles(project: Path) -> None:
    error = plan_error(project, "content: content/chelsea.jpg\nstyles: [styles/the_scream.jpg, styles/shipwreck.jpg]\n"
                       "output: {pattern: '{content}.jpg'}\n")
    assert "would both write chelsea.jpg" in error


@pytest.mark.parametrize("pattern", ["{author}.jpg", "{0}.jpg", "{content!z}.jpg", "{content"])
def test_unknown_or_broken_pattern_field_is_a_config_error(project: Path, pattern: str) -> None:
    error = plan_error(project, BASIC, f"output.pattern='{pattern}'")
    assert "output.pattern" in error


def test_attribute_in_pattern_is_a_config_error(project: Path) -> None:
    error = plan_error(project, BASIC, "output.pattern='{content.nope}.jpg'")
    assert "output.pattern" in error


# --- paths are relative to the pipeline file -------------------------------------------------------


def test_paths_are_relative_to_the_yaml_folder_not_the_cwd(project: Path, tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(project / "content" / "coffee.jpg", elsewhere / "chelsea.jpg")  # a decoy in the cwd
    monkeypatch.chdir(elsewhere)
    path = write(project, """
        content: content/chelsea.jpg
        styles: [styles/the_scream.jpg, {source: tiled, path: styles/shipwreck.jpg}]
        output: {dir: results}
        cache: {dir: my-cache}
        """)
    plan = build_plan(load_pipeline(path), weights_id="test")
    assert plan.jobs[0].content == project / "content" / "chelsea.jpg"
    assert [s.files() for s in (job.style for job in plan.jobs)] == [
        [project / "styles" / "the_scream.jpg"], [project / "styles" / "shipwreck.jpg"]]
    assert plan.output_dir == (project / "results").resolve()
    assert plan.pipeline.resolve(plan.pipeline.config.cache.dir) == project / "my-cache"


def test_relative_pipeline_path_is_pinned_at_load_time(project: Path, tmp_path: Path, monkeypatch) -> None:
    write(project, BASIC)
    monkeypatch.chdir(project.parent)
    loaded = load_pipeline("project/pipeline.yaml")
    monkeypatch.chdir(tmp_path.parent)  # somewhere else entirely before the plan is built
    plan = build_plan(loaded, weights_id="test")
    assert plan.jobs[0].content == project.resolve() / "content" / "chelsea.jpg"


def test_pipeline_folder_with_glob_characters(tmp_path: Path) -> None:
    root = tmp_path / "shoot [2024]"
    root.mkdir()
    shutil.copy(SAMPLES / "content" / "chelsea.jpg", root / "chelsea.jpg")
    shutil.copy(SAMPLES / "styles" / "the_scream.jpg", root / "the_scream.jpg")
    plan = make(root, "content: [chelsea.jpg, '*.jpg']\nstyles: the_scream.jpg\n")
    assert [job.content for job in plan.jobs] == [root / "chelsea.jpg", root / "the_scream.jpg"]


# --- resume ------------------------------------------------------------------------------------------


def finish(plan: Plan, index: int = 0, fingerprint: str | None = None) -> None:
    """Pretend a job ran: its output and a sidecar with the fingerprint that made it."""
    job = plan.jobs[index]
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.output.write_bytes(b"picture")
    side = sidecar_path(plan.output_dir, job.output)
    side.parent.mkdir(parents=True, exist_ok=True)
    side.write_text(json.dumps({"fingerprint": fingerprint or job.fingerprint}))


def test_sidecar_path(project: Path) -> None:
    plan = make(project, BASIC)
    assert sidecar_path(plan.output_dir, plan.jobs[0].output) == (
        project / "outputs" / ".stylepipe" / "chelsea__the_scream.jpg.json").resolve()


def test_is_done_needs_output_and_matching_sidecar(project: Path) -> None:
    plan = make(project, BASIC)
    job = plan.jobs[0]
    out = plan.output_dir
    assert not is_done(out, job.output, job.fingerprint)
    job.output.parent.mkdir(parents=True)
    job.output.write_bytes(b"picture")
    assert not is_done(out, job.output, job.fingerprint), "an output without a sidecar was made by something else"
    side = sidecar_path(out, job.output)
    side.parent.mkdir()
    for bad in ("{not json", "[]", json.dumps({"fingerprint": "0" * 64}), json.dumps({"other": job.fingerprint})):
        side.write_text(bad)
        assert not is_done(out, job.output, job.fingerprint), bad
    side.write_text(json.dumps({"fingerprint": job.fingerprint, "loss": {}}))
    assert is_done(out, job.output, job.fingerprint)
    job.output.unlink()
    assert not is_done(out, job.output, job.fingerprint), "a sidecar without its output is not done"


def test_done_jobs_are_skipped_unless_forced(project: Path) -> None:
    text = "content: [content/chelsea.jpg, content/coffee.jpg]\nstyles: styles/the_scream.jpg\n"
    first = make(project, text)
    finish(first, 1)
    again = make(project, text)
    assert [job.index for job in again.done] == [1]
    assert [job.index for job in again.todo] == [0]
    forced = make(project, text, force=True)
    assert forced.done == [] and forced.todo == forced.jobs


def test_fingerprints_are_stable_across_loads(project: Path) -> None:
    text = "content: content\nstyles: [styles/the_scream.jpg, {source: tiled, path: styles/shipwreck.jpg, grid: 3}]\n"
    a, b = make(project, text), make(project, text)
    assert [j.fingerprint for j in a.jobs] == [j.fingerprint for j in b.jobs]
    assert all(len(j.fingerprint) == 64 for j in a.jobs)


@pytest.mark.parametrize(
    "override",
    [
        "optimize.steps=7",
        "optimize.optimizer=adam",
        "optimize.seed=1",
        "losses.style.weight=5",
        "losses.content.weight=2",
        "losses.content.layers=[relu3_2]",
        "losses.tv.weight=0.1",
        "size.max_side=128",
        "size.style_scale=2",
        "output.format=png",
        "output.quality=80",
        "network.pooling=max",
        "postprocess.preserve_colors=lab",
        "styles.0.grid=4",
    ],
)
def test_settings_that_matter_change_the_fingerprint(project: Path, override: str) -> None:
    text = "content: content/chelsea.jpg\nstyles:\n  - {source: tiled, path: styles/the_scream.jpg, grid: 2}\n"
    base = make(project, text)
    finish(base)
    changed = make(project, text, override)
    assert changed.jobs[0].fingerprint != base.jobs[0].fingerprint
    assert changed.done == [] and not is_done(changed.output_dir, changed.jobs[0].output, changed.jobs[0].fingerprint)


def test_style_layer_weights_change_the_fingerprint(project: Path) -> None:
    base = make(project, BASIC)
    changed = make(project, BASIC, "losses.style.layer_weights={relu1_1: 10}")
    assert changed.jobs[0].fingerprint != base.jobs[0].fingerprint


def test_blend_weight_changes_the_fingerprint(project: Path) -> None:
    text = """
        mode: palette
        styles:
          - source: blend
            styles: [{path: styles/the_scream.jpg, weight: WEIGHT}, {path: styles/shipwreck.jpg}]
        """
    one = make(project, text.replace("WEIGHT", "1"))
    two = make(project, text.replace("WEIGHT", "2"))
    assert one.jobs[0].fingerprint != two.jobs[0].fingerprint


def test_input_bytes_and_network_change_the_fingerprint(project: Path) -> None:
    base = make(project, BASIC)
    finish(base)
    assert make(project, BASIC).done, "unchanged: done"
    assert make(project, BASIC, weights_id="other-weights").done == []
    content = project / "content" / "chelsea.jpg"
    original = content.read_bytes()
    content.write_bytes(original + b"\0")
    assert make(project, BASIC).jobs[0].fingerprint != base.jobs[0].fingerprint
    content.write_bytes(original)
    assert make(project, BASIC).jobs[0].fingerprint == base.jobs[0].fingerprint
    style = project / "styles" / "the_scream.jpg"
    style.write_bytes(style.read_bytes() + b"\0")
    assert make(project, BASIC).jobs[0].fingerprint != base.jobs[0].fingerprint


def test_init_picture_bytes_change_the_fingerprint(project: Path) -> None:
    text = BASIC + "optimize: {init: styles/shipwreck.jpg}\n"
    base = make(project, text)
    init = project / "styles" / "shipwreck.jpg"
    init.write_bytes(init.read_bytes() + b"\0")
    assert make(project, text).jobs[0].fingerprint != base.jobs[0].fingerprint


def test_where_it_runs_does_not_change_the_fingerprint(project: Path, tmp_path: Path) -> None:
    base = make(project, BASIC)
    assert make(project, BASIC, "network.device=cpu").jobs[0].fingerprint == base.jobs[0].fingerprint
    moved = build_plan(load_pipeline(write(project, BASIC)), weights_id="test", output_dir=tmp_path / "o")
    assert moved.jobs[0].fingerprint == base.jobs[0].fingerprint


def test_unreadable_content_gives_a_job_error_not_an_exception(project: Path, monkeypatch) -> None:
    real = inputs_module.sha256_file
    bad = project / "content" / "coffee.jpg"

    def flaky(path: Path) -> str:
        if Path(path) == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(inputs_module, "sha256_file", flaky)
    text = "content: [content/chelsea.jpg, content/coffee.jpg]\nstyles: [styles/the_scream.jpg, styles/shipwreck.jpg]\n"
    plan = make(project, text)
    assert len(plan.jobs) == 4
    by_content = {}
    for job in plan.jobs:
        by_content.setdefault(job.content.stem, []).append(job)
    for job in by_content["coffee"]:
        assert job.fingerprint is None
        assert job.error == f"{bad}: cannot read (Permission denied)"
    for job in by_content["chelsea"]:
        assert job.error is None and job.fingerprint
    assert plan.done == [] and len(plan.todo) == 4


def test_unreadable_style_fails_only_its_jobs(project: Path, monkeypatch) -> None:
    real = inputs_module.sha256_file
    bad = project / "styles" / "shipwreck.jpg"
    monkeypatch.setattr(inputs_module, "sha256_file", lambda p: (_ for _ in ()).throw(OSError(5, "I/O error")) if Path(p) == bad else real(p))
    plan = make(project, "content: content/chelsea.jpg\nstyles: [styles/the_scream.jpg, styles/shipwreck.jpg]\n")
    assert [job.error is None for job in plan.jobs] == [True, False]
    assert "shipwreck.jpg: cannot read (I/O error)" in plan.jobs[1].error


# --- style sources: labels ---------------------------------------------------------------------------


def test_tiled_and_blend_labels(project: Path) -> None:
    plan = make(project, """
        mode: palette
        styles:
          - source: tiled
            path: styles/shipwreck.jpg
            grid: 3
          - source: tiled
            path: styles/the_scream.jpg
          - source: blend
            styles:
              - {path: styles/starry_night.jpg, weight: 2}
              - {path: styles/the_scream.jpg, grid: 2}
        """)
    assert [job.style_label for job in plan.jobs] == ["shipwreck-tiled3", "the_scream-tiled2", "starry_night+the_scream"]
    assert [job.output.name for job in plan.jobs] == [
        "palette__shipwreck-tiled3.jpg", "palette__the_scream-tiled2.jpg", "palette__starry_night+the_scream.jpg"]
    blend = plan.jobs[2].style
    assert blend.files() == [project / "styles" / "starry_night.jpg", project / "styles" / "the_scream.jpg"]


def test_name_overrides_the_label(project: Path) -> None:
    plan = make(project, """
        mode: palette
        styles:
          - {source: tiled, path: styles/shipwreck.jpg, name: waves}
          - {source: blend, name: mix, styles: [{path: styles/shipwreck.jpg}, {path: styles/the_scream.jpg}]}
          - {path: styles/the_scream.jpg, name: scream}
        """)
    assert [job.style_label for job in plan.jobs] == ["waves", "mix", "scream"]
    assert [job.output.name for job in plan.jobs] == ["palette__waves.jpg", "palette__mix.jpg", "palette__scream.jpg"]


def test_duplicate_label_is_an_error(project: Path) -> None:
    path = project / "pipeline.yaml"
    error = plan_error(project, "content: content/chelsea.jpg\nstyles:\n  - styles/the_scream.jpg\n  - styles/the_scream.jpg\n")
    assert error.startswith(f"{path}:3:3: styles: two styles share the label 'the_scream'")
    error = plan_error(project, "content: content/chelsea.jpg\nstyles:\n  - styles/the_scream.jpg\n"
                       "  - {path: styles/shipwreck.jpg, name: the_scream}\n")
    assert "two styles share the label 'the_scream'" in error
    # the same picture twice is fine once one has a name of its own
    plan = make(project, "content: content/chelsea.jpg\nstyles:\n  - styles/the_scream.jpg\n"
                "  - {path: styles/the_scream.jpg, name: again}\n")
    assert [job.style_label for job in plan.jobs] == ["the_scream", "again"]


def test_blend_needs_two_parts(project: Path) -> None:
    error = plan_error(project, "mode: palette\nstyles:\n  - source: blend\n    styles: [{path: styles/the_scream.jpg}]\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:4:13: styles.0.styles: ")


# --- defaults by mode (stylepipe/config/defaults.py) ------------------------------------------------------
def test_transfer_defaults_are_50_single_scale_steps(project: Path) -> None:
    plan = make(project, """
        content: content/
        styles: [styles/the_scream.jpg]
        """)
    assert plan.settings.optimize.steps == 50
    assert plan.settings.pyramid == Pyramid(levels=1)
    assert [(t.name, t.weight) for t in plan.terms] == [("content", 1.0), ("style", 200.0), ("tv", 10.0)]


def test_noise_start_modes_default_to_350_steps_coarse_to_fine_from_soft_noise(project: Path) -> None:
    plan = make(project, """
        mode: palette
        styles: [styles/the_scream.jpg]
        """)
    assert plan.settings.optimize.steps == 350
    assert plan.settings.pyramid == Pyramid(levels=3, factor=2.0)
    assert plan.settings.pyramid.split(350, 3) == [200, 100, 50]
    assert plan.settings.init == "noise" and plan.settings.noise == 0.3


def test_explicit_settings_beat_the_mode_defaults(project: Path) -> None:
    plan = make(project, """
        mode: palette
        styles: [styles/the_scream.jpg]
        optimize: {steps: 20, noise: 1.0, pyramid: {levels: 2}}
        """)
    assert plan.settings.optimize.steps == 20 and plan.settings.noise == 1.0
    assert plan.settings.pyramid == Pyramid(levels=2, factor=2.0)
    transfer = make(project, """
        content: content/
        styles: [styles/the_scream.jpg]
        """, "optimize.pyramid.levels=3")
    assert transfer.settings.optimize.steps == 50 and transfer.settings.pyramid.levels == 3


# --- names in any alphabet -------------------------------------------------------------------------


def test_output_names_keep_letters_of_every_alphabet(project: Path) -> None:
    (project / "mine").mkdir()
    for name in ("mon été 2024.jpg", "猫.jpg", "犬.jpg"):
        shutil.copy(project / "content" / "chelsea.jpg", project / "mine" / name)
    plan = make(project, "content: mine\nstyles: styles/the_scream.jpg\n")
    names = sorted(job.output.name for job in plan.jobs)
    assert names == ["mon été 2024__the_scream.jpg", "犬__the_scream.jpg", "猫__the_scream.jpg"]


def test_a_collision_of_the_default_pattern_says_so_and_suggests_index_or_stem_hash(project: Path) -> None:
    (project / "mine").mkdir()
    for name in ("a:b.jpg", "a?b.jpg"):
        shutil.copy(project / "content" / "chelsea.jpg", project / "mine" / name)
    error = plan_error(project, "content: mine\nstyles: styles/the_scream.jpg\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}: output.pattern is not set, and the default pattern"), error
    assert ":1:1:" not in error and "would both write a_b__the_scream.jpg" in error
    assert "{index}" in error and "'{content}-{stem_hash}__{style}.{ext}'" in error
    plan = make(project, "content: mine\nstyles: styles/the_scream.jpg\n", "output.pattern={content}-{stem_hash}__{style}.{ext}")
    assert len({job.output for job in plan.jobs}) == 2


def test_a_collision_of_a_set_pattern_points_at_its_line(project: Path) -> None:
    error = plan_error(project, "content: content/chelsea.jpg\nstyles: [styles/the_scream.jpg, styles/shipwreck.jpg]\n"
                       "output:\n  format: jpg\n  pattern: '{content}.jpg'\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:5:12: output.pattern: "), error
    assert "would both write chelsea.jpg" in error and "{stem_hash}" in error


# --- style folders: only the shorthand expands ---------------------------------------------------------


@pytest.mark.parametrize("path", ["styles", "styles/", "styles/s*.jpg"])
def test_a_folder_or_glob_in_a_long_form_style_is_refused_pointing_to_the_shorthand(project: Path, path: str) -> None:
    error = plan_error(project, f"content: content/chelsea.jpg\nstyles:\n  - source: image\n    path: {path}\n")
    assert error.startswith(f"{project / 'pipeline.yaml'}:4:11: styles.0.path: {path!r} is a "), error
    assert f"write the path alone as a list item (`- {path}`)" in error
    shorthand = make(project, f"content: content/chelsea.jpg\nstyles:\n  - {path}\n")
    assert len(shorthand.jobs) == (2 if "*" in path else 4)  # the bare path: one style per picture
    one = make(project, "content: content/chelsea.jpg\nstyles:\n  - {source: image, path: styles/shipwreck.jpg, name: ship}\n")
    assert [job.style_label for job in one.jobs] == ["ship"]
