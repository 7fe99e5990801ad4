"""CVNet: stem -> n stages of two DFC modules with transitions -> global + part head.

Read top-down: :class:`CVNetOutput`, :class:`CVNet`, then one registered
builder per variant (the paper's model and its ablations in Tables 4 and 5 and Figure 5, plus
``cvnet_tiny`` for tests). ``../shared/design/cvnet-model.md`` explains every [choice] below.
"""

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvnet.core.errors import ConfigError
from cvnet.models.dfc import (MODULES_PER_STAGE, OPS_PER_MODULE, OPS_PER_STAGE, PAPER_OPS, DFCBlock,
                              parse_ops)
from cvnet.models.layers import Bottleneck, Transition, init_weights
from cvnet.models.registry import register_model
from cvnet.models.stems import MSLStem, ResNetStem

STEMS = ("msl", "resnet")
STAGES = ("dfc", "resnet")


class CVNetOutput(NamedTuple):
    """What a train-mode forward returns for the losses.

    Attributes:
        global_features: (B, widths[-1]) pooled last-stage features, before the BNNeck
            (triplet loss input).
        part_features: (B, 2 * part_channels) top/bottom-half part features, before the BNNeck.
        global_logits: (B, num_classes) ID logits from the BNNeck'd global feature; ``None`` when
            the model has no classifiers (``num_classes=0``).
        part_logits: (B, num_classes) ID logits from the part feature, or ``None``.
    """

    global_features: torch.Tensor
    part_features: torch.Tensor
    global_logits: Optional[torch.Tensor]
    part_logits: Optional[torch.Tensor]


