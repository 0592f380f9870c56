"""The model zoo: shapes, parameter counts, P1's scale-invariant form, errors, seeding.

Numerical checks run in float64 (conftest). Deep models use width 0.25 and batches of 3-6
samples so that the whole file runs in seconds on a CPU.
"""

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

import svag.models.norm as norm_module
from svag.models import (
    GN_GROUPS,
    MODELS,
    NORMS,
    SCALE_INVARIANT_EPS,
    build_model,
    default_device,
    gn_groups,
    trainable_parameters,
)

SHAPES = [(1, 40), (1, 28, 28), (3, 32, 32)]  # MNIST-1D, Fashion-MNIST, CIFAR samples
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _width(name):
    return 1.0 if name in ("mlp", "cnn") else 0.25


def _build(name, shape, norm="bn", scale_invariant=False, width=None, num_classes=7):
    w = _width(name) if width is None else width
    return build_model(
        name,
        input_shape=shape,
        num_classes=num_classes,
        norm=norm,
        scale_invariant=scale_invariant,
        width=w,
    )


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _hidden_weight_layers(model):
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS) and m is not model.head]


def _check_logits(model, shape, batch=3, num_classes=7):
    x = torch.randn(batch, *shape)
    out = model.train()(x)
    assert out.shape == (batch, num_classes)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    assert model.eval()(x).shape == (batch, num_classes)


# -- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "scale_invariant"),
    [(norm, si) for norm in NORMS for si in (False, True) if not (si and norm == "none")],  # SI needs a norm
)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MODELS)
def test_every_model_gives_logits(name, norm, shape, scale_invariant):
    model = _build(name, shape, norm, scale_invariant)
    _check_logits(model, shape)


@pytest.mark.parametrize("norm", NORMS)
def test_mlp_takes_vectors(norm):
    _check_logits(_build("mlp", (12,), norm), (12,))


@pytest.mark.parametrize("name", ["cnn", "vgg16", "vgg19", "preresnet32", "resnet32"])
@pytest.mark.parametrize("shape", [(1, 3), (2, 5, 5)])
def test_tiny_inputs_still_run(name, shape):
    """Pools stop at size 1 and the global average pool feeds the head."""
    _check_logits(_build(name, shape, "bn"), shape)


@pytest.mark.parametrize("name", ["cnn", "preresnet32", "vgg16"])
def test_conv_layers_follow_input_rank(name):
    convs_1d = [m for m in _build(name, (1, 40)).modules() if isinstance(m, nn.Conv2d)]
    convs_2d = [m for m in _build(name, (1, 28, 28)).modules() if isinstance(m, nn.Conv1d)]
    assert convs_1d == [] and convs_2d == []
    assert any(isinstance(m, nn.Conv1d) for m in _build(name, (1, 40)).modules())


# -- parameter counts (independent formulas) ----------------------------------------------------


def _resnet_count(preact: bool, classes: int = 10, c_img: int = 3) -> int:
    """Conv weights + BN (γ, β) + head, counted from the architecture's description."""
    c = [16, 32, 64]
    total = c_img * 16 * 9 + (0 if preact else 2 * 16)  # stem conv (+ its BN in ResNet)
    c_in = 16
    for c_out in c:
        for _ in range(5):
            total += 9 * c_in * c_out + 9 * c_out * c_out
            total += 2 * c_in + 2 * c_out if preact else 4 * c_out  # the blocks' BNs
            if preact and c_in != c_out:
                total += c_in * c_out  # 1×1 projection
            c_in = c_out
    total += 2 * 64 if preact else 0  # final BN of the pre-activation net
    return total + 64 * classes + classes


def _vgg_count(cfg, classes=10, c_img=3):
    total, c_in = 0, c_img
    for c in cfg:
        if c != "M":
            total += 9 * c_in * c + 2 * c
            c_in = c
    return total + c_in * classes + classes


def test_parameter_counts_of_the_cifar_nets():
    from svag.models.vgg import VGG_CONFIGS

    def count(name):
        return _n_params(build_model(name, input_shape=(3, 32, 32), num_classes=10, norm="bn"))

    pre, res = count("preresnet32"), count("resnet32")
    assert pre == _resnet_count(preact=True)
    assert res == _resnet_count(preact=False)
    assert 0.45e6 < pre < 0.48e6 and 0.45e6 < res < 0.47e6  # "0.46M" of the CIFAR ResNet-32
    assert count("vgg16") == _vgg_count(VGG_CONFIGS["vgg16"])
    assert count("vgg19") == _vgg_count(VGG_CONFIGS["vgg19"])
    assert 14.6e6 < count("vgg16") < 14.8e6 and 19.9e6 < count("vgg19") < 20.1e6


