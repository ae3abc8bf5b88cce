"""Registry behaviour and entry-point plugins (with a real installed distribution)."""
from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import harmonykit
from harmonykit.registry import Registry, RegistryError


def test_register_get_create_list_contains():
    reg = Registry("widget")

    @reg.register
    def small(width: int = 8):
        return ("small", width)

    @reg.register("big_2")
    class Big:
        def __init__(self, width: int = 16):
            self.width = width

    reg.register(lambda: "x", name="big_10")
    assert "small" in reg and "nope" not in reg
    assert reg.get("small") is small
    assert reg.create("small", width=3) == ("small", 3)
    assert reg.create("big_2").width == 16
    assert reg.list() == ["big_2", "big_10", "small"]  # natural order
    assert reg.list("big*") == ["big_2", "big_10"]
    assert reg.list(["small", "big_1*"], exclude="big_10") == ["small"]
    assert len(reg) == 3


def test_duplicate_name_raises_unless_forced():
    reg = Registry("widget")
    reg.register(lambda: 1, name="a")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register(lambda: 2, name="a")
    reg.register(lambda: 3, name="a", force=True)
    assert reg.create("a") == 3


def test_unknown_name_lists_closest():
    with pytest.raises(KeyError) as e:
        harmonykit.MODELS.get("charmnet_idih_splt4")
    assert "charmnet_idih_split4" in str(e.value) and "Did you mean" in str(e.value)


def test_create_with_wrong_kwargs_names_component():
    with pytest.raises(TypeError, match="discriminator 'fc'"):
        harmonykit.DISCRIMINATORS.create("fc", in_chans=3)


@pytest.mark.parametrize(
    "registry,expected",
    [
        (harmonykit.BACKBONES, "idih"),
        (harmonykit.ADAPTERS, "split"),
        (harmonykit.ADAPTERS, "shared"),
        (harmonykit.DISCRIMINATORS, "fc"),
        (harmonykit.STYLE_HEADS, "style_classifier"),
        (harmonykit.MODELS, "charmnet_idih"),
    ],
)
def test_builtin_components_are_registered(registry, expected):
    assert expected in registry


def test_plugin_from_installed_distribution(tmp_path):
    """A separate distribution (dist-info with entry_points.txt on sys.path) registers a
    backbone and a model; they appear without importing the plugin by hand."""
    site = tmp_path / "site"
    pkg = site / "hk_demo_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            import harmonykit
            from harmonykit.registry import BACKBONES, MODELS
            from harmonykit.models.idih import UNetBackbone

            @BACKBONES.register("plugin_unet")
            class PluginUNet(UNetBackbone):
                pass

            @MODELS.register
            def plugin_tiny_idih(pretrained=False, **kwargs):
                from harmonykit.models._builder import build_model
                return build_model("plugin_tiny_idih", dict(backbone="plugin_unet", ch=8, max_channels=16), kwargs)
            """
        )
    )
    dist = site / "hk_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hk-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harmonykit.plugins]\ndemo = hk_demo_plugin\n")
    code = textwrap.dedent(
        """
        import sys
        import harmonykit
        assert "hk_demo_plugin" not in sys.modules
        names = harmonykit.list_models("plugin*")
        assert names == ["plugin_tiny_idih"], names
        assert "plugin_unet" in harmonykit.BACKBONES
        m = harmonykit.create_model("plugin_tiny_idih")
        print(type(m).__name__, m.encoder_channels)
        """
    )
    env_path = str(site)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": env_path}
    )
    assert res.returncode == 0, res.stderr
    assert "PluginUNet [8, 8, 16, 16, 16, 16, 16]" in res.stdout


def test_broken_plugin_does_not_break_library(tmp_path):
    site = tmp_path / "site"
    dist = site / "hk_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hk-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harmonykit.plugins]\nbroken = hk_module_that_does_not_exist\n")
    code = "import harmonykit; from harmonykit.registry import load_plugins; print(sorted(load_plugins())); print(len(harmonykit.list_models()))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(site)})
    assert res.returncode == 0, res.stderr
    assert "['broken']" in res.stdout
    assert "failed to load" in res.stderr
