"""CIFAR loader (official python format), data-dir resolution, and probe factories."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rznas import ConfigError, DataError, UnknownName
from rznas.data.cifar import CIFAR_SPECS, apply_cutout, load_cifar, random_crop_flip
from rznas.data.paths import resolve_data_dir, resolve_nb201_dir
from rznas.data.probe import make_probe

from .conftest import require_shared


def write_batch(path: Path, data: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> None:
    """Write one batch file exactly like the official release (pickled dict of bytes keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {b"batch_label": b"synthetic", label_key: labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def solid_images(colours: list[tuple[int, int, int]]) -> np.ndarray:
    """N x 3072 uint8 rows, channel-major planes, one solid colour per image."""
    rows = [np.concatenate([np.full(1024, c, dtype=np.uint8) for c in colour]) for colour in colours]
    return np.stack(rows)


@pytest.fixture
def fake_cifar10(tmp_path: Path) -> Path:
    """A data root with two of the five training batches and the test batch."""
    folder = tmp_path / "root" / "cifar-10-batches-py"
    write_batch(folder / "data_batch_1", solid_images([(255, 0, 0), (0, 255, 0)]), [0, 1])
    write_batch(folder / "data_batch_3", solid_images([(0, 0, 255)]), [9])
    write_batch(folder / "test_batch", solid_images([(0, 0, 0)]), [4])
    return tmp_path / "root"


# --- the shared subset ---------------------------------------------------------------------


def test_shared_cifar10_subset_loads_unchanged():
    folder = require_shared("cifar10/cifar-10-batches-py")
    train = load_cifar("cifar10", data_dir=folder, split="train")
    test = load_cifar("cifar10", data_dir=folder, split="test")
    assert len(train) == 10_000 and len(test) == 10_000
    assert [Path(f).name for f in train.files] == ["data_batch_1"]
    assert torch.bincount(train.labels).tolist() == [1000] * 10
    inputs, labels = train.tensors(torch.arange(2000))
    assert inputs.shape == (2000, 3, 32, 32) and inputs.dtype == torch.float32
    assert labels.dtype == torch.int64
    # standard normalisation: roughly zero mean, unit std per channel
    assert inputs.mean(dim=(0, 2, 3)).abs().max() < 0.1
    assert ((inputs.std(dim=(0, 2, 3)) - 1).abs() < 0.1).all()


@pytest.mark.parametrize("relative", ["", "cifar10", "cifar10/cifar-10-batches-py"])
def test_data_dir_may_name_root_parent_or_folder(relative):
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    data = load_cifar("cifar10", data_dir=root / relative, split="test")
    assert len(data) == 10_000


def test_env_var_locates_data(monkeypatch):
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    monkeypatch.setenv("RZNAS_DATA_DIR", str(root))
    assert len(load_cifar("cifar10", split="test")) == 10_000


# --- format details on synthetic official-format files --------------------------------------


def test_reads_whichever_batches_exist_and_normalises(fake_cifar10):
    data = load_cifar("cifar10", data_dir=fake_cifar10)
    assert [Path(f).name for f in data.files] == ["data_batch_1", "data_batch_3"]
    assert data.labels.tolist() == [0, 1, 9]
    inputs, _ = data.tensors()
    spec = CIFAR_SPECS["cifar10"]
    red = inputs[0]
    assert torch.allclose(red[0], torch.full((32, 32), (1 - spec.mean[0]) / spec.std[0]))
    assert torch.allclose(red[1], torch.full((32, 32), -spec.mean[1] / spec.std[1]))
    image, label = data[2]
    assert label == 9 and torch.allclose(image[2], torch.full((32, 32), (1 - spec.mean[2]) / spec.std[2]))
    assert len(load_cifar("cifar10", data_dir=fake_cifar10, split="test")) == 1


def test_cifar100_uses_fine_labels_and_its_own_statistics(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_batch(folder / "train", solid_images([(0, 0, 0), (255, 255, 255)]), [3, 99], b"fine_labels")
    write_batch(folder / "test", solid_images([(0, 0, 0)]), [7], b"fine_labels")
    data = load_cifar("cifar100", data_dir=tmp_path)
    assert data.num_classes == 100 and data.labels.tolist() == [3, 99]
    black, _ = data[0]
    mean, std = CIFAR_SPECS["cifar100"].mean, CIFAR_SPECS["cifar100"].std
    assert torch.allclose(black[:, 0, 0], torch.tensor([-m / s for m, s in zip(mean, std)]))


def test_missing_data_dir_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="RZNAS_DATA_DIR"):
        resolve_data_dir(None)
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        load_cifar("cifar10", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar("cifar10", data_dir=tmp_path)  # exists, but holds no CIFAR files


def test_missing_split_and_unknown_names(fake_cifar10, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_batch(folder / "data_batch_2", solid_images([(1, 2, 3)]), [0])
    with pytest.raises(DataError, match="test"):
        load_cifar("cifar10", data_dir=tmp_path, split="test")
    with pytest.raises(ConfigError, match="split"):
        load_cifar("cifar10", data_dir=fake_cifar10, split="valid")
    with pytest.raises(ConfigError, match="cifar10"):
        load_cifar("svhn", data_dir=fake_cifar10)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"definitely not a pickle", "not a CIFAR"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "labels"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "3072"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "labels"),
        (pickle.dumps([1, 2, 3]), "not a CIFAR"),
    ],
)
def test_malformed_batch_files_name_the_path(tmp_path, content, message):
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_cifar("cifar10", data_dir=tmp_path)
    assert str(path) in str(info.value)


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path("/nonexistent-should-not-run"),))