class CVNet(nn.Module):
    """The cross-view vehicle ReID network of the CVNet paper.

    In eval mode ``model(x)`` maps an image batch (B, 3, H, W) float32, RGB normalised with the
    ImageNet mean/std, to the retrieval embedding (B, widths[-1] + 2 * part_channels), 1024-d for
    the paper's model: the concatenated global and part features, before the BNNeck and not
    L2-normalised (rank with cosine similarity). H and W must be multiples of
    ``input_divisor`` (32 for three stages); the paper uses 256x256. In train mode it returns a
    :class:`CVNetOutput`.

    Args:
        num_classes: Training identities; 0 builds no classifiers (the model the paper counts).
        widths: Output channels of each stage; its length is the number of stages n
            [choice: 256, 512, 768].
        ops: Filtration op codes, four per stage (see :mod:`cvnet.models.dfc`), or the path of
            an ops JSON file from ``cvnet-search``; the paper's searched sequence by default.
            ``"M" * 12`` builds the search supernet. Ignored when ``stage="resnet"``.
        stem: ``"msl"`` (the paper) or ``"resnet"`` (7x7 conv stem, ablation).
        stage: ``"dfc"`` (the paper) or ``"resnet"`` (bottleneck stages, ablation).
        in_channels: Image channels.
        stem_channels: Stem output channels [choice: 64].
        msl_branch_channels: Width of the MSL's branches [choice: 32].
        part_channels: Channels of the part branch's 1x1 conv [choice: 128, as MSINet].
        mid_ratio: Branch width of a DFC module is ``out_channels // mid_ratio`` [choice: 4].
        deep_lconvs: LConvs per op slot in the deep branch [paper ratio 3:1 -> 3].
        shallow_lconvs: LConvs per op slot in the shallow branch [1].
        gate_reduction: Channel reduction of Gate ops [choice: 16].
        collab_kernel: Kernel of the collaboration conv [paper: 7].
    """

    def __init__(self, *, num_classes: int = 0, widths: Sequence[int] = (256, 512, 768),
                 ops: Union[str, Sequence[str]] = PAPER_OPS, stem: str = "msl",
                 stage: str = "dfc", in_channels: int = 3, stem_channels: int = 64,
                 msl_branch_channels: int = 32, part_channels: int = 128, mid_ratio: int = 4,
                 deep_lconvs: int = 3, shallow_lconvs: int = 1, gate_reduction: int = 16,
                 collab_kernel: int = 7):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        ops = parse_ops(ops)
        _check_config(num_classes, widths, ops, stem, stage)
        self.num_classes = num_classes
        self.widths = widths
        self.ops = ops if stage == "dfc" else ()

        if stem == "msl":
            self.stem = MSLStem(in_channels, stem_channels, branch_channels=msl_branch_channels)
        else:
            self.stem = ResNetStem(in_channels, stem_channels)

        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        in_ch = stem_channels
        for i, width in enumerate(widths):
            if i > 0:
                self.transitions.append(Transition(in_ch))
            blocks = []
            for j in range(MODULES_PER_STAGE):
                block_in = in_ch if j == 0 else width
                if stage == "dfc":
                    first = i * OPS_PER_STAGE + j * OPS_PER_MODULE
                    blocks.append(DFCBlock(block_in, width, ops[first:first + OPS_PER_MODULE],
                                           mid_ratio=mid_ratio, deep_lconvs=deep_lconvs,
                                           shallow_lconvs=shallow_lconvs,
                                           gate_reduction=gate_reduction,
                                           collab_kernel=collab_kernel))
                else:
                    blocks.append(Bottleneck(block_in, width, mid_ratio=mid_ratio))
            self.stages.append(nn.Sequential(*blocks))
            in_ch = width

        # Part branch: reads the last stage's input (stage 2 after its transition, 512x16x16).
        part_in = widths[-2] if len(widths) > 1 else stem_channels
        self.part_conv = nn.Conv2d(part_in, part_channels, 1)

        # BNNeck (train only): Linear (no bias) -> BatchNorm1d with a frozen bias, per feature.
        global_dim, part_dim = widths[-1], 2 * part_channels
        self.global_fc = nn.Linear(global_dim, global_dim, bias=False)
        self.global_bn = nn.BatchNorm1d(global_dim)
        self.part_fc = nn.Linear(part_dim, part_dim, bias=False)
        self.part_bn = nn.BatchNorm1d(part_dim)
        if num_classes > 0:
            self.global_classifier = nn.Linear(global_dim, num_classes, bias=False)
            self.part_classifier = nn.Linear(part_dim, num_classes, bias=False)
        else:
            self.global_classifier = None
            self.part_classifier = None

        self.embedding_dim = global_dim + part_dim
        self.input_divisor = 4 * 2 ** (len(widths) - 1) * 2
        init_weights(self)
        for bn in (self.global_bn, self.part_bn):
            bn.bias.requires_grad_(False)
        for classifier in (self.global_classifier, self.part_classifier):
            if classifier is not None:
                nn.init.normal_(classifier.weight, 0.0, 0.001)

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Runs stem and stages.

        Args:
            x: (B, 3, H, W) normalised RGB images.

        Returns:
            The last stage's output (B, widths[-1], H/2^(n+1), W/2^(n+1)) and its input, which
            the part branch reads (B, widths[-2], H/2^n, W/2^n).
        """
        x = self.stem(x)
        part_input = x
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.transitions[i - 1](x)
            part_input = x
            x = stage(x)
        return x, part_input

    def forward_head(self, features: torch.Tensor,
                     part_input: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pools the global (B, widths[-1]) and part (B, 2 * part_channels) features."""
        global_features = features.mean(dim=(2, 3))
        halves = F.adaptive_avg_pool2d(self.part_conv(part_input), (2, 1))  # (B, P, 2, 1)
        part_features = torch.cat([halves[:, :, 0:1], halves[:, :, 1:2]], dim=1).flatten(1)
        return global_features, part_features

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, CVNetOutput]:
        global_features, part_features = self.forward_head(*self.forward_features(x))
        if not self.training:
            return torch.cat([global_features, part_features], dim=1)
        global_logits = part_logits = None
        if self.global_classifier is not None:
            global_logits = self.global_classifier(self.global_bn(self.global_fc(global_features)))
            part_logits = self.part_classifier(self.part_bn(self.part_fc(part_features)))
        return CVNetOutput(global_features, part_features, global_logits, part_logits)


def _check_config(num_classes: int, widths: Tuple[int, ...], ops: Tuple[str, ...], stem: str,
                  stage: str) -> None:
    if num_classes < 0:
        raise ConfigError(f"num_classes must be >= 0 (0 = no classifiers), got {num_classes}")
    if not 1 <= len(widths) <= 4 or any(w <= 0 for w in widths):
        raise ConfigError(f"widths must hold 1 to 4 positive stage widths, got {list(widths)}")
    if stem not in STEMS:
        raise ConfigError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if stage == "dfc" and len(ops) != OPS_PER_STAGE * len(widths):
        raise ConfigError(f"{len(widths)} DFC stages need {OPS_PER_STAGE * len(widths)} "
                          f"filtration ops ({OPS_PER_STAGE} per stage), got {len(ops)}: "
                          f"{''.join(ops)}; use paper_ops({len(widths)}) for the paper's")


