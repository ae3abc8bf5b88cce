"""create_model / list_models: names, tags, kwargs flow and error messages."""
from __future__ import annotations

import pytest
import torch

import harmonykit
from harmonykit.factory import parse_model_name


def test_list_models_wildcards_and_pretrained():
    names = harmonykit.list_models("charmnet*")
    assert names == sorted(names, key=harmonykit.registry._natural_key) and "charmnet_idih_split6" in names
    assert all(n.startswith("charmnet_") for n in names) and "idih256" not in names
    assert harmonykit.list_models("charmnet_idih*", exclude_filters="*split*") == ["charmnet_idih", "charmnet_idih_shared"]
    tagged = harmonykit.list_models(pretrained=True)
    assert all("." in n for n in tagged) and "idih256.samsung_ihd4" in tagged


def test_user_kwargs_override_and_none_is_dropped():
    m = harmonykit.create_model("idih256", ch=8, max_channels=64, depth=None)
    assert m.model_args["ch"] == 8 and m.model_args["depth"] == 7
    assert m.encoder_channels == [8, 8, 16, 16, 32, 32, 64]


def test_reduced_width_charmnet_matches_fixture_shapes():
    m = harmonykit.create_model("charmnet_idih", ch=8, max_channels=64)
    assert m.feature_channels == 16
    assert sum(p.numel() for p in m.parameters()) == 146_512  # official tiny G


@pytest.mark.parametrize(
    "name,source,rest",
    [
        ("charmnet_idih", "registry", "charmnet_idih"),
        ("idih256.samsung_ihd4", "registry", "idih256.samsung_ihd4"),
        ("hf-hub:org/name", "hf-hub", "org/name"),
        ("hf-hub:org/name@v1.0", "hf-hub", "org/name@v1.0"),
        ("hf_hub:org/name", "hf-hub", "org/name"),
        ("local-dir:/tmp/x", "local-dir", "/tmp/x"),
        ("local-dir:C:\\weights\\x", "local-dir", "C:\\weights\\x"),
    ],
)
def test_parse_model_name(name, source, rest):
    assert parse_model_name(name) == (source, rest)


@pytest.mark.parametrize("name", ["org/name", "./weights", "C:\\weights\\x"])
def test_path_like_names_suggest_a_prefix(name):
    with pytest.raises(ValueError, match="did you mean"):
        harmonykit.create_model(name)


def test_unknown_model_and_tag_and_kwarg():
    with pytest.raises(KeyError, match="Did you mean: idih256"):
        harmonykit.create_model("idih265")
    with pytest.raises(KeyError, match="no weights tag 'idih256.nope'"):
        harmonykit.create_model("idih256.nope")
    with pytest.raises(TypeError, match="unexpected argument.*'width'.*accepted: .*max_channels"):
        harmonykit.create_model("idih256", width=3)


def test_pretrained_via_overlay_file(tmp_path):
    src = harmonykit.create_model("idih256", ch=8, max_channels=16)
    sd = harmonykit.models.idih.unet_to_official_idih(src.state_dict())
    torch.save(sd, tmp_path / "idih256.pth")  # the official release format
    m = harmonykit.create_model("idih256", pretrained=True, ch=8, max_channels=16, pretrained_cfg_overlay={"file": str(tmp_path / "idih256.pth")})
    for k, v in src.state_dict().items():
        torch.testing.assert_close(m.state_dict()[k], v)
    assert m.pretrained_cfg["tag"] == "samsung_ihd4"


def test_pretrained_without_weights_source_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no pretrained weights are registered for 'charmnet_idih'"):
        harmonykit.create_model("charmnet_idih", pretrained=True, ch=8, max_channels=16)
