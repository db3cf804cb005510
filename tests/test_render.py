import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fastddpm.conditions import SHAPES
from fastddpm.data import render, synth, writer
from fastddpm.data.writer import RENDERER_VERSION, render_dataset
from fastddpm.errors import UsageError

GOLDEN = Path(__file__).resolve().parent / "golden" / f"render_v{RENDERER_VERSION}.png"


def golden_scene_render() -> np.ndarray:
    """The 1- and 3-object images of one scene at 160x120, stacked: (240, 160, 3) uint8."""
    scene = synth.draw_scene(7, 0, synth.scene_labels(7, 0, 3))
    batch = synth.scene_batch(
        [scene.objects[:1], scene.objects[:3]],
        [scene.views[0], scene.views[2]],
        [synth.image_grain(0, 0), synth.image_grain(0, 2)],
    )
    return render.render(batch, 160, 120).reshape(240, 160, 3).numpy()


def test_renderer_output_changes_only_with_its_version():
    """A render of a fixed scene equals tests/golden/render_v<RENDERER_VERSION>.png. Float rounding may differ
    between CPUs, so up to 0.05% of the values may be off by one level; the smallest real changes so far moved
    0.32% of them by one level (v1 -> v2, an sRGB table) and 0.06% by up to five (v2 -> v3, the shadow grain).
    When pixels change on purpose: bump RENDERER_VERSION in data/writer.py
    and write the new golden with `FASTDDPM_WRITE_GOLDEN=1 pytest tests/test_render.py`."""
    from PIL import Image

    image = golden_scene_render()
    if os.environ.get("FASTDDPM_WRITE_GOLDEN"):
        Image.fromarray(image).save(GOLDEN)
    assert GOLDEN.is_file(), f"no golden render for renderer version {RENDERER_VERSION}: {GOLDEN}"
    golden = np.asarray(Image.open(GOLDEN).convert("RGB")).astype(np.int16)
    diff = np.abs(image.astype(np.int16) - golden)
    assert diff.max() <= 1 and (diff > 0).mean() <= 5e-4, (
        f"the renderer's pixels changed ({(diff > 0).mean():.2%} of values, up to {diff.max()} levels) without "
        f"a new RENDERER_VERSION (now {RENDERER_VERSION})"
    )


def test_same_seed_same_labels_and_pixels(tmp_path):
    a = render_dataset(tmp_path / "a", scenes=2, seed=11)
    b = render_dataset(tmp_path / "b", scenes=2, seed=11)
    assert a.images == b.images == 6
    assert (tmp_path / "a" / "train.json").read_text() == (tmp_path / "b" / "train.json").read_text()
    for name in json.loads((tmp_path / "a" / "train.json").read_text()):
        assert (tmp_path / "a" / "iclevr" / name).read_bytes() == (
            tmp_path / "b" / "iclevr" / name
        ).read_bytes()
    c = render_dataset(tmp_path / "c", scenes=2, seed=12)
    assert (tmp_path / "c" / "train.json").read_text() != (tmp_path / "a" / "train.json").read_text()
    assert c.images == 6


def test_layout_and_incremental_scenes(tiny_data):
    train = json.loads((tiny_data / "train.json").read_text())
    assert len(train) == 9
    for scene in range(3):
        names = [f"CLEVR_train_{scene:06d}_{i}.png" for i in range(3)]
        lists = [train[n] for n in names]
        assert [len(x) for x in lists] == [1, 2, 3]
        assert lists[0] == lists[2][:1] and lists[1] == lists[2][:2]
    from PIL import Image

    with Image.open(tiny_data / "iclevr" / "CLEVR_train_000000_0.png") as img:
        assert img.size == (320, 240) and img.mode == "RGB"
    assert len(json.loads((tiny_data / "test.json").read_text())) == 32
    assert len(json.loads((tiny_data / "new_test.json").read_text())) == 32
    assert (tiny_data / "preview.png").is_file()


def test_label_statistics_match_the_real_train_set():
    scenes = [synth.scene_labels(3, i, 3) for i in range(600)]
    pairs = [[tuple(name.split()) for name in labels] for labels in scenes]
    assert all(len(set(p)) == 3 for p in pairs)  # a class never repeats in an image
    same_color = np.mean([p[0][0] == p[1][0] for p in pairs])
    same_shape = np.mean([p[0][1] == p[1][1] for p in pairs])
    assert 0.04 < same_color < 0.13  # ~8% in the real data
    assert 0.27 < same_shape < 0.40  # ~33%
    counts = Counter(name for labels in scenes for name in labels)
    assert len(counts) == 24 and max(counts.values()) < 2 * min(counts.values())


def test_test_splits_are_composed_like_the_course():
    test, new = synth.test_splits(0)
    assert Counter(len(x) for x in test) == {1: 6, 2: 12, 3: 14}
    assert Counter(len(x) for x in new) == {2: 12, 3: 20}
    same_color = sum(len({n.split()[0] for n in x}) < len(x) for x in new)
    assert same_color == 28