def paper_ops(num_stages: int) -> Tuple[str, ...]:
    """The paper's searched op sequence fitted to ``num_stages`` stages.

    The paper searched 12 ops for n = 3. Fewer stages keep the first 4n; a fourth stage, whose
    ops the paper does not give, repeats stage 3's four.
    """
    if num_stages <= 3:
        return PAPER_OPS[:OPS_PER_STAGE * num_stages]
    return PAPER_OPS + PAPER_OPS[-OPS_PER_STAGE:] * (num_stages - 3)


_STAGE_WIDTHS = (256, 512, 768, 1024)


@register_model
def cvnet(**kwargs) -> CVNet:
    """The paper's CVNet: MSL stem, 3 DFC stages with the searched ops, ~4.4M parameters."""
    return CVNet(**kwargs)


@register_model
def cvnet_baseline(**kwargs) -> CVNet:
    """Table 4 baseline: ResNet 7x7 stem and ResNet bottleneck stages."""
    return CVNet(**{"stem": "resnet", "stage": "resnet", **kwargs})


@register_model
def cvnet_msl_only(**kwargs) -> CVNet:
    """Table 4 "Res. 1 -> MSL": MSL stem with ResNet bottleneck stages."""
    return CVNet(**{"stage": "resnet", **kwargs})


@register_model
def cvnet_dfc_only(**kwargs) -> CVNet:
    """Table 4 "Res. S -> DFC": ResNet 7x7 stem with DFC stages."""
    return CVNet(**{"stem": "resnet", **kwargs})


@register_model
def cvnet_ops_none(**kwargs) -> CVNet:
    """Figure 5 "None": every filtration op is None."""
    return CVNet(**{"ops": "N" * len(PAPER_OPS), **kwargs})


@register_model
def cvnet_ops_exchange(**kwargs) -> CVNet:
    """Figure 5 "Exchange": every filtration op is Exchange."""
    return CVNet(**{"ops": "E" * len(PAPER_OPS), **kwargs})


@register_model
def cvnet_ops_gate(**kwargs) -> CVNet:
    """Figure 5 "Gate": every filtration op is Gate."""
    return CVNet(**{"ops": "G" * len(PAPER_OPS), **kwargs})


@register_model
def cvnet_ops_attention(**kwargs) -> CVNet:
    """Figure 5 "Attention": every filtration op is Attention."""
    return CVNet(**{"ops": "A" * len(PAPER_OPS), **kwargs})


@register_model
def cvnet_n1(**kwargs) -> CVNet:
    """Table 5, n = 1: one DFC stage (width 256)."""
    return CVNet(**{"widths": _STAGE_WIDTHS[:1], "ops": paper_ops(1), **kwargs})


@register_model
def cvnet_n2(**kwargs) -> CVNet:
    """Table 5, n = 2: two DFC stages (widths 256, 512)."""
    return CVNet(**{"widths": _STAGE_WIDTHS[:2], "ops": paper_ops(2), **kwargs})


@register_model
def cvnet_n4(**kwargs) -> CVNet:
    """Table 5, n = 4: a fourth stage of width 1024 repeating stage 3's ops."""
    return CVNet(**{"widths": _STAGE_WIDTHS, "ops": paper_ops(4), **kwargs})


@register_model
def cvnet_tiny(**kwargs) -> CVNet:
    """A ~0.05M-parameter CVNet with every part of the paper's layout, for fast tests."""
    defaults = {"widths": (32, 48, 64), "stem_channels": 16, "msl_branch_channels": 8,
                "part_channels": 16}
    return CVNet(**{**defaults, **kwargs})


@register_model
def cvnet_small(**kwargs) -> CVNet:
    """A ~0.33M-parameter CVNet at widths 64/128/192, for CPU training demos and quick searches."""
    defaults = {"widths": (64, 128, 192), "stem_channels": 32, "msl_branch_channels": 16,
                "part_channels": 32, "gate_reduction": 4}
    return CVNet(**{**defaults, **kwargs})
