"""Intrinsic Image Harmonization (Guo et al., CVPR 2021), numerically equal to the official
generator ``retinex_ltm_ifm`` of ``zhenglab/IntrinsicHarmony`` at tag v1.0.

The composite is decomposed into a reflectance and an illumination map by two
encoder-decoders; the harmonized image is their product. Three modules act in between:

- :class:`GlobalLighting` pools a light code of the foreground and of the background;
- :class:`LightingResBlock` transfers the background light onto the foreground of the
  illumination features (the paper's lighting / illumination transfer);
- :class:`InharmonyFreeMatcher` scores every foreground position against every background
  position on inharmony-free features (patch matching), and :class:`HarmonyReconstruction`
  rebuilds both intrinsic feature maps from background patches with that score.

Outputs: ``.image`` = ``reflectance * illumination`` ``(B, 3, H, W)`` on the [0, 1] scale (the
official network output, which is also ``.image_normalized``); ``.extras`` holds
``reflectance`` and ``illumination`` ``(B, 3, H, W)`` in [0, 1] and ``ifm_mean``
``(B, 1, H/8, W/8)`` in [-1, 1] (the channel mean of the inharmony-free features, which the
official training compares with the grey target through a DSSIM loss).

Input conventions handled inside: the official loader feeds ``cat(composite in [0, 1], mask)``
without normalisation, plus the mask resized (nearest) to the content resolution and to the
matcher resolution; the official ``set_input`` hard-codes those as 64x64 / 32x32 (i.e. 256-px
inputs); here they are ``H/4 x W/4`` and ``H/8 x W/8``, identical at 256 px and valid at any
multiple of 8.

Width: the official code fixes the content width at 256 (``reflectance_dim``), which equals
``ngf * 2**n_downsample`` only at its defaults (any other ``ngf`` crashes there); here the
content width is ``ngf * 2**n_downsample`` (``4 * ngf``), so narrow variants can be built.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from harmonykit.convert import CheckpointError, CheckpointLayout, register_layout
from harmonykit.models._builder import finalize_model, pop_pretrained_opts, register_model
from harmonykit.models._pretrained import PretrainedCfg, register_pretrained_cfgs
from harmonykit.models.base import Harmonizer
from harmonykit.models.outputs import HarmonizationOutput

__all__ = [
    "IntrinsicHarmony",
    "LayerNorm2d",
    "ConvNormAct",
    "GlobalLighting",
    "InharmonyFreeMatcher",
    "HarmonyReconstruction",
    "LightTransfer",
    "LightingResBlock",
    "official_to_intrinsic_harmony",
    "intrinsic_harmony_to_official",
    "is_official_intrinsic_harmony",
    "infer_official_args",
    "intrinsic_harmony",
]

OFFICIAL_COMMIT = "b717e90cd77c0b0d12d03ce9495c011f3f0a9e3e"  # tag v1.0


# ----------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------
class LayerNorm2d(nn.Module):
    """MUNIT-style layer norm: per sample over ``(C, H, W)``, ``(x - mean) / (std + eps)`` with
    the unbiased std, then a per-channel affine. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(num_channels).uniform_())  # official init
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        x = (x - flat.mean(1).view(shape)) / (flat.std(1).view(shape) + self.eps)
        affine = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(affine) + self.bias.view(affine)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "in":
        return nn.InstanceNorm2d(channels)
    if kind == "ln":
        return LayerNorm2d(channels)
    if kind == "gn3":
        return nn.GroupNorm(3, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected 'in', 'ln', 'gn3' or 'none'")


def _act(kind: str) -> nn.Module:
    acts = {"lrelu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU, "tanh": nn.Tanh, "none": nn.Identity}
    if kind not in acts:
        raise ValueError(f"unknown activation {kind!r}; expected one of {sorted(acts)}")
    return acts[kind]()


class ConvNormAct(nn.Module):
    """Reflection-padded conv -> norm -> activation (the official ``Conv2dBlock``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, norm: str = "none", act: str = "lrelu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, padding_mode="reflect")
        self.norm = _norm(norm, cout)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResBlock(nn.Module):
    """``x + conv2(conv1(x))``, two 3x3 :class:`ConvNormAct` (the second without activation)."""

    def __init__(self, dim: int, norm: str = "ln") -> None:
        super().__init__()
        self.conv1 = ConvNormAct(dim, dim, 3, 1, 1, norm, "lrelu")
        self.conv2 = ConvNormAct(dim, dim, 3, 1, 1, norm, "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class DownEncoder(nn.Module):
    """7x7 stem, ``n_down`` 4x4/2 convs (channels doubled each), ``n_res`` residual blocks.
    ``(B, cin, H, W) -> (B, dim * 2**n_down, H / 2**n_down, W / 2**n_down)``."""

    def __init__(self, cin: int, dim: int, n_down: int, n_res: int, norm: str, res_norm: str = "ln") -> None:
        super().__init__()
        self.stem = ConvNormAct(cin, dim, 7, 1, 3, norm, "lrelu")
        self.downs = nn.ModuleList()
        for _ in range(n_down):
            self.downs.append(ConvNormAct(dim, 2 * dim, 4, 2, 1, norm, "lrelu"))
            dim *= 2
        self.blocks = nn.Sequential(*[ResBlock(dim, res_norm) for _ in range(n_res)])
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for down in self.downs:
            x = down(x)
        return self.blocks(x)


class ContentDecoder(nn.Module):
    """``n_up`` x (nearest x2 upsample, 5x5 conv + layer norm, channels halved), 7x7 conv + tanh.
    ``(B, C, h, w) -> (B, 3, h * 2**n_up, w * 2**n_up)`` in [-1, 1]."""

    def __init__(self, cin: int, n_up: int, cout: int = 3) -> None:
        super().__init__()
        self.ups = nn.ModuleList()
        dim = cin
        for _ in range(n_up):
            self.ups.append(ConvNormAct(dim, dim // 2, 5, 1, 2, "ln", "lrelu"))
            dim //= 2
        self.head = ConvNormAct(dim, cout, 7, 1, 3, "none", "tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for up in self.ups:
            x = up(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.head(x)


def _masked_means(x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background means ``(B, C)`` of ``x`` ``(B, C, h, w)`` under ``mask`` ``(B, 1, h, w)``."""
    b, c, h, w = x.shape
    fg_area = mask.reshape(b, 1, -1).sum(dim=2)
    bg_area = h * w - fg_area + 1e-8
    fg_area = fg_area + 1e-8
    bg = (x * (1 - mask)).reshape(b, c, -1).sum(dim=2).div(bg_area)
    fg = (x * mask).reshape(b, c, -1).sum(dim=2).div(fg_area)
    return fg, bg


class GlobalLighting(nn.Module):
    """Light codes of the foreground and the background: a conv encoder (no norm), masked
    average pooling, one linear layer. Returns ``(l_fg, l_bg)``, each ``(B, light_mlp_dim)``."""

    def __init__(self, cin: int, dim: int, n_down: int, light_mlp_dim: int) -> None:
        super().__init__()
        self.encoder = DownEncoder(cin, dim, n_down, 0, "none")
        self.fc = nn.Linear(self.encoder.out_channels, light_mlp_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        fg, bg = _masked_means(self.encoder(x), mask)
        return self.fc(fg), self.fc(bg)


class InharmonyFreeMatcher(nn.Module):
    """Inharmony-free features (layer-normed encoder, tanh projection) and the match score of
    every foreground position against every background position.

    Returns ``score`` ``(B, h*w, h, w)`` (channel = background position, softmax over it) and
    the features' channel mean ``(B, 1, h, w)`` in [-1, 1], at ``h, w = H / 2**(n_down), W / 2**n_down``.
    """

    def __init__(self, cin: int, dim: int, n_down: int, n_res: int, cout: int, temperature: float = 10.0) -> None:
        super().__init__()
        self.encoder = DownEncoder(cin, dim, n_down, n_res, "ln", "ln")
        self.proj = ConvNormAct(self.encoder.out_channels, cout, 3, 1, 1, "none", "tanh")
        self.temperature = temperature  # the official ``lamda``

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        content = self.proj(self.encoder(x))
        b, c, h, w = content.shape
        fg = (content * mask).reshape(b, c, -1).transpose(1, 2)  # (B, hw, C)
        bg = (content * (1 - mask)).reshape(b, c, -1)  # (B, C, hw)
        cov = torch.matmul(fg - fg.mean(dim=2, keepdim=True), bg - bg.mean(dim=1, keepdim=True)) / (c - 1)
        score = F.softmax(self.temperature * cov.transpose(1, 2), dim=1)  # (B, hw_bg, hw_fg)
        return score.reshape(b, -1, h, w), content.mean(dim=1, keepdim=True)


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero padding of TensorFlow's ``"same"`` for a ``kernel``/``stride`` patch grid."""
    h, w = x.shape[-2:]
    ph = max(0, (-(-h // stride) - 1) * stride + kernel - h)
    pw = max(0, (-(-w // stride) - 1) * stride + kernel - w)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class HarmonyReconstruction(nn.Module):
    """Rebuild features from background patches weighted by the match score, then
    ``x + relu(conv([x, rebuilt]))`` (the official ``HarmonyRecBlock``, rate 2).

    ``x`` ``(B, C, 2h, 2w)``, ``score`` ``(B, h*w, h, w)`` -> ``(B, C, 2h, 2w)``.
    """

    rate = 2  # patch stride (the official ``rate``); patches are 2*rate wide
    kernel = 4

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvNormAct(2 * channels, channels, 3, 1, 1, "none", "relu")

    def forward(self, x: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        k = self.kernel
        patches = F.unfold(_same_pad(x, k, self.rate), kernel_size=k, stride=self.rate)  # (B, C*k*k, L)
        weight = patches.reshape(b, c, k, k, -1).permute(0, 4, 1, 2, 3).reshape(-1, c, k, k)  # (B*L, C, k, k)
        rebuilt = F.conv_transpose2d(score.reshape(1, -1, *score.shape[-2:]), weight, stride=self.rate, padding=1, groups=b)
        rebuilt = rebuilt.reshape(b, c, *rebuilt.shape[-2:]) / 4
        return self.conv(torch.cat([x, rebuilt], dim=1)) + x


class LightTransfer(nn.Module):
    """Move the foreground of ``x`` ``(B, C, h, w)`` from the foreground light to the
    background light: per-channel colour ratios (softmax over RGB) and intensity shifts from the
    two light codes, applied to an RGB expansion of ``x`` inside ``mask``."""

    def __init__(self, dim: int, light_mlp_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.fc = nn.Linear(light_mlp_dim, 4 * dim)
        self.act = nn.LeakyReLU(0.2)
        self.rgb = ConvNormAct(dim, 3 * dim, 3, 1, 1, "gn3", "lrelu")

    def _decode(self, light: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        code = self.act(self.fc(light))
        colour = torch.softmax(code[:, self.dim:].reshape(-1, 3, self.dim), dim=1)
        return colour, code[:, : self.dim]

    def forward(self, x: torch.Tensor, l_fg: torch.Tensor, l_bg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        colour_fg, intensity_fg = self._decode(l_fg)
        colour_bg, intensity_bg = self._decode(l_bg)
        ratio = colour_bg.div(colour_fg + 1e-8).reshape(b, 3, c, 1, 1)
        moved = (self.rgb(x).reshape(b, 3, c, h, w) * ratio).sum(dim=1) + (intensity_bg - intensity_fg).reshape(b, c, 1, 1)
        return x * (1 - mask) + moved * mask


class LightingResBlock(nn.Module):
    """``x + norm(light2(conv2(lrelu(norm(light1(conv1(x)))))))``; one layer norm used twice."""

    def __init__(self, dim: int, light_mlp_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 1, padding_mode="reflect")
        self.light1 = LightTransfer(dim, light_mlp_dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 1, padding_mode="reflect")
        self.light2 = LightTransfer(dim, light_mlp_dim)
        self.norm = LayerNorm2d(dim)

    def forward(self, x: torch.Tensor, l_fg: torch.Tensor, l_bg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.norm(self.light1(self.conv1(x), l_fg, l_bg, mask)), 0.2)
        return self.norm(self.light2(self.conv2(out), l_fg, l_bg, mask)) + x


# ----------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------
class IntrinsicHarmony(Harmonizer):
    """Guo et al.'s intrinsic harmonization network (official ``retinex_ltm_ifm``).

    Args (official option names):
        ngf: width of the first encoder conv; content width ``ngf * 2**n_downsample``.
        n_downsample: stride-2 stages of the encoders (the matcher has one more).
        r_enc_n_res: residual blocks of the reflectance encoder.
        i_enc_n_res: residual blocks of the illumination encoder.
        illumination_n_res: lighting (illumination transfer) residual blocks.
        ifm_n_res: residual blocks of the inharmony-free matcher.
        inharmonyfree_embed_layers: harmony reconstruction blocks per branch.
        light_mlp_dim: size of the light code.

    Forward: ``model(composite, mask)`` with composite ``(B, 3, H, W)`` in [0, 1] and mask
    ``(B, 1, H, W)`` in [0, 1] (foreground = 1), H and W multiples of ``2**(n_downsample+1)``.
    """

    def __init__(
        self,
        ngf: int = 64,
        n_downsample: int = 2,
        r_enc_n_res: int = 4,
        i_enc_n_res: int = 0,
        illumination_n_res: int = 4,
        ifm_n_res: int = 6,
        inharmonyfree_embed_layers: int = 2,
        light_mlp_dim: int = 8,
    ) -> None:
        super().__init__()
        if ngf < 2 or ngf % 2:
            raise ValueError(f"ngf must be an even number >= 2 (the matcher is ngf/2 wide), got {ngf}")
        if n_downsample < 1:
            raise ValueError(f"n_downsample must be >= 1, got {n_downsample}")
        self.n_downsample = n_downsample
        cin = 4  # RGB + mask
        width = ngf * 2**n_downsample
        self.content_channels = width
        self.reflectance_encoder = DownEncoder(cin, ngf, n_downsample, r_enc_n_res, "in")
        self.reflectance_decoder = ContentDecoder(width, n_downsample)
        self.illumination_encoder = DownEncoder(cin, ngf, n_downsample, i_enc_n_res, "in")
        self.illumination_decoder = ContentDecoder(width, n_downsample)
        self.lighting = GlobalLighting(cin, ngf, n_downsample, light_mlp_dim)
        self.lighting_blocks = nn.ModuleList([LightingResBlock(width, light_mlp_dim) for _ in range(illumination_n_res)])
        self.ifm = InharmonyFreeMatcher(cin, ngf // 2, n_downsample + 1, ifm_n_res, width)
        self.reflectance_rec = nn.ModuleList([HarmonyReconstruction(width) for _ in range(inharmonyfree_embed_layers)])
        self.illumination_rec = nn.ModuleList([HarmonyReconstruction(width) for _ in range(inharmonyfree_embed_layers)])
        self.size_divisor = 2 ** (n_downsample + 1)
        self.min_size = 2 * self.size_divisor
        init_official(self)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor, domain: Optional[str] = None) -> HarmonizationOutput:
        self.resolve_domain(domain)
        self.check_inputs(composite, mask)
        mask = mask.to(composite.dtype)
        h, w = composite.shape[-2:]
        n = self.n_downsample
        x = torch.cat([composite, mask], dim=1)
        mask_c = F.interpolate(mask, size=[h >> n, w >> n])  # official mask_r (64x64 at 256 px)
        mask_m = F.interpolate(mask, size=[h >> (n + 1), w >> (n + 1)])  # official mask_r_32

        l_fg, l_bg = self.lighting(x, mask_c)
        score, ifm_mean = self.ifm(x, mask_m)

        r = self.reflectance_encoder(x)
        for block in self.reflectance_rec:
            r = block(r, score)
        reflectance = self.reflectance_decoder(r) / 2 + 0.5

        i = self.illumination_encoder(x)
        for block in self.lighting_blocks:
            i = block(i, l_fg, l_bg, mask_c)
        score_i = score.detach()  # as the official code: no gradient from this branch into the matcher
        for block in self.illumination_rec:
            i = block(i, score_i)
        illumination = self.illumination_decoder(i) / 2 + 0.5

        harmonized = reflectance * illumination
        return HarmonizationOutput(
            image=harmonized,
            image_normalized=harmonized,
            extras={"reflectance": reflectance, "illumination": illumination, "ifm_mean": ifm_mean},
        )

    def checkpoint_filter_fn(self, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Official v1.0 keys -> ours (other layouts pass through unchanged)."""
        if is_official_intrinsic_harmony(state_dict.keys()):
            return official_to_intrinsic_harmony(state_dict, self)
        return dict(state_dict)


def init_official(model: nn.Module, gain: float = 0.02) -> None:
    """The official init: conv / linear weights ~ N(0, 0.02), biases 0; layer-norm weights
    U(0, 1) (set at construction), group-norm weights 1."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------
# official checkpoint layout
# ----------------------------------------------------------------------------------------
_OFFICIAL_ROOTS = ("reflectanceRec.", "illuminationRec.", "lightingRes.", "reflectance_enc.", "illumination_enc.")
# keys the official loader drops (pix2pix's __patch_instance_norm_state_dict): InstanceNorm stats of old files
_IGNORED = re.compile(r"\.norm\.(running_mean|running_var|num_batches_tracked)$")


def _official_to_model(model: nn.Module, sd: Dict[str, torch.Tensor], domain: Optional[str]):
    if not isinstance(model, IntrinsicHarmony):
        raise CheckpointError("this is an official IntrinsicHarmony (v1.0) checkpoint; load it into 'intrinsic_harmony'")
    return official_to_intrinsic_harmony(sd, model), []


def is_official_intrinsic_harmony(keys: Iterable[str]) -> bool:
    """Whether ``keys`` are in the official v1.0 generator layout."""
    return any(k.startswith(_OFFICIAL_ROOTS[:3]) for k in keys)


def _module_pairs(model: IntrinsicHarmony) -> List[Tuple[str, str]]:
    """(official module path, our module path) for every module with parameters, in the official order."""
    pairs: List[Tuple[str, str]] = []

    def encoder(off: str, ours: str, enc: DownEncoder, res_index: int) -> None:
        pairs.append((f"{off}.0", f"{ours}.stem"))
        pairs.extend((f"{off}.{i + 1}", f"{ours}.downs.{i}") for i in range(len(enc.downs)))
        for j in range(len(enc.blocks)):
            pairs.append((f"{off}.{res_index}.model.{j}.model.0", f"{ours}.blocks.{j}.conv1"))
            pairs.append((f"{off}.{res_index}.model.{j}.model.1", f"{ours}.blocks.{j}.conv2"))

    def decoder(off: str, ours: str, dec: ContentDecoder) -> None:
        pairs.extend((f"{off}.model.{2 * i + 1}", f"{ours}.ups.{i}") for i in range(len(dec.ups)))
        pairs.append((f"{off}.model.{2 * len(dec.ups)}", f"{ours}.head"))

    n = model.n_downsample
    for part in ("reflectance", "illumination"):
        enc = getattr(model, f"{part}_encoder")
        encoder(f"{part}_enc.model", f"{part}_encoder", enc, n + 1)
        decoder(f"{part}_dec", f"{part}_decoder", getattr(model, f"{part}_decoder"))
    encoder("lighting.model", "lighting.encoder", model.lighting.encoder, n + 1)
    pairs.append(("lighting.light_mlp.fc", "lighting.fc"))
    for k in range(len(model.lighting_blocks)):
        off, ours = f"lightingRes.resblocks.{k}", f"lighting_blocks.{k}"
        for t in (1, 2):
            pairs.append((f"{off}.lt_{t}.light_mlp.fc", f"{ours}.light{t}.fc"))
            pairs.append((f"{off}.lt_{t}.rgb_model", f"{ours}.light{t}.rgb"))
            pairs.append((f"{off}.conv_{t}", f"{ours}.conv{t}"))
        pairs.append((f"{off}.norm", f"{ours}.norm"))
    enc = model.ifm.encoder
    encoder("ifm.model", "ifm.encoder", enc, len(enc.downs) + 1)
    pairs.append((f"ifm.model.{len(enc.downs) + 2}", "ifm.proj"))
    for part in ("reflectance", "illumination"):
        for k in range(len(getattr(model, f"{part}_rec"))):
            pairs.append((f"{part}Rec.resblocks.{k}.harmonyRecConv", f"{part}_rec.{k}.conv"))
    return pairs


_LN_NAMES = {"weight": "gamma", "bias": "beta"}


def official_key_map(model: IntrinsicHarmony) -> Dict[str, str]:
    """Official key -> our key for every parameter of ``model``, in the official key order."""
    out: Dict[str, str] = {}
    for off, ours in _module_pairs(model):
        module = model.get_submodule(ours)
        leaves = sorted(module.named_parameters(), key=lambda kv: not kv[0].startswith("norm."))  # norm first, as Conv2dBlock
        for leaf, _ in leaves:
            parent, _, name = leaf.rpartition(".")
            if isinstance(module.get_submodule(parent), LayerNorm2d):  # the official LayerNorm: gamma / beta
                name = _LN_NAMES[name]
            out[f"{off}.{parent + '.' if parent else ''}{name}"] = f"{ours}.{leaf}"
    if len(out) != sum(1 for _ in model.parameters()):
        raise AssertionError("intrinsic_harmony: the official key map does not cover every parameter")
    return out


def official_to_intrinsic_harmony(state_dict: Mapping[str, torch.Tensor], model: IntrinsicHarmony) -> Dict[str, torch.Tensor]:
    """Official v1.0 generator state dict -> ours, for ``model``'s configuration (strict: an
    official key without a place in ``model`` raises, naming it; InstanceNorm running stats
    of old files are dropped, as the official loader does)."""
    from harmonykit.convert import CheckpointError

    mapping = official_key_map(model)
    out: Dict[str, torch.Tensor] = {}
    unexpected = []
    for k, v in state_dict.items():
        if k in mapping:
            out[mapping[k]] = v
        elif not _IGNORED.search(k):
            unexpected.append(k)
    missing = [k for k in mapping if k not in state_dict]
    if unexpected or missing:
        try:
            hint = f"; the checkpoint looks like intrinsic_harmony with {infer_official_args(state_dict)}"
        except (KeyError, IndexError):
            hint = ""
        raise CheckpointError(
            f"official intrinsic_harmony state dict does not fit the model {_config(model)}: "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, {len(missing)} missing keys {missing[:5]}{hint}"
        )
    return out


def intrinsic_harmony_to_official(state_dict: Mapping[str, torch.Tensor], model: IntrinsicHarmony) -> Dict[str, torch.Tensor]:
    """Our state dict -> the official v1.0 layout, in the official key order."""
    from harmonykit.convert import CheckpointError

    mapping = official_key_map(model)
    extra = sorted(set(state_dict) - set(mapping.values()))
    if extra:
        raise CheckpointError(f"keys {extra[:5]} have no place in the official intrinsic_harmony layout")
    return {off: state_dict[ours] for off, ours in mapping.items()}


def _config(model: IntrinsicHarmony) -> Dict[str, Any]:
    return dict(getattr(model, "model_args", {}) or {})


def _count(keys: Iterable[str], pattern: str) -> int:
    return len({m.group(1) for k in keys for m in [re.match(pattern, k)] if m})


def infer_official_args(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """Constructor arguments of an official (or official-layout) state dict, from its keys and shapes."""
    keys = list(state_dict)
    stem = state_dict["reflectance_enc.model.0.conv.weight"]
    n_down = _count(keys, r"^reflectance_enc\.model\.(\d+)\.conv\.weight$") - 1
    return dict(
        ngf=int(stem.shape[0]),
        n_downsample=n_down,
        r_enc_n_res=_count(keys, rf"^reflectance_enc\.model\.{n_down + 1}\.model\.(\d+)\.model\.0\.conv\.weight$"),
        i_enc_n_res=_count(keys, rf"^illumination_enc\.model\.{n_down + 1}\.model\.(\d+)\.model\.0\.conv\.weight$"),
        illumination_n_res=_count(keys, r"^lightingRes\.resblocks\.(\d+)\.conv_1\.weight$"),
        ifm_n_res=_count(keys, rf"^ifm\.model\.{n_down + 2}\.model\.(\d+)\.model\.0\.conv\.weight$"),
        inharmonyfree_embed_layers=_count(keys, r"^reflectanceRec\.resblocks\.(\d+)\.harmonyRecConv\.conv\.weight$"),
        light_mlp_dim=int(state_dict["lighting.light_mlp.fc.weight"].shape[0]),
    )


register_layout(
    CheckpointLayout(
        "official_intrinsic_harmony",
        detect=is_official_intrinsic_harmony,
        to_model=_official_to_model,
        infer=lambda sd: ("intrinsic_harmony", infer_official_args(sd)),
        priority=30,
    )
)


# ----------------------------------------------------------------------------------------
# registered entrypoint
# ----------------------------------------------------------------------------------------
_DEFAULTS: Dict[str, Any] = dict(
    ngf=64, n_downsample=2, r_enc_n_res=4, i_enc_n_res=0, illumination_n_res=4, ifm_n_res=6,
    inharmonyfree_embed_layers=2, light_mlp_dim=8,
)

default_cfgs = {
    "intrinsic_harmony": PretrainedCfg(
        paper_ids="CVPR 2021 (Guo, Zheng, Jiang, Gu, Zheng)",
        paper_name="Intrinsic Image Harmonization",
        input_size=(3, 256, 256),
        size_divisor=8,
        min_size=16,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        license="official code: no licence file at tag v1.0 (MIT added on the main branch in 2022)",
        origin_url="https://github.com/zhenglab/IntrinsicHarmony/tree/v1.0",
        notes="inputs are not normalised (official loader: ToTensor + Normalize(0, 1)); official net_G.pth "
        "(Google Drive / BaiduCloud, see the origin README) loads through checkpoint_path=",
        tiny_args=dict(ngf=8, r_enc_n_res=1, i_enc_n_res=0, illumination_n_res=1, ifm_n_res=1, inharmonyfree_embed_layers=1),
    ),
}
register_pretrained_cfgs(default_cfgs)


@register_model
def intrinsic_harmony(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Intrinsic Image Harmonization (Guo et al., CVPR 2021), official v1.0 ``retinex_ltm_ifm``:
    40,863,086 parameters at the defaults."""
    kwargs = dict(kwargs)
    opts = pop_pretrained_opts(kwargs)
    args = dict(_DEFAULTS)
    args.update({k: v for k, v in kwargs.items() if v is not None})
    unknown = sorted(set(args) - set(_DEFAULTS))
    if unknown:
        raise TypeError(
            f"model 'intrinsic_harmony': unexpected argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(_DEFAULTS))}"
        )
    return finalize_model(IntrinsicHarmony(**args), "intrinsic_harmony", args, pretrained=pretrained, **opts)
