"""CVNet and its registered variants: sizes, the paper's op placement, shapes, gradients."""

import pytest

torch = pytest.importorskip("torch")

from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.models import (CVNetOutput, build_model, list_models, paper_ops,  # noqa: E402
                          register_model)
from cvnet.models.dfc import (FilterAttention, FilterExchange, FilterGate, FilterNone,  # noqa: E402
                              parse_ops)

PAPER_SEQUENCE = "GAGGGGGNGEAA"  # Figure 4a of the paper
FILTER_CODES = {FilterNone: "N", FilterExchange: "E", FilterGate: "G", FilterAttention: "A"}
VARIANTS = list_models("cvnet*")  # the CVNet variants; test_baselines.py covers the rest


def _params(module):
    return sum(p.numel() for p in module.parameters())


def _filter_codes(model):
    """Reads the op at each position off the built modules, in stage/module/slot order."""
    return "".join(FILTER_CODES[type(op)] for stage in model.stages for block in stage
                   for op in block.filters)


def test_paper_model_size_matches_the_paper():
    model = build_model("cvnet", num_classes=0)
    assert 4.18e6 <= _params(model) <= 4.62e6  # 4.4M +- 5%
    assert 0.08e6 <= _params(model.stem) <= 0.11e6  # the MSL, ~0.09M
    assert model.global_classifier is None and model.part_classifier is None


def test_filtration_ops_sit_where_the_paper_placed_them():
    assert _filter_codes(build_model("cvnet")) == PAPER_SEQUENCE


@pytest.mark.parametrize("name, code", [("cvnet_ops_none", "N"), ("cvnet_ops_exchange", "E"),
                                        ("cvnet_ops_gate", "G"), ("cvnet_ops_attention", "A")])
def test_uniform_strategies_use_one_op_everywhere(name, code):
    assert _filter_codes(build_model(name, widths=(32, 48, 64), part_channels=8)) == code * 12


def test_stage_count_variants_fit_the_paper_sequence():
    assert paper_ops(1) == tuple("GAGG") and paper_ops(2) == tuple(PAPER_SEQUENCE[:8])
    assert paper_ops(4) == tuple(PAPER_SEQUENCE + "GEAA")
    assert [len(build_model(f"cvnet_n{n}").stages) for n in (1, 2, 4)] == [1, 2, 4]


def test_ablation_variants_swap_stem_and_stages():
    baseline = build_model("cvnet_baseline")
    assert type(baseline.stem).__name__ == "ResNetStem"
    assert type(baseline.stages[0][0]).__name__ == "Bottleneck"
    assert type(build_model("cvnet_msl_only").stem).__name__ == "MSLStem"
    assert type(build_model("cvnet_dfc_only").stages[0][0]).__name__ == "DFCBlock"


def test_classifiers_are_added_only_when_asked():
    plain, with_ids = build_model("cvnet_tiny"), build_model("cvnet_tiny", num_classes=7)
    classifier_params = _params(with_ids.global_classifier) + _params(with_ids.part_classifier)
    assert classifier_params == 7 * (64 + 2 * 16)
    assert _params(with_ids) - _params(plain) == classifier_params


@pytest.mark.parametrize("name", VARIANTS)
# The paper's size, and a batch of several (at a smaller size: in eval mode no layer mixes the
# images of a batch, so 3 x 256 x 256 would only repeat both cases at 3x the cost).
@pytest.mark.parametrize("batch, size", [(1, 256), (3, 128)])
def test_eval_forward_returns_finite_embeddings(name, batch, size):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, model.embedding_dim)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_paper_embedding_is_1024_d():
    assert build_model("cvnet").embedding_dim == 1024


@pytest.mark.parametrize("name", VARIANTS)
def test_train_forward_reaches_every_trainable_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, CVNetOutput)
    assert out.global_logits.shape == (2, 5) and out.part_logits.shape == (2, 5)
    labels = torch.tensor([1, 3])
    loss = (torch.nn.functional.cross_entropy(out.global_logits, labels)
            + torch.nn.functional.cross_entropy(out.part_logits, labels)
            + out.global_features.pow(2).mean() + out.part_features.pow(2).mean())
    loss.backward()
    # Every trainable parameter is connected to the loss. (A gradient may be exactly zero where
    # a ReLU is dead at this initialisation, e.g. a 4-unit Gate bottleneck, so zeros are allowed.)
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unreached == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    first_conv = next(m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0  # the signal reaches the input end


def test_bnneck_bias_is_frozen():
    model = build_model("cvnet_tiny")
    assert not model.global_bn.bias.requires_grad and not model.part_bn.bias.requires_grad


def test_train_forward_without_classifiers_returns_features_only():
    out = build_model("cvnet_tiny").train()(torch.randn(2, 3, 64, 64))
    assert out.global_logits is None and out.part_logits is None
    assert out.global_features.shape == (2, 64) and out.part_features.shape == (2, 32)


@pytest.mark.parametrize("name", ["cvnet", "cvnet_baseline", "cvnet_tiny"])
def test_eval_forward_is_deterministic(name):
    model = build_model(name).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown model 'cvnet_huge'.*cvnet_tiny"):
        build_model("cvnet_huge")


def test_registering_a_name_twice_is_refused():
    def cvnet():  # same name as the paper's builder
        raise AssertionError("never called")

    with pytest.raises(ConfigError, match="registered twice"):
        register_model(cvnet)


@pytest.mark.parametrize("kwargs, match", [
    ({"ops": "GAG"}, "3 DFC stages need 12 filtration ops"),
    ({"ops": "GAGGGGGNGEAX"}, "filtration op #11 is 'X'"),
    ({"stem": "vit"}, "stem must be one of msl, resnet"),
    ({"stage": "mlp"}, "stage must be one of dfc, resnet"),
    ({"widths": (64,) * 5}, "1 to 4 positive stage widths"),
    ({"num_classes": -1}, "num_classes must be >= 0"),
])
def test_bad_options_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model("cvnet", **kwargs)


def test_ops_accept_names_and_codes():
    names = ["gate", "attention"] + ["none"] * 10
    assert parse_ops(names) == tuple("GA" + "N" * 10)
    assert _filter_codes(build_model("cvnet_tiny", ops=names)) == "GA" + "N" * 10