def test_unpickling_refuses_arbitrary_globals(tmp_path):
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}))
    with pytest.raises(DataError, match="refusing"):
        load_cifar("cifar10", data_dir=tmp_path)


def test_nb201_dir_resolution_order(monkeypatch, tmp_path):
    (tmp_path / "data" / "nb201").mkdir(parents=True)
    (tmp_path / "explicit").mkdir()
    monkeypatch.delenv("RZNAS_NB201_DIR", raising=False)
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="RZNAS_NB201_DIR"):
        resolve_nb201_dir(None)
    monkeypatch.setenv("RZNAS_DATA_DIR", str(tmp_path / "data"))
    assert resolve_nb201_dir(None) == tmp_path / "data" / "nb201"
    monkeypatch.setenv("RZNAS_NB201_DIR", str(tmp_path / "explicit"))
    assert resolve_nb201_dir(None) == tmp_path / "explicit"
    assert resolve_nb201_dir(tmp_path / "data" / "nb201") == tmp_path / "data" / "nb201"
    with pytest.raises(DataError, match="does not exist"):
        resolve_nb201_dir(tmp_path / "missing")


# --- batches and augmentation ----------------------------------------------------------------


def test_batches_cover_the_split_once(fake_cifar10):
    data = load_cifar("cifar10", data_dir=fake_cifar10)
    seen = [label for _, labels in data.batches(2, shuffle=True, seed=3) for label in labels.tolist()]
    assert sorted(seen) == [0, 1, 9]
    assert [len(y) for _, y in data.batches(2, drop_last=True)] == [2]
    first = [x for x, _ in data.batches(2, augment=True, cutout=8, seed=5)]
    again = [x for x, _ in data.batches(2, augment=True, cutout=8, seed=5)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ConfigError):
        next(data.batches(0))


