"""Every registered model, parametrized over the registry (new entries are tested for free)."""
from __future__ import annotations

import pytest
import torch

import harmonykit

TINY = dict(ch=8, max_channels=16)
ALL_MODELS = harmonykit.list_models()


def tiny(name):
    """The model's narrow configuration (declared in its PretrainedCfg)."""
    return harmonykit.create_model(name, **harmonykit.get_pretrained_cfg(name).tiny_args)


def _inputs(model, b=2):
    s = max(model.pretrained_cfg["min_size"], 32)
    s = -(-s // model.size_divisor) * model.size_divisor
    return torch.rand(b, 3, s, s), (torch.rand(b, 1, s, s) > 0.6).float()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_contract(name):
    """One contract: model(composite, mask, domain=None) -> HarmonizationOutput; .domains and
    .default_domain on every model."""
    model = tiny(name).eval()
    assert isinstance(model, harmonykit.models.Harmonizer)
    assert model.domains and model.default_domain in model.domains
    comp, mask = _inputs(model)
    with torch.no_grad():
        out = model(comp, mask, domain=None)
        again = model(comp, mask, domain=model.default_domain)
    torch.testing.assert_close(out.image, again.image)
    assert out.image.shape == comp.shape and out.image_normalized.shape == comp.shape
    assert torch.isfinite(out.image).all()
    if out.attention is not None:
        assert out.attention.shape == mask.shape and 0 <= out.attention.min() and out.attention.max() <= 1
    if len(model.domains) > 1:
        c = model.feature_channels
        assert out.features_in.shape[1] == c and out.features_out.shape == out.features_in.shape
    with pytest.raises(ValueError, match="unknown domain 'nowhere'"):
        model(comp, mask, domain="nowhere")


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n.startswith(("idih", "dih", "charmnet_idih"))])
def test_unet_image_is_denormalised_official_output(name):
    model = tiny(name).eval()
    comp, mask = _inputs(model)
    with torch.no_grad():
        out = model(comp, mask)
    # .image is the official output mapped back by x*std+mean
    torch.testing.assert_close(out.image, harmonykit.normalization.denormalize(out.image_normalized))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_every_parameter_of_the_branch(name):
    model = tiny(name).train()
    comp, mask = _inputs(model)
    if getattr(model, "weight_free", False):  # no parameters: the gradient reaches the composite
        assert not list(model.parameters())
        comp.requires_grad_(True)
        model(comp, mask).image.square().mean().backward()
        assert comp.grad is not None and torch.isfinite(comp.grad).all()
        return
    for d in model.domains:
        out = model(comp, mask, domain=d)
        out.image.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", [n for n in ALL_MODELS])
def test_invalid_input_size_says_which_sizes_work(name):
    model = tiny(name)
    if model.size_divisor == 1:
        pytest.skip(f"{name} accepts any size >= {model.min_size}")
    s = model.pretrained_cfg["min_size"]
    with pytest.raises(ValueError, match=rf"multiples of {model.size_divisor} and at least {s}"):
        model(torch.rand(1, 3, s + 3, s), torch.ones(1, 1, s + 3, s))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_uint8_and_0_255_inputs_are_refused(name):
    """Rough edge: a uint8 tensor returned NaN silently; 0..255 floats were clipped."""
    model = tiny(name).eval()
    comp, mask = _inputs(model, b=1)
    with pytest.raises(TypeError, match="floating-point tensor in \\[0, 1\\]"):
        model((comp * 255).to(torch.uint8), mask)
    with pytest.raises(ValueError, match="inputs must be in \\[0, 1\\]"):
        model(comp * 255, mask)


def test_readme_snippet_runs_at_batch_one():
    """Rough edge: create_model(...) then net(composite, mask) failed at batch 1 (train mode BN)."""
    net = harmonykit.create_model("charmnet_idih", **TINY)
    assert not net.training, "create_model returns a model in eval mode (call .train() to train)"
    out = net(torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256))
    assert out.image.shape == (1, 3, 256, 256)


def test_non_square_sizes_run():
    model = harmonykit.create_model("charmnet_idih", **TINY).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 384, 256), torch.ones(1, 1, 384, 256), domain="rendered")
    assert out.image.shape == (1, 3, 384, 256)


