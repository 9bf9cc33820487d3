"""The Ray Data stage: `read_images(folder).map_batches(StylizeBatch, …)` on a local Ray, the
network and the style taken once per actor (not per batch), the API's pixels; and the stage's
rows (arrays, paths, a driver's Style) without Ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylepipe import Stylizer
from stylepipe.ray_data import StylizeBatch

from conftest import CONTENT, sample

TINY = {"max_side": 32, "steps": 2}


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in CONTENT[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def test_read_images_map_batches_styles_a_folder_computing_the_targets_once_per_actor(photos: Path, local_ray) -> None:
    painting = str(sample("the_scream"))
    dataset = local_ray.data.read_images(str(photos), include_paths=True, mode="RGB")
    styled = dataset.map_batches(StylizeBatch, fn_constructor_kwargs={"style": painting, "stats": True, **TINY},
                                 batch_size=1, concurrency=1)
    rows = sorted(styled.take_all(), key=lambda row: row["path"])
    assert [Path(row["path"]).name for row in rows] == [path.name for path in CONTENT[:3]]
    assert sorted(row["batch"] for row in rows) == [1, 2, 3]  # three batches…
    assert {row["worker"] for row in rows} == {rows[0]["worker"]}  # …on one actor…
    assert {row["targets_computed"] for row in rows} == {1}  # …which took the style once
    stylizer = Stylizer(**TINY)
    for row in rows:
        image = row["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and max(image.shape[:2]) == 32
        expected = np.asarray(stylizer.stylize(np.asarray(Image.open(row["path"]).convert("RGB")), painting))
        assert np.abs(expected.astype(int) - image.astype(int)).max() <= 2  # the API's pixels (other thread counts)


def test_rows_of_paths_pass_their_columns_through_and_a_drivers_style_is_not_recomputed(photos: Path) -> None:
    style = Stylizer(**TINY).style(str(sample("shipwreck")))  # on the driver
    stage = StylizeBatch(style=style, stats=True, **TINY)
    assert stage.stylizer.targets_computed == 0  # the key matched: the targets travelled with the Style
    paths = np.array([str(path) for path in sorted(photos.glob("*.jpg"))])
    rows = stage({"path": paths, "id": np.arange(3)})
    assert rows["id"].tolist() == [0, 1, 2] and rows["path"].tolist() == paths.tolist()
    assert rows["image"].dtype == object and len(rows["image"]) == 3  # three sizes: one array each
    for path, image in zip(paths, rows["image"]):
        width, height = Image.open(path).size
        assert image.dtype == np.uint8 and max(image.shape[:2]) == 32 and image.shape[2] == 3
        assert (image.shape[1] > image.shape[0]) == (width > height)  # each keeps its own aspect ratio
    assert rows["targets_computed"].tolist() == [0, 0, 0] and rows["batch"].tolist() == [1, 1, 1]
    with pytest.raises(KeyError, match=r"neither 'image' \(pictures\) nor 'path' \(paths\); it has \['id'\]"):
        stage({"id": np.arange(2)})
