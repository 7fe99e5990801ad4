"""The Table 2 baselines: sizes against the paper, eval and train outputs, re-parameterisation,
ONNX export."""

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.models import build_model, list_models  # noqa: E402
from cvnet.models.baselines import CVPAIR_TRAIN_IDS, TABLE2_PARAMS_M, ReIDOutput  # noqa: E402
from cvnet.models.baselines.common import stripe_bounds  # noqa: E402

BASELINES = sorted(TABLE2_PARAMS_M)
# Eval embedding width and (features, logits) a train-mode forward returns.
EMBEDDING_DIMS = {"pplr": 2048, "mgn": 2048, "bot": 2048, "transreid": 3840, "starnet_s1": 1000,
                  "mobileone_s1": 1000, "sbcformer_xs": 1000, "fasternet_t1": 1000}
TRAIN_OUTPUTS = {"pplr": (4, 4), "mgn": (3, 8), "bot": (1, 1), "transreid": (5, 5)}
# Over ~5 s each on two CPU cores (a 94M-parameter build plus a 25-GMAC forward).
SLOW = ("transreid",)


def _params(model):
    return sum(p.numel() for p in model.parameters())


def _maybe_slow(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.fixture(scope="module")
def default_models():
    """Builds each baseline with its defaults once for this module (the big ones take seconds)."""
    built = {}

    def get(name):
        if name not in built:
            torch.manual_seed(0)
            built[name] = build_model(name).eval()
        return built[name]

    return get


def test_the_eight_baselines_are_registered_apart_from_cvnet():
    assert set(BASELINES) <= set(list_models())
    assert not set(BASELINES) & set(list_models("cvnet*"))
    assert len(BASELINES) == 8


@pytest.mark.parametrize("name", BASELINES)
def test_parameter_count_is_within_10_percent_of_table2(name, default_models):
    # Table 2 counts the ID classifiers (see cvnet/models/baselines/*.py for the arithmetic);
    # the defaults have CVPair's 391 training identities.
    assert abs(_params(default_models(name)) / (TABLE2_PARAMS_M[name] * 1e6) - 1.0) <= 0.10


@pytest.mark.parametrize("name", _maybe_slow(BASELINES))
def test_eval_forward_returns_one_embedding(name, default_models):
    # One 256x256 image, the size a default run benchmarks (eval mode: no batch statistics).
    model = default_models(name)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, EMBEDDING_DIMS[name]) == (1, model.embedding_dim)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# Small inputs (and a narrow, shallow ViT) keep the train-mode checks fast; the layout is the same.
TRAIN_CASES = [("pplr", {"img_size": 64}), ("mgn", {"img_size": 64}), ("bot", {}),
               ("transreid", {"img_size": 64, "embed_dim": 64, "depth": 3, "num_heads": 2}),
               ("starnet_s1", {}), ("mobileone_s1", {}),
               ("mobileone_s1", {"reparameterized": False}), ("sbcformer_xs", {"img_size": 64}),
               ("fasternet_t1", {})]


@pytest.mark.parametrize("name, options", TRAIN_CASES)
def test_train_forward_feeds_every_parameter_to_the_losses(name, options):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, **options).train()
    inputs = {"side_ids": torch.tensor([0, 1])} if name == "transreid" else {}
    out = model(torch.randn(2, 3, 64, 64), **inputs)
    assert isinstance(out, ReIDOutput)
    assert (len(out.features), len(out.logits)) == TRAIN_OUTPUTS.get(name, (1, 1))
    assert all(logits.shape == (2, 5) for logits in out.logits)
    labels = torch.tensor([1, 3])
    loss = sum(torch.nn.functional.cross_entropy(logits, labels) for logits in out.logits)
    loss = loss + sum(f.pow(2).mean() for f in out.features)
    loss.backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unreached == []


@pytest.mark.parametrize("name, classifier_params", [
    ("bot", 2048 * CVPAIR_TRAIN_IDS), ("starnet_s1", 1000 * CVPAIR_TRAIN_IDS)])
def test_num_classes_zero_drops_only_the_classifiers(name, classifier_params, default_models):
    plain = build_model(name, num_classes=0)
    assert _params(default_models(name)) - _params(plain) == classifier_params
    assert plain.train()(torch.randn(2, 3, 64, 64)).logits == ()


def test_mobileone_reparameterisation_keeps_the_output_and_gives_the_counted_model():
    torch.manual_seed(0)
    model = build_model("mobileone_s1", reparameterized=False)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)  # non-trivial statistics to fold
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        after = model.reparameterize()(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert _params(model) == _params(build_model("mobileone_s1"))


def test_a_model_built_for_one_size_refuses_another():
    tiny = build_model("transreid", img_size=64, embed_dim=32, depth=2, num_heads=2).eval()
    assert tiny(torch.randn(1, 3, 64, 64)).shape == (1, 5 * 32)
    with pytest.raises(ConfigError, match="built for 64x64 inputs, got 128x128"):
        tiny(torch.randn(1, 3, 128, 128))


def test_part_stripes_split_a_16_row_map_without_overlap():
    assert stripe_bounds(16, 3) == (0, 5, 11, 16)
    assert stripe_bounds(16, 2) == (0, 8, 16) and stripe_bounds(24, 3) == (0, 8, 16, 24)


@pytest.mark.parametrize("name, kwargs, match", [
    ("bot", {"num_classes": -1}, "num_classes must be >= 0"),
    ("bot", {"neck_feat": "middle"}, "neck_feat must be 'before' or 'after'"),
    ("mgn", {"pool": "sum"}, "pool must be 'max' or 'mean'"),
    ("sbcformer_xs", {"img_size": 250}, "multiple of 32"),
    ("starnet_s1", {"feature_dim": -1}, "feature_dim must be >= 0"),
])
def test_bad_options_raise_config_errors(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model(name, **kwargs)


@pytest.mark.slow
def test_starnet_exports_to_opset_13_that_tensorrt_8_2_parses_and_onnxruntime_matches():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from cvnet.core.tensorrt_ops import check_nodes, operator_support

    torch.manual_seed(0)
    model = build_model("starnet_s1").eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(2, 3, 256, 256),), buffer, dynamo=False,
                      opset_version=13, input_names=["images"], output_names=["embeddings"],
                      dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(graph)
    check_nodes([(n.name, n.op_type) for n in graph.graph.node], operator_support("8.2"), opset=13)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 256, 256)  # another batch size than the export's
    with torch.no_grad():
        expected = model(images).numpy()
    actual = session.run(None, {"images": images.numpy()})[0]
    cosine = (expected * actual).sum(1) / (np.linalg.norm(expected, axis=1)
                                           * np.linalg.norm(actual, axis=1))
    assert actual.shape == (3, 1000)
    assert cosine.min() >= 0.9999, "per-sample cosine {}".format(cosine)
