"""The user's own data (``folder:PATH``, ``npz:PATH``): real images from the shared CIFAR-10 test
batch written as PNG/JPEG folders, probes and scores from them, training on them, and the errors
for empty or inconsistent data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rznas import ConfigError, DataError, UnknownName
from rznas.benchmarks.correlation import choose_probe_data
from rznas.cli import main
from rznas.data.cifar import load_cifar
from rznas.data.probe import data_fingerprint, make_probe, parse_data_spec
from rznas.data.user import NAMED_NORMS
from rznas.search.config import SearchConfig
from rznas.search.executors import EvaluatorSpec

from .conftest import require_shared

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
CLASSES = ("bird", "cat", "ship")  # CIFAR-10 labels 2, 3, 8; sorted names give labels 0, 1, 2
CIFAR_LABELS = (2, 3, 8)
PER_CLASS = 8


@pytest.fixture(scope="module")
def cifar_test_images() -> tuple[np.ndarray, np.ndarray]:
    """PER_CLASS real images of each of three classes from the shared CIFAR-10 test batch (N x 32 x 32 x 3)."""
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    test = load_cifar("cifar10", data_dir=root, split="test")
    images, labels = [], []
    for new_label, cifar_label in enumerate(CIFAR_LABELS):
        index = torch.nonzero(test.labels == cifar_label).flatten()[:PER_CLASS]
        images.append(test.images[index].permute(0, 2, 3, 1).numpy())
        labels += [new_label] * PER_CLASS
    return np.concatenate(images), np.array(labels, dtype=np.int64)


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, suffix: str = ".png") -> Path:
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}{suffix}")
    return root


@pytest.fixture
def png_folder(tmp_path, cifar_test_images) -> Path:
    return write_folder(tmp_path / "images", *cifar_test_images)


def test_a_png_folder_reads_back_the_cifar_pixels_with_labels_from_sorted_folder_names(png_folder, cifar_test_images):
    images, labels = cifar_test_images
    probe = make_probe(f"folder:{png_folder}?norm=none", batch_size=len(labels), chunks=1, seed=0)
    assert probe.num_classes == 3 and probe.resolution == 32
    assert probe.source == f"folder:{png_folder}?norm=none:train"
    # the probe is a seeded permutation of every image: match each back to its source (PNG is lossless)
    expected = {(labels[i], images[i].tobytes()) for i in range(len(labels))}
    got = {
        (int(t), np.rint(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8).tobytes())
        for x, t in zip(probe.inputs, probe.targets)
    }
    assert got == expected


def test_default_normalisation_is_the_data_s_own_mean_and_std(png_folder):
    probe = make_probe(f"folder:{png_folder}", batch_size=24, chunks=1, seed=0)  # every image
    assert probe.inputs.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert probe.inputs.std(dim=(0, 2, 3)).sub(1).abs().max() < 1e-3
    imagenet = make_probe(f"folder:{png_folder}?norm=imagenet", batch_size=24, chunks=1, seed=0)
    raw = make_probe(f"folder:{png_folder}?norm=none", batch_size=24, chunks=1, seed=0)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NAMED_NORMS["imagenet"])
    torch.testing.assert_close(imagenet.inputs, (raw.inputs - mean) / std)


def test_rznas_score_on_a_folder_of_real_images(png_folder, capsys):
    """The acceptance line: `rznas score --data folder:...` on real images; the class count comes from the data."""
    argv = ["score", "--proxy", "params,naswot,snip", "--arch", A, "--data", f"folder:{png_folder}", "--batch-size", "8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"# probe: folder:{png_folder}:train (32x32 px, 3 classes), batch size 8" in out
    assert main([*argv, "--json"]) == 0
    rows = {r["proxy"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == {"params", "naswot", "snip"} and all(np.isfinite(r["score"]) for r in rows.values())
    from rznas.spaces import get_space

    space = get_space("nb201")
    three_way = sum(p.numel() for p in space.build(space.decode(A), num_classes=3).parameters()) / 1e6
    assert rows["params"]["score"] == pytest.approx(three_way)  # a 3-class head, not CIFAR's 10


def test_jpeg_and_grey_images_are_read_as_rgb(tmp_path, cifar_test_images):
    images, labels = cifar_test_images
    folder = write_folder(tmp_path / "jpeg", images, labels, ".jpg")
    grey = tmp_path / "jpeg" / "bird" / "grey.png"
    Image.fromarray(images[0].mean(axis=2).astype(np.uint8), mode="L").save(grey)
    probe = make_probe(f"folder:{folder}", batch_size=25, chunks=1, seed=1)
    assert probe.inputs.shape == (25, 3, 32, 32) and probe.num_classes == 3


def test_npz_gives_the_same_probe_as_the_folder_of_the_same_images(tmp_path, png_folder, cifar_test_images):
    images, labels = cifar_test_images
    nhwc = tmp_path / "nhwc.npz"
    np.savez(nhwc, x=images, y=labels)
    from_folder = make_probe(f"folder:{png_folder}", batch_size=6, chunks=2, seed=5)
    from_npz = make_probe(f"npz:{nhwc}", batch_size=6, chunks=2, seed=5)
    assert torch.equal(from_folder.inputs, from_npz.inputs) and torch.equal(from_folder.targets, from_npz.targets)
    # NCHW uint8 and float [0, 1] layouts are the same data
    nchw = tmp_path / "nchw.npz"
    np.savez(nchw, x=images.transpose(0, 3, 1, 2), y=labels)
    floats = tmp_path / "float.npz"
    np.savez(floats, x=images.astype(np.float32) / 255.0, y=labels)
    for path in (nchw, floats):
        assert torch.equal(make_probe(f"npz:{path}", batch_size=6, chunks=2, seed=5).inputs, from_npz.inputs)


def test_npz_class_count_is_the_largest_label_plus_one(tmp_path, cifar_test_images):
    images, labels = cifar_test_images
    path = tmp_path / "d.npz"
    np.savez(path, x=images, y=labels * 2)  # labels 0, 2, 4: five outputs
    assert make_probe(f"npz:{path}", batch_size=4, chunks=1).num_classes == 5


def _bad_npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.zeros((4, 8, 8, 3), np.uint8)), "no y array"),
        (dict(x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([0, 1, 0])), "4 images in x but 3 labels"),
        (dict(x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([0, 1, -1, 0])), "labels must be >= 0"),
        (dict(x=np.zeros((4, 8, 8, 3), np.uint8), y=np.array([0.0, 1.0, 1.0, 0.0])), "integer array of labels"),
        (dict(x=np.full((4, 8, 8, 3), 2.0, np.float32), y=np.array([0, 1, 1, 0])), "must lie in [0, 1]"),
        (dict(x=np.zeros((4, 8, 8, 5), np.uint8), y=np.array([0, 1, 1, 0])), "1 or 3 channels"),
        (dict(x=np.zeros((4, 8, 8, 3), np.uint8), y=np.zeros(4, np.int64)), "1 class(es)"),
        (dict(x=np.zeros((0, 8, 8, 3), np.uint8), y=np.zeros(0, np.int64)), "holds no images"),
        (dict(x=np.array([{"a": 1}] * 4, dtype=object), y=np.array([0, 1, 1, 0])), "cannot read"),
    ],
)
def test_inconsistent_npz_data_is_a_data_error(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        make_probe(_bad_npz(tmp_path, **arrays), batch_size=2, chunks=1)


def test_empty_and_inconsistent_folders_are_data_errors(tmp_path, cifar_test_images):
    images, labels = cifar_test_images
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        make_probe(f"folder:{empty}", batch_size=2, chunks=1)
    (empty / "cat").mkdir()
    (empty / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*cat holds no"):
        make_probe(f"folder:{empty}", batch_size=2, chunks=1)
    mixed = write_folder(tmp_path / "mixed", images[:4], np.array([0, 0, 1, 1]))
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(mixed / "bird" / "small.png")
    with pytest.raises(DataError, match="images differ in size: .*small.png is 20x16 px"):
        make_probe(f"folder:{mixed}", batch_size=2, chunks=1)
    broken = write_folder(tmp_path / "broken", images[:4], np.array([0, 0, 1, 1]))
    (broken / "bird" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n-not-really")
    with pytest.raises(DataError, match="cannot decode image .*truncated.png"):
        make_probe(f"folder:{broken}", batch_size=2, chunks=1)
    with pytest.raises(DataError, match="does not exist"):
        make_probe(f"folder:{tmp_path / 'nowhere'}", batch_size=2, chunks=1)


def test_bad_data_specs(tmp_path, png_folder):
    with pytest.raises(ConfigError, match="needs a path"):
        parse_data_spec("folder:")
    with pytest.raises(ConfigError, match="takes no argument"):
        parse_data_spec("cifar10:train")
    with pytest.raises(UnknownName, match="did you mean 'folder'"):
        parse_data_spec("foldr:/x")
    with pytest.raises(ConfigError, match="unknown normalisation 'imagent'"):
        make_probe(f"folder:{png_folder}?norm=imagent", batch_size=2, chunks=1)
    with pytest.raises(ConfigError, match="needs 200 images; folder:.* has 24"):
        make_probe(f"folder:{png_folder}", batch_size=100, chunks=2)


def test_cli_errors_for_user_data_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["score", "--proxy", "params", "--arch", A, "--data", f"folder:{tmp_path / 'empty'}"]) == 2
    assert "no class sub-folders" in capsys.readouterr().err


def test_the_score_cache_keys_on_the_images_not_the_path(tmp_path, cifar_test_images):
    images, labels = cifar_test_images
    folder = write_folder(tmp_path / "data", images, labels)
    config = SearchConfig(space="nb201", proxy="naswot", proposer="random", data=f"folder:{folder}", batch_size=4)
    before = EvaluatorSpec.from_config(config).cache_settings()
    assert before["probe"]["content"] == data_fingerprint(f"folder:{folder}")
    Image.fromarray(255 - images[0]).save(folder / "bird" / "000.png")  # the same path, other pixels
    assert EvaluatorSpec.from_config(config).cache_settings()["probe"]["content"] != before["probe"]["content"]


def test_a_search_probes_the_user_s_images(tmp_path, png_folder):
    from rznas.search.progress import Progress
    from rznas.search.runner import SearchRun

    config = SearchConfig(space="nb201", proxy="naswot", proposer="random", population=2, iterations=1,
                          data=f"folder:{png_folder}", batch_size=4, probe_chunks=1, score_cache="none")
    run = SearchRun.start(config, tmp_path / "run", progress=Progress(enabled=False))
    try:
        assert run.probe.num_classes == 3 and run.probe.source.startswith("folder:")
        result = run.run()
    finally:
        run.close()
    assert result.status == "finished" and result.best is not None


def test_bench_correlation_accepts_user_probe_data(png_folder):
    spec = f"folder:{png_folder}"
    assert choose_probe_data("cifar10", spec) == spec
    with pytest.raises(ConfigError, match="needs a path"):
        choose_probe_data("cifar10", "npz:")


def test_rznas_train_on_a_folder_holds_out_a_test_split(tmp_path, png_folder, capsys):
    out = tmp_path / "train"
    argv = ["train", "--space", "nb201", "--arch", A, "--data", f"folder:{png_folder}", "--epochs", "1",
            "--batch-size", "8", "--space-option", "channels=4", "--space-option", "cells_per_stage=1",
            "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "held-out 10%" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == 3
    assert "minus held-out 10% (22 images)" in summary["data"] and "held-out 10% (seed 0) (2 images)" in summary["data"]


def test_train_uses_the_folder_s_own_test_split(tmp_path, cifar_test_images):
    from rznas.training import load_train_data

    images, labels = cifar_test_images
    write_folder(tmp_path / "d" / "train", images[::2], labels[::2])
    write_folder(tmp_path / "d" / "test", images[1::2], labels[1::2])
    data = load_train_data(f"folder:{tmp_path / 'd'}")
    assert (data.num_train, data.num_test, data.num_classes) == (12, 12, 3)
    assert data.test.spec is data.train.spec  # the test split is normalised with the train split's statistics
    probe = make_probe(f"folder:{tmp_path / 'd'}", batch_size=12, chunks=1)
    assert probe.num_classes == 3  # the probe reads the train split


def test_decoding_a_large_folder_reports_progress(tmp_path, cifar_test_images, monkeypatch, capsys):
    import rznas.data.user as user

    images, labels = cifar_test_images
    folder = write_folder(tmp_path / "many", images, labels)
    monkeypatch.setattr(user, "PROGRESS_FROM", 10)  # 24 images count as many here
    make_probe(f"folder:{folder}", batch_size=4, chunks=1)
    err = capsys.readouterr().err
    assert f"rznas: decoding 24 images from {folder} ..." in err and "done in" in err
