import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fastddpm.conditions import CLASS_INDEX
from fastddpm.data import reader
from fastddpm.errors import UsageError


@pytest.fixture()
def data_copy(tiny_data, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_data, root)
    (root / reader.CACHE_NAME).unlink(missing_ok=True)
    return root


def test_round_trip(data_copy):
    data = reader.load_dataset(data_copy)
    train = json.loads((data_copy / "train.json").read_text())
    assert data.images.shape == (9, 3, 64, 64) and data.images.dtype == torch.uint8
    assert data.names == list(train)
    for i, name in enumerate(data.names):
        assert data.labels[i].sum() == len(train[name])
        assert all(data.labels[i, CLASS_INDEX[n]] == 1 for n in train[name])
    with Image.open(data_copy / "iclevr" / data.names[4]) as img:
        expected = torch.from_numpy(np.array(img.resize((64, 64), Image.BILINEAR))).permute(2, 0, 1)
    assert torch.equal(data.images[4], expected)
    x = reader.to_model_range(data.images)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(reader.to_uint8(x), data.images)


def test_cache_is_used_then_invalidated(data_copy):
    first = reader.load_dataset(data_copy)
    cache = data_copy / reader.CACHE_NAME
    assert cache.is_file()
    again = reader.load_dataset(data_copy)
    assert torch.equal(first.images, again.images)
    # Replace one image by an RGBA image of another colour: the cache must notice and alpha is dropped.
    name = first.names[0]
    Image.new("RGBA", (320, 240), (200, 10, 10, 128)).save(data_copy / "iclevr" / name)
    os.utime(data_copy / "iclevr" / name, ns=(1, 1))
    changed = reader.load_dataset(data_copy)
    assert changed.images[0, :, 32, 32].tolist() == [200, 10, 10]
    assert torch.equal(changed.images[1:], first.images[1:])


def test_missing_and_unreadable_images(data_copy):
    names = list(json.loads((data_copy / "train.json").read_text()))
    (data_copy / "iclevr" / names[2]).unlink()
    with pytest.raises(UsageError, match=f"missing.*{names[2]}"):
        reader.load_dataset(data_copy)
    (data_copy / "iclevr" / names[2]).write_bytes(b"garbage")
    with pytest.raises(UsageError, match=f"cannot be read.*{names[2]}"):
        reader.load_dataset(data_copy)


def test_foreign_folders(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        reader.load_dataset(tmp_path / "nope")
    with pytest.raises(UsageError, match="not an i-CLEVR folder"):
        reader.load_dataset(tmp_path)


def test_reads_the_course_label_layout(tmp_path):
    """The reader accepts the course's own files (labels only here: its images cannot ship)."""
    from conftest import COURSE

    root = tmp_path / "course"
    (root / "iclevr").mkdir(parents=True)
    for f in ("objects.json", "test.json", "new_test.json"):
        shutil.copy(COURSE / f, root / f)
    train = json.loads((COURSE / "train.json").read_text())
    subset = dict(list(train.items())[:3])
    (root / "train.json").write_text(json.dumps(subset, indent=2))
    for name in subset:
        Image.new("RGBA", (320, 240), (90, 90, 90, 255)).save(root / "iclevr" / name)
    data = reader.load_dataset(root, use_cache=False)
    assert data.images.shape == (3, 3, 64, 64)
    assert set(reader.split_labels(root)) == {"test", "new_test"}
    assert not (root / reader.CACHE_NAME).exists()