def test_scale_invariant_form_only_drops_affine_parameters():
    """Non-affine norms remove exactly 2 parameters per normalized channel (PreResNet-32 BN)."""
    plain = build_model("preresnet32", input_shape=(3, 32, 32), num_classes=10, norm="bn")
    si = build_model("preresnet32", input_shape=(3, 32, 32), num_classes=10, scale_invariant=True)
    affine = sum(m.weight.numel() + m.bias.numel() for m in plain.modules() if isinstance(m, BATCH_NORMS))
    assert _n_params(si) == _n_params(plain) - affine


def test_width_multiplies_channels():
    base = build_model("preresnet32", input_shape=(3, 32, 32), num_classes=10)
    wide = build_model("preresnet32", input_shape=(3, 32, 32), num_classes=10, width=4)
    convs = [m for m in wide.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs][:2] == [64, 64]
    assert 14 < _n_params(wide) / _n_params(base) < 16.5  # conv weights grow like width²
    narrow = build_model("cnn", input_shape=(1, 40), num_classes=10, width=0.5)
    assert [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv1d)] == [16, 32]


# -- scale invariance (P1 §3) -------------------------------------------------------------------


def _rescale_hidden_weights(model, seed):
    """Multiply every weight tensor but the head's by its own c ~ U(0.2, 5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in _hidden_weight_layers(model):
            m.weight.mul_(0.2 + 4.8 * torch.rand((), generator=g).item())


def _calibrate(model, x):
    """Running statistics = the batch statistics of ``x`` (cumulative average over one batch)."""
    for m in model.modules():
        if isinstance(m, BATCH_NORMS):
            m.momentum = None
            m.reset_running_stats()
    with torch.no_grad():
        model.train()(x)
    return model.eval()


@pytest.mark.parametrize("shape", [(1, 40), (2, 12, 12)])
@pytest.mark.parametrize("norm", ["bn", "gn"])
@pytest.mark.parametrize("name", MODELS)
def test_scale_invariant_outputs_do_not_depend_on_weight_scales(name, norm, shape, monkeypatch):
    """f(x; cW) = f(x; W) for every hidden weight tensor, in train mode (batch statistics) and in
    eval mode (running statistics of the same calibration batch).

    Exact up to eps: with eps = 1e-30 (invisible next to any variance in float64) the outputs
    agree to 1e-10; with the real eps = 1e-12 the error eps/(2·Var z) against the smallest
    variances here (~1e-5 after c = 0.2) stays below 1e-7."""
    x_cal, x = torch.randn(6, *shape), torch.randn(5, *shape)
    for eps, tol in ((SCALE_INVARIANT_EPS, 1e-7), (1e-30, 1e-10)):
        monkeypatch.setattr(norm_module, "SCALE_INVARIANT_EPS", eps)
        torch.manual_seed(0)
        model = _build(name, shape, norm, scale_invariant=True)
        scaled = copy.deepcopy(model)
        _rescale_hidden_weights(scaled, seed=1)
        with torch.no_grad():
            torch.testing.assert_close(scaled.train()(x), model.train()(x), rtol=tol, atol=tol)
        _calibrate(model, x_cal)
        _calibrate(scaled, x_cal)
        with torch.no_grad():
            torch.testing.assert_close(scaled(x), model(x), rtol=tol, atol=tol)
            # the check can fail: the frozen head is not normalized, so scaling it changes f
            scaled.head.weight.mul_(2.0)
            assert (scaled(x) - model(x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["preresnet32", "mlp"])
def test_the_plain_nets_are_not_scale_invariant(name):
    """Negative control: without the scale-invariant form, rescaling weights changes f."""
    shape = (1, 40)
    model = _build(name, shape, "bn" if name == "preresnet32" else "none")
    scaled = copy.deepcopy(model)
    _rescale_hidden_weights(scaled, seed=1)
    x = torch.randn(5, *shape)
    with torch.no_grad():
        assert (scaled.train()(x) - model.train()(x)).abs().max() > 1e-3


def _leaf_call_order(model, x):
    order = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return order


@pytest.mark.parametrize("norm", ["bn", "gn"])
@pytest.mark.parametrize("name", MODELS)
def test_scale_invariant_structure(name, norm):
    """Non-affine norms with eps = SCALE_INVARIANT_EPS, no bias before them, each hidden weight
    layer directly followed by a norm, and the head frozen (not among the trainable parameters)."""
    shape = (12,) if name == "mlp" else (1, 40)
    model = _build(name, shape, norm, scale_invariant=True)
    norms = [m for m in model.modules() if isinstance(m, NORM_LAYERS)]
    assert norms and all(m.weight is None and m.bias is None for m in norms)
    assert all(m.eps == SCALE_INVARIANT_EPS for m in norms)
    assert all(isinstance(m, nn.GroupNorm) == (norm == "gn") for m in norms)
    hidden = _hidden_weight_layers(model)
    assert all(m.bias is None for m in hidden)
    order = _leaf_call_order(model, torch.randn(4, *shape))
    for m in hidden:
        follower = order[order.index(m) + 1]
        assert isinstance(follower, NORM_LAYERS), f"{m} is followed by {follower}"
    assert not any(p.requires_grad for p in model.head.parameters())
    head_ids = {id(p) for p in model.head.parameters()}
    trainable = trainable_parameters(model)
    assert {id(p) for p in trainable} == {id(p) for p in model.parameters()} - head_ids
    assert all(p.requires_grad for p in trainable)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", MODELS)
def test_plain_form_is_fully_trainable(name, norm):
    model = _build(name, (1, 40), norm)
    assert trainable_parameters(model) == list(model.parameters())
    norms = [m for m in model.modules() if isinstance(m, NORM_LAYERS)]
    assert all(m.weight is not None and m.bias is not None for m in norms)
    assert (len(norms) == 0) == (norm == "none")
    # a bias only in the unnormalized net
    assert all((m.bias is not None) == (norm == "none") for m in _hidden_weight_layers(model))
    assert model.head.bias is not None


# -- GroupNorm groups ---------------------------------------------------------------------------


def test_gn_groups_is_the_largest_divisor_up_to_8():
    expected = {1: 1, 4: 4, 7: 7, 8: 8, 9: 3, 10: 5, 12: 6, 13: 1, 16: 8, 24: 8, 36: 6, 64: 8}
    assert {c: gn_groups(c) for c in expected} == expected
    assert GN_GROUPS == 8


@pytest.mark.parametrize("width", [1.0, 0.25])
@pytest.mark.parametrize("name", MODELS)
def test_group_norm_uses_8_groups(name, width):
    shape = (1, 40)
    model = _build(name, shape, "gn", width=width)
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert gns
    for m in gns:
        assert m.num_groups == gn_groups(m.num_channels)
        if m.num_channels % 8 == 0:
            assert m.num_groups == 8
    if width == 1.0:
        assert all(m.num_groups == 8 for m in gns)


# -- errors -------------------------------------------------------------------------------------


def test_bad_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"model must be one of .*'mlp'.*'resnet32'.*got 'resnet18'"):
        build_model("resnet18", input_shape=(3, 32, 32), num_classes=10)


@pytest.mark.parametrize("norm", ["ln", "BN", None])
def test_bad_norm_lists_the_valid_ones(norm):
    with pytest.raises(ValueError, match=r"norm must be one of \('bn', 'gn', 'none'\)"):
        build_model("mlp", input_shape=(40,), num_classes=10, norm=norm)


@pytest.mark.parametrize("name", MODELS)
def test_scale_invariant_needs_a_normalization(name):
    with pytest.raises(ValueError, match=r"scale_invariant=True needs a normalization.*got 'none'"):
        build_model(name, input_shape=(1, 40), num_classes=10, norm="none", scale_invariant=True)


@pytest.mark.parametrize("name", ["cnn", "preresnet32", "vgg16", "vgg19", "resnet32"])
def test_conv_models_reject_vectors(name):
    with pytest.raises(ValueError, match=rf"model '{name}' needs input_shape .*got \(20,\).*use 'mlp'"):
        build_model(name, input_shape=(20,), num_classes=10)


@pytest.mark.parametrize("width", [0, -1.0, math.nan, math.inf, "2", True])
def test_bad_width(width):
    with pytest.raises(ValueError, match="width must be a finite real number > 0"):
        build_model("mlp", input_shape=(40,), num_classes=10, width=width)


@pytest.mark.parametrize("shape", [(), (1, 2, 3, 4), (0, 40), (1, 2.5), "40", 40])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape must be the shape of one sample"):
        build_model("mlp", input_shape=shape, num_classes=10)


@pytest.mark.parametrize("num_classes", [0, 2.0, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        build_model("mlp", input_shape=(40,), num_classes=num_classes)


# -- seeding, devices, stacking -----------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_seed_makes_the_model_deterministic(name):
    def state(seed):
        torch.manual_seed(seed)
        return _build(name, (1, 40), "bn").state_dict()

    a, b, c = state(3), state(3), state(4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_default_device():
    device = default_device()
    assert isinstance(device, torch.device)
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif torch.backends.mps.is_available():
        assert device.type == "mps"
    else:
        assert device.type == "cpu"
    assert torch.zeros(1, device=device).device.type == device.type


@pytest.mark.parametrize("norm", ["bn", "gn"])
@pytest.mark.parametrize("name", MODELS)
def test_replicas_stack_under_vmap(name, norm):
    """K replicas run as one vmapped functional_call over stacked parameters and buffers (GN in
    train mode, BN in eval mode) and agree with the replicas run one by one."""
    shape = (1, 40)
    train = norm == "gn"
    replicas = [_build(name, shape, norm).train(train) for _ in range(3)]
    params, buffers = stack_module_state(replicas)
    skeleton = copy.deepcopy(replicas[0]).to("meta")
    x = torch.randn(4, *shape)

    def f(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    with torch.no_grad():
        stacked = torch.vmap(f, in_dims=(0, 0, None))(params, buffers, x)
        torch.testing.assert_close(stacked, torch.stack([m(x) for m in replicas]), rtol=1e-12, atol=1e-12)