def test_bad_mask_and_domain_errors():
    model = harmonykit.create_model("charmnet_idih", **TINY)
    with pytest.raises(ValueError, match="mask must be a"):
        model(torch.rand(1, 3, 256, 256), torch.ones(1, 3, 256, 256))
    with pytest.raises(ValueError, match="does not match composite"):
        model(torch.rand(1, 3, 256, 256), torch.ones(1, 1, 384, 256))
    with pytest.raises(ValueError, match="unknown domain 'synthetic'"):
        model(torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256), domain="synthetic")


@pytest.mark.parametrize(
    "name,count",
    [("idih256", 8_301_284), ("dih256", 8_301_507), ("idih512", 16_692_964), ("charmnet_idih", 9_257_544)],
)
def test_parameter_counts_equal_official(name, count):
    model = harmonykit.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


def test_discriminator_and_style_head_counts():
    d = harmonykit.DISCRIMINATORS.create("fc", in_channels=128, width=64)
    h = harmonykit.STYLE_HEADS.create("style_classifier", in_channels=128, width=64, num_styles=10)
    assert sum(p.numel() for p in d.parameters()) == 92_545
    assert sum(p.numel() for p in h.parameters()) == 98_554


@pytest.mark.parametrize("k", range(1, 7))
def test_every_split_depth_builds_and_runs(k):
    model = harmonykit.create_model("charmnet_idih", split_depth=k, **TINY).eval()
    assert model.feature_channels == model.encoder_channels[k - 1] if hasattr(model, "encoder_channels") else True
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256), domain="real")
    assert out.features_in.shape[-1] == 256 // 2**k
    assert out.features_out.shape == out.features_in.shape
    # each domain has its own first k encoder and last k decoder stages, nothing else
    own = {n.split(".")[2] for n, _ in model.named_parameters() if n.startswith("encoders.real.")}
    assert own == {str(i) for i in range(k)}


def test_split_depth_out_of_range():
    with pytest.raises(ValueError, match="split_depth must be in 1..6"):
        harmonykit.create_model("charmnet_idih", split_depth=7)


def test_domains_are_independent_branches():
    model = harmonykit.create_model("charmnet_idih", **TINY).eval()
    comp, mask = torch.rand(1, 3, 256, 256), torch.ones(1, 1, 256, 256)
    with torch.no_grad():
        a = model(comp, mask, domain="rendered").image
        b = model(comp, mask, domain="real").image
        c = model(comp, mask).image  # default domain = real, as the official test
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, c)


@pytest.mark.parametrize("pool", ["official", "global"])
def test_style_head_pooling_modes(pool):
    head = harmonykit.STYLE_HEADS.create("style_classifier", in_channels=16, width=8, pool=pool).eval()
    f16 = torch.randn(2, 16, 16, 16)
    assert head(f16).shape == (2, 10)
    f32 = torch.randn(2, 16, 32, 32)  # 512-px inputs
    expected = (2, 10, 2, 2) if pool == "official" else (2, 10)
    assert tuple(head(f32).shape) == expected


def test_global_pooling_equals_official_at_256():
    a = harmonykit.STYLE_HEADS.create("style_classifier", in_channels=16, width=8, pool="official").eval()
    b = harmonykit.STYLE_HEADS.create("style_classifier", in_channels=16, width=8, pool="global").eval()
    b.load_state_dict(a.state_dict())
    f = torch.randn(3, 16, 16, 16)
    torch.testing.assert_close(a(f), b(f))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_normalize_target_maps_into_the_output_space(name):
    """The losses compare .image_normalized with normalize_target(real): an output equal to the
    input composite (a perfect prediction of it) must give the same numbers in both spaces."""
    model = tiny(name).eval()
    comp, mask = _inputs(model, b=1)
    with torch.no_grad():
        out = model(comp, mask)
    torch.testing.assert_close(model.normalize_target(out.image), out.image_normalized, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_configuration_runs_with_domain_none(name):
    """Every registered name, at its DEFAULT arguments: create_model(name).eval()(x, mask, domain=None)."""
    model = harmonykit.create_model(name).eval()
    s = -(-max(model.min_size, 64) // model.size_divisor) * model.size_divisor
    x, m = torch.rand(1, 3, s, s), (torch.rand(1, 1, s, s) > 0.5).float()
    with torch.no_grad():
        out = model(x, m, domain=None)
    assert out.image.shape == x.shape and torch.isfinite(out.image).all()