def test_random_crop_flip_is_a_shifted_window_or_its_mirror():
    images = torch.randint(1, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(0), padding=4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = F.pad(images, (4, 4, 4, 4))
    for image, result in zip(padded, out):
        windows = [image[:, t : t + 32, l : l + 32] for t in range(9) for l in range(9)]
        assert any(torch.equal(result, w) or torch.equal(result, w.flip(-1)) for w in windows)
    assert not all(torch.equal(a, b) for a, b in zip(out, images))


def test_cutout_zeroes_one_square_at_most_length_wide():
    inputs = torch.ones(8, 3, 32, 32)
    out = apply_cutout(inputs, 8, torch.Generator().manual_seed(1))
    for image in out:
        zero = image[0] == 0
        assert torch.equal(zero, image[1] == 0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
        assert int(zero.sum()) == len(rows) * len(cols)  # a rectangle


# --- probes ----------------------------------------------------------------------------------


def test_gaussian_probe_needs_no_data(monkeypatch):
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    probe = make_probe("gaussian", batch_size=4, chunks=3, seed=1, resolution=16, num_classes=7)
    assert probe.inputs.shape == (12, 3, 16, 16) and probe.source == "gaussian"
    assert probe.num_classes == 7 and int(probe.targets.max()) < 7


def test_cifar_probe_is_a_seeded_sample_of_training_images():
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    a = make_probe("cifar10", data_dir=root, batch_size=8, chunks=2, seed=0)
    b = make_probe("cifar10", data_dir=root, batch_size=8, chunks=2, seed=0)
    c = make_probe("cifar10", data_dir=root, batch_size=8, chunks=2, seed=1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    assert a.source == "cifar10:train" and a.num_classes == 10 and a.num_chunks == 2
    train = load_cifar("cifar10", data_dir=root)
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:16]
    expected, labels = train.tensors(index)
    assert torch.equal(a.inputs, expected) and torch.equal(a.targets, labels)


def test_cifar_probe_downsampled_for_imagenet16_networks():
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    full = make_probe("cifar10", data_dir=root, batch_size=4, chunks=1, seed=2)
    small = make_probe("cifar10", data_dir=root, batch_size=4, chunks=1, seed=2, resolution=16, num_classes=120)
    assert small.inputs.shape == (4, 3, 16, 16) and small.source == "cifar10:train@16px"
    assert small.num_classes == 120
    assert torch.allclose(small.inputs, F.avg_pool2d(full.inputs, 2), atol=1e-6)
    with pytest.raises(ConfigError, match="classes"):
        make_probe("cifar10", data_dir=root, batch_size=4, chunks=1, num_classes=5)


def test_probe_bad_requests():
    with pytest.raises(UnknownName, match="cifar10"):
        make_probe("cifar1", batch_size=4)
    with pytest.raises(ConfigError):
        make_probe("gaussian", batch_size=0)


def test_probe_larger_than_the_data_is_refused(fake_cifar10):
    with pytest.raises(ConfigError, match="needs"):
        make_probe("cifar10", data_dir=fake_cifar10, batch_size=2, chunks=2)


# --- default probe data: real images for data-dependent proxies (rznas.data.probe_choice) ------


def test_auto_gives_real_images_to_data_dependent_proxies_and_noise_to_data_free_ones(fake_cifar10):
    from rznas.data.probe_choice import choose_probe_data
    from rznas.proxies import PROXIES

    zico, synflow, params = PROXIES.get("zico"), PROXIES.get("synflow"), PROXIES.get("params")
    assert choose_probe_data("auto", [zico], data_dir=fake_cifar10) == "cifar10"
    assert choose_probe_data("auto", [synflow, params], data_dir=fake_cifar10) == "gaussian"
    assert choose_probe_data("auto", [synflow, zico], data_dir=fake_cifar10) == "cifar10"  # one needs data
    assert choose_probe_data("gaussian", [zico], data_dir=fake_cifar10) == "gaussian"  # asked for: honoured
    with pytest.raises(UnknownName, match="did you mean 'cifar10'"):
        choose_probe_data("cifar1O", [zico])


def test_auto_without_cifar10_is_an_error_that_names_the_way_out(tmp_path, monkeypatch):
    from rznas.data.probe_choice import choose_probe_data
    from rznas.proxies import PROXIES

    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    with pytest.raises(DataError, match=r"zico scores real images.*--data gaussian"):
        choose_probe_data("auto", [PROXIES.get("zico")], data_dir=tmp_path)
    # a data-free proxy needs no data at all (the README quickstart runs offline)
    assert choose_probe_data("auto", [PROXIES.get("synflow")], data_dir=tmp_path) == "gaussian"


def test_synthetic_data_for_a_data_dependent_proxy_is_announced():
    from rznas.data.probe_choice import synthetic_data_notice
    from rznas.proxies import PROXIES

    notice = synthetic_data_notice("gaussian", [PROXIES.get("zico")])
    assert notice is not None and "zico is data-dependent" in notice and "--data cifar10" in notice
    assert synthetic_data_notice("gaussian", [PROXIES.get("synflow")]) is None
    assert synthetic_data_notice("cifar10", [PROXIES.get("zico")]) is None