@pytest.mark.parametrize("color, channel", [("red", 0), ("green", 1), ("blue", 2)])
def test_first_object_color_dominates_the_centre(color, channel):
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        scene = synth.place_scene([f"{color} {shape}"], rng)
        image = render.render(synth.scene_batch([scene.objects], scene.views))[0].float()
        centre = image[105:125, 150:170].reshape(-1, 3).mean(0)  # the object sits just above the image centre
        others = [c for c in range(3) if c != channel]
        assert centre[channel] > centre[others].max() + 20, (shape, centre)
        border = image[:40].reshape(-1, 3).mean(0)  # the top of the frame is empty floor / backdrop
        assert (border.max() - border.min()) < 12


def test_every_object_stays_visible():
    for scene_id in range(6):
        labels = synth.scene_labels(1, scene_id, 3)
        scene = synth.draw_scene(1, scene_id, labels)
        assert (scene.objects[0].x, scene.objects[0].y) == (0.0, 0.0)
        for i in range(3):
            counts = render.visible_pixels(synth.scene_batch([scene.objects[: i + 1]], [scene.views[i]]))[0]
            assert counts[: i + 1].min() >= 150, counts


def test_resume_refuses_other_settings(tmp_path):
    render_dataset(tmp_path / "d", scenes=1, seed=0)
    with pytest.raises(UsageError, match="Resume with the same settings"):
        render_dataset(tmp_path / "d", scenes=1, seed=1)
    before = (tmp_path / "d" / "iclevr" / "CLEVR_train_000000_0.png").stat().st_mtime_ns
    report = render_dataset(tmp_path / "d", scenes=2, seed=0)  # extends, skipping what exists
    assert report.rendered == 3 and report.images == 6
    assert (tmp_path / "d" / "iclevr" / "CLEVR_train_000000_0.png").stat().st_mtime_ns == before


def test_renders_a_given_train_file(tmp_path):
    labels = {
        "CLEVR_train_000007_0.png": ["red cube"],
        "CLEVR_train_000007_1.png": ["red cube", "blue sphere"],
    }
    (tmp_path / "train.json").write_text(json.dumps(labels))
    render_dataset(tmp_path / "out", labels_file=tmp_path / "train.json")
    assert json.loads((tmp_path / "out" / "train.json").read_text()) == labels
    (tmp_path / "bad.json").write_text(json.dumps({"CLEVR_train_000001_1.png": ["red cube"]}))
    with pytest.raises(UsageError, match="must hold 2 objects"):
        render_dataset(tmp_path / "out2", labels_file=tmp_path / "bad.json")


def _written(folder: Path) -> dict[str, bytes]:
    """The PNG bytes of a rendered data set, by file name (images and preview)."""
    files = sorted((folder / "iclevr").glob("*.png")) + [folder / "preview.png"]
    return {p.name: p.read_bytes() for p in files}


@pytest.mark.slow
def test_a_render_split_in_two_or_batched_otherwise_writes_the_same_files(tmp_path, monkeypatch):
    render_dataset(tmp_path / "whole", scenes=4, seed=3)
    render_dataset(tmp_path / "split", scenes=2, seed=3)
    # Resumed: scenes 2 and 3 now go into a batch of their own.
    render_dataset(tmp_path / "split", scenes=4, seed=3)
    monkeypatch.setattr(writer, "RENDER_BATCH", 5)
    render_dataset(tmp_path / "rebatched", scenes=4, seed=3)
    whole = _written(tmp_path / "whole")
    assert len(whole) == 13
    assert _written(tmp_path / "split") == whole
    assert _written(tmp_path / "rebatched") == whole


def test_a_render_of_another_renderer_version_is_not_resumed(tmp_path):
    render_dataset(tmp_path / "d", scenes=1, seed=0)
    manifest = tmp_path / "d" / "render.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "renderer": RENDERER_VERSION - 1}))
    before = sorted(p.name for p in (tmp_path / "d" / "iclevr").iterdir())
    with pytest.raises(UsageError, match="Resume with the same settings") as refused:
        render_dataset(tmp_path / "d", scenes=2, seed=0)
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in (tmp_path / "d" / "iclevr").iterdir()) == before


@pytest.mark.slow
def test_a_render_stopped_by_sigterm_and_resumed_equals_one_run_straight_through(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out, scenes = tmp_path / "stopped", 20
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "fastddpm", "data", "render", "--out", str(out), "--scenes", str(scenes)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("iclevr/CLEVR_train_*.png")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert len(list(out.glob("iclevr/CLEVR_train_*.png"))) < 3 * scenes, "the render ended before the signal"
    render_dataset(out, scenes=scenes, seed=0)
    render_dataset(tmp_path / "straight", scenes=scenes, seed=0)
    assert _written(out) == _written(tmp_path / "straight")
    for sub in ("", "iclevr"):  # nothing else either: no temporary file of a write the signal cut short
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(
            p.name for p in (tmp_path / "straight" / sub).iterdir()
        )
