"""Training: recipes, checkpoints, resume equivalence, architecture input, a real CIFAR run."""
from __future__ import annotations

import json
import math

import pytest
import torch

from rznas import Architecture, ConfigError, InvalidArchitecture
from rznas.cli import main
from rznas.spaces import get_space
from rznas.spaces.darts import DARTS_V2
from rznas.training import (
    RECIPES,
    TensorTrainData,
    load_architecture,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    train_architecture,
)
from rznas.training.recipes import Recipe

from .conftest import require_shared

TINY = {"channels": 4, "layers": 3}


def synthetic_data(n_train: int = 96, n_test: int = 48, resolution: int = 16, seed: int = 0) -> TensorTrainData:
    """Learnable toy data: the class sets the mean colour of a noisy image."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int):
        y = torch.randint(0, 3, (n,), generator=g)
        colours = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.5]])
        x = colours[y][:, :, None, None] + 0.5 * torch.randn(n, 3, resolution, resolution, generator=g)
        return x, y

    (a, b), (c, d) = make(n_train), make(n_test)
    return TensorTrainData(a, b, c, d, num_classes=3)


QUICK = Recipe(name="t", epochs=3, batch_size=32, lr=0.05, nesterov=True, weight_decay=5e-4, grad_clip=5.0,
               augment=False)


def test_published_recipes():
    darts = RECIPES.get("darts")
    assert (darts.lr, darts.momentum, darts.weight_decay, darts.epochs, darts.batch_size) == (0.025, 0.9, 3e-4, 600, 96)
    assert (darts.cutout, darts.drop_path_prob, darts.auxiliary_weight, darts.grad_clip) == (16, 0.2, 0.4, 5.0)
    zen = RECIPES.get("zen")
    assert zen.nesterov and zen.weight_decay == 5e-4 and zen.label_smoothing == 0.1 and zen.epochs == 1440
    assert "quick" in RECIPES


def test_schedule_and_overrides():
    darts = RECIPES.get("darts")
    assert darts.lr_at(0) == pytest.approx(0.025)
    assert darts.lr_at(300) == pytest.approx(0.0125)
    assert darts.lr_at(599) == pytest.approx(0.025 * 0.5 * (1 + math.cos(math.pi * 599 / 600)))
    assert darts.drop_path_at(0) == 0.0 and darts.drop_path_at(300) == pytest.approx(0.1)
    zen = RECIPES.get("zen")
    assert zen.lr_at(0) == pytest.approx(zen.lr / 5) and zen.lr_at(4) == pytest.approx(zen.lr)
    scaled = zen.with_overrides(batch_size=256, epochs=10)
    assert scaled.lr == pytest.approx(0.1) and scaled.epochs == 10
    assert darts.with_overrides(batch_size=192).lr == 0.025  # DARTS does not rescale
    with pytest.raises(ConfigError):
        Recipe(name="bad", epochs=0, batch_size=1, lr=0.1)


def test_atomic_checkpoint_round_trip(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"epoch": 3, "w": torch.ones(2)}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.slow
def test_tiny_training_loss_falls_and_is_deterministic(tmp_path):
    arch = get_space("darts").decode(DARTS_V2)
    data = synthetic_data()
    seen = []
    first = train_architecture(arch, data, QUICK, space_options=TINY, seed=1, device="cpu", on_epoch=seen.append)
    history = first.summary["history"]
    assert [s.epoch for s in seen] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert first.summary["best_test_acc"] > 50.0  # 3 classes: chance is 33%
    second = train_architecture(arch, data, QUICK, space_options=TINY, seed=1, device="cpu")
    assert [h["train_loss"] for h in second.summary["history"]] == [h["train_loss"] for h in history]


@pytest.mark.slow
def test_resume_repeats_the_uninterrupted_run(tmp_path):
    arch = get_space("darts").decode(DARTS_V2)
    recipe = Recipe(name="r", epochs=2, batch_size=32, lr=0.05, drop_path_prob=0.2, auxiliary_weight=0.4,
                    grad_clip=5.0, augment=False)
    options = {"channels": 4, "layers": 3}
    # auxiliary heads need 8x8 maps after the 2/3 cell: use 32x32 inputs
    data = synthetic_data(n_train=64, n_test=16, resolution=32)
    straight = train_architecture(arch, data, recipe, space_options=options, seed=3, device="cpu",
                                  checkpoint=tmp_path / "a.pt")
    assert straight.summary["params"] > straight.summary["params_without_auxiliary"]  # aux head was used
    half = recipe
    # interrupted after epoch 1: emulate with a callback that raises
    class Stop(Exception):
        pass

    def stop_after_first(stats):
        raise Stop

    with pytest.raises(Stop):
        train_architecture(arch, data, half, space_options=options, seed=3, device="cpu",
                           checkpoint=tmp_path / "b.pt", on_epoch=stop_after_first)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    resumed = train_architecture(arch, data, half, space_options=options, seed=3, device="cpu",
                                 checkpoint=tmp_path / "b.pt", resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.summary["history"] == [
        {**h, "seconds": resumed.summary["history"][i]["seconds"], "eta_seconds": resumed.summary["history"][i]["eta_seconds"]}
        for i, h in enumerate(straight.summary["history"])
    ]


def test_resume_and_overwrite_guards(tmp_path):
    arch = get_space("darts").decode(DARTS_V2)
    data = synthetic_data(n_train=32, n_test=8)
    one = Recipe(name="o", epochs=1, batch_size=32, lr=0.05, augment=False)
    with pytest.raises(ConfigError, match="no checkpoint"):
        train_architecture(arch, data, one, space_options=TINY, device="cpu", checkpoint=tmp_path / "c.pt", resume=True)
    train_architecture(arch, data, one, space_options=TINY, device="cpu", checkpoint=tmp_path / "c.pt")
    with pytest.raises(ConfigError, match="--resume"):
        train_architecture(arch, data, one, space_options=TINY, device="cpu", checkpoint=tmp_path / "c.pt")
    with pytest.raises(ConfigError, match="different run"):
        train_architecture(arch, data, one, space_options=TINY, seed=9, device="cpu",
                           checkpoint=tmp_path / "c.pt", resume=True)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_architecture_inputs(tmp_path):
    space = get_space("darts")
    arch = space.decode(DARTS_V2)
    assert load_architecture(space_name="darts", arch_text=DARTS_V2) == arch
    assert load_architecture(space_name=None, arch_json=arch.canonical_json()) == arch
    best = tmp_path / "best_arch.json"
    best.write_text(json.dumps({"score": 1.0, "best_arch": arch.to_dict()}))
    assert load_architecture(space_name=None, arch_file=str(best)) == arch
    report = tmp_path / "report_best_arch.json"  # the layout rznas search writes
    report.write_text(json.dumps({"arch": space.encode(arch), "score": 2.0, "space": "darts",
                                  "genotype": arch.to_dict()["genotype"], "arch_id": arch.id}))
    assert load_architecture(space_name=None, arch_file=str(report)) == arch
    enc = tmp_path / "enc.json"
    enc.write_text(json.dumps({"space": "darts", "encoding": "DARTS_V2"}))
    assert load_architecture(space_name="darts", arch_file=str(enc)) == arch
    with pytest.raises(ConfigError, match="exactly one"):
        load_architecture(space_name="darts")
    with pytest.raises(ConfigError, match="needs --space"):
        load_architecture(space_name=None, arch_text=DARTS_V2)
    with pytest.raises(ConfigError, match="belongs to space"):
        load_architecture(space_name="nb201", arch_json=arch.canonical_json())
    with pytest.raises(ConfigError, match="holds no architecture"):
        load_architecture(space_name=None, arch_json='{"x": 1}')
    with pytest.raises(InvalidArchitecture):
        load_architecture(space_name=None, arch_json=json.dumps(Architecture("darts", [[], []]).to_dict()))


@pytest.mark.slow
def test_cli_trains_on_real_cifar_then_exports(tmp_path, capsys):
    data_dir = require_shared("cifar10/cifar-10-batches-py").parents[1]
    out = tmp_path / "run"
    argv = ["train", "--space", "darts", "--arch", "DARTS_V2", "--space-option", "channels=4",
            "--space-option", "layers=3", "--recipe", "darts", "--epochs", "2", "--batch-size", "64",
            "--train-subset", "384", "--test-subset", "200", "--data-dir", str(data_dir), "--device", "cpu",
            "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["history"]) == 2 and summary["recipe"]["name"] == "darts"
    assert summary["history"][1]["train_loss"] < summary["history"][0]["train_loss"]
    assert summary["space_options"]["auxiliary"] is True
    err = capsys.readouterr().err
    assert "epoch    2/2" in err and "ETA" in err
    assert main(["export", "--checkpoint", str(out / "checkpoint.pt"), "--format", "torch",
                 "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "model.py").is_file()


def test_holdout_data_splits_the_training_split_only():
    from rznas.training import cifar_holdout_data

    data_dir = require_shared("cifar10/cifar-10-batches-py").parents[1]
    data = cifar_holdout_data("cifar10", data_dir=data_dir, train_images=600, val_images=400, seed=1)
    assert (data.num_train, data.num_test) == (600, 400)
    assert data.train.source == "cifar10:train[600]" and data.test.source == "cifar10:train-holdout[400]"
    assert all("test_batch" not in f for f in data.test.files)  # validation never reads the test split
    rows = {bytes(image.flatten().tolist()) for image in torch.cat([data.train.images, data.test.images])}
    assert len(rows) == 1000  # disjoint parts
    again = cifar_holdout_data("cifar10", data_dir=data_dir, train_images=600, val_images=400, seed=1)
    assert torch.equal(again.test.images, data.test.images)  # seeded
    with pytest.raises(ConfigError, match="exceed"):
        cifar_holdout_data("cifar10", data_dir=data_dir, train_images=10_000, val_images=1)
