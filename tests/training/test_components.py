"""Training components: losses, P x K sampler, augmentation, optimisers and schedule."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.core.preprocess import PreprocessConfig, preprocess_batch  # noqa: E402
from cvnet.models import build_model  # noqa: E402
from cvnet.training.augment import TrainTransform, random_erase  # noqa: E402
from cvnet.training.losses import ReIDLoss, batch_hard_triplet_loss  # noqa: E402
from cvnet.training.optim import Optimizers, warmup_cosine_factor, warmup_step_factor  # noqa: E402
from cvnet.training.sampler import PKSampler  # noqa: E402


def test_batch_hard_triplet_on_a_hand_worked_case():
    # 1-D features 0, 1 (id 0) and 3, 5 (id 1). Per anchor (hardest pos, hardest neg):
    # 0: (1, 3) -> 0;  1: (1, 2) -> 0;  3: (2, 2) -> 0.3;  5: (2, 4) -> 0.  Mean 0.075.
    features = torch.tensor([[0.0], [1.0], [3.0], [5.0]], requires_grad=True)
    loss = batch_hard_triplet_loss(features, torch.tensor([0, 0, 1, 1]), margin=0.3)
    assert loss.item() == pytest.approx(0.075, abs=1e-5)
    loss.backward()
    assert torch.isfinite(features.grad).all()


def test_triplet_loss_of_a_single_identity_batch_is_zero():
    features = torch.randn(4, 8, requires_grad=True)
    loss = batch_hard_triplet_loss(features, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()


def test_reid_loss_combines_both_features_and_needs_classifiers():
    model = build_model("cvnet_tiny", num_classes=3).train()
    labels = torch.tensor([0, 0, 1, 1])
    total, parts = ReIDLoss()(model(torch.randn(4, 3, 64, 64)), labels)
    assert set(parts) == {"ce_global", "ce_part", "tri_global", "tri_part"}
    assert total.item() == pytest.approx(sum(float(v) for v in parts.values()), rel=1e-5)
    total.backward()
    with pytest.raises(ValueError, match="num_classes > 0"):
        ReIDLoss()(build_model("cvnet_tiny").train()(torch.randn(2, 3, 64, 64)), labels[:2])


LABELS = [0] * 6 + [1] * 5 + [2] * 4 + [3] * 2 + [4] * 9 + [5] * 4


def test_pk_batches_hold_p_identities_of_k_images():
    sampler = PKSampler(LABELS, batch_size=8, num_instances=4, seed=3)
    batches = sampler.batches()
    assert batches and all(len(b) == 8 for b in batches)
    for batch in batches:
        ids = [LABELS[i] for i in batch]
        assert sorted(ids.count(label) for label in set(ids)) == [4, 4]
    assert len(sampler) == 8 * len(batches) == len(list(iter(sampler)))


def test_pk_sampler_tops_up_identities_with_fewer_than_k_images():
    # identity 3 owns indices 15 and 16 only; when drawn, its K = 4 slots repeat those two
    sampler = PKSampler(LABELS, batch_size=8, num_instances=4, seed=0)
    groups = []
    for epoch in range(10):
        sampler.set_epoch(epoch)
        groups += [[i for i in b if LABELS[i] == 3] for b in sampler.batches()]
    groups = [g for g in groups if g]
    assert groups and all(len(g) == 4 and set(g) <= {15, 16} for g in groups)


def test_pk_sampler_is_seeded_per_epoch():
    sampler = PKSampler(LABELS, batch_size=8, num_instances=4, seed=3)
    first = sampler.batches()
    assert sampler.batches() == first
    sampler.set_epoch(1)
    assert sampler.batches() != first


def test_pk_sampler_splits_batches_between_ranks():
    ranks = [PKSampler(LABELS, batch_size=4, num_instances=2, seed=0, rank=r, world_size=2)
             for r in range(2)]
    a, b = (r.batches() for r in ranks)
    assert len(a) == len(b) > 0
    assert not set(map(tuple, a)) & set(map(tuple, b))


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 6, "num_instances": 4}, "multiple of num_instances"),
    ({"batch_size": 32, "num_instances": 4}, "needs 8 identities, but the training set has only 6"),
])
def test_pk_sampler_rejects_impossible_batches(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PKSampler(LABELS, **kwargs)


def _image(seed=0, shape=(40, 30, 3)):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def test_transform_without_augmentation_is_the_shared_path():
    config = PreprocessConfig(height=64, width=32)
    plain = TrainTransform(config, flip_prob=0.0, pad=0, erase_prob=0.0)
    out = plain(_image(), np.random.default_rng(0))
    np.testing.assert_array_equal(out, preprocess_batch([_image()], config)[0])


def test_transform_flip_mirrors_the_sample():
    config = PreprocessConfig(height=64, width=32)
    flipped = TrainTransform(config, flip_prob=1.0, pad=0, erase_prob=0.0)(
        _image(), np.random.default_rng(0))
    np.testing.assert_array_equal(flipped, preprocess_batch([_image()], config)[0][:, :, ::-1])


def test_transform_pad_crop_shifts_content_and_keeps_size():
    config = PreprocessConfig(height=64, width=32)
    outs = [TrainTransform(config, flip_prob=0.0, pad=10, erase_prob=0.0)(
        _image(), np.random.default_rng(seed)) for seed in range(6)]
    assert all(o.shape == (3, 64, 32) and o.dtype == np.float32 for o in outs)
    assert len({o.tobytes() for o in outs}) > 1


def test_random_erase_zeroes_one_rectangle():
    image = np.ones((3, 50, 40), np.float32)
    random_erase(image, np.random.default_rng(1))
    erased = image[0] == 0
    rows, cols = np.where(erased)
    assert erased.any() and (image == 0).sum() == 3 * erased.sum()
    assert erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a rectangle
    assert 0.02 * 2000 * 0.8 <= erased.sum() <= 0.4 * 2000 * 1.2


def test_warmup_cosine_schedule_shape():
    f = [warmup_cosine_factor(s, total_steps=100, warmup_steps=10, min_ratio=0.01)
         for s in range(101)]
    assert f[0] == pytest.approx(0.01) and f[10] == pytest.approx(1.0)
    assert f[100] == pytest.approx(0.01) and f[55] == pytest.approx(0.505)
    assert all(a <= b for a, b in zip(f[:10], f[1:11]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))


def test_msinet_step_schedule_at_350_epochs():
    kw = dict(total_steps=350, warmup_steps=10)  # one step per epoch
    assert warmup_step_factor(0, **kw) == pytest.approx(0.01)
    assert warmup_step_factor(10, **kw) == pytest.approx(1.0)
    assert [warmup_step_factor(e, **kw) for e in (149, 150, 224, 225, 299, 300, 349)] == \
        pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_unknown_schedule_is_refused():
    with pytest.raises(ConfigError, match="lr schedule must be one of step, cosine"):
        Optimizers(build_model("cvnet_tiny", num_classes=3), total_steps=10, warmup_steps=1,
                   schedule="linear")


def test_adam_takes_only_the_named_modules():
    model = build_model("cvnet_tiny", num_classes=3)
    opts = Optimizers(model, adam_modules=["filters", "collaboration"], total_steps=10,
                      warmup_steps=2)
    sgd, adam = opts.optimizers
    adam_ids = {id(p) for p in adam.param_groups[0]["params"]}
    expected = {id(p) for n, p in model.named_parameters()
                if ".filters." in n or ".collaboration." in n}
    assert adam_ids == expected and isinstance(adam, torch.optim.Adam)
    assert len(sgd.param_groups[0]["params"]) + len(adam_ids) == sum(
        p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="names no trainable module: colaboration"):
        Optimizers(model, adam_modules=["colaboration"], total_steps=10, warmup_steps=2)


def test_optimizer_state_round_trips_and_schedule_advances():
    model = build_model("cvnet_tiny", num_classes=3)
    opts = Optimizers(model, lr=0.1, total_steps=20, warmup_steps=5)
    assert opts.learning_rates() == [pytest.approx(0.001)]
    model(torch.randn(2, 3, 64, 64)).global_logits.sum().backward()
    opts.step()
    state = opts.state_dict()
    fresh = Optimizers(model, lr=0.1, total_steps=20, warmup_steps=5)
    fresh.load_state_dict(state)
    assert fresh.learning_rates() == opts.learning_rates() != [pytest.approx(0.001)]
