"""Training configuration: defaults from the paper, TOML files, type checks."""

import pytest

pytest.importorskip("torch")

from cvnet.core.errors import ConfigError  # noqa: E402
from cvnet.training.config import (TrainConfig, config_differences,  # noqa: E402
                                   config_from_mapping, load_config)


def test_defaults_are_the_papers_recipe():
    c = TrainConfig()
    assert (c.lr, c.momentum, c.weight_decay, c.epochs, c.warmup_epochs) == (0.065, 0.9, 5e-4,
                                                                             350, 10)
    assert (c.batch_size, c.num_instances, c.img_size, c.adam_lr) == (64, 4, 256, 0.002)


def test_toml_file_overrides_defaults_and_keeps_types(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('arch = "cvnet_tiny"\nepochs = 3\nlr = 1\nprotocols = ["A2G"]\n'
                    'adam_modules = ["filters"]\n[model_kwargs]\nwidths = [16, 24, 32]\n')
    c = load_config(str(path))
    assert c.arch == "cvnet_tiny" and c.epochs == 3 and c.lr == 1.0 and isinstance(c.lr, float)
    assert c.protocols == ("A2G",) and c.adam_modules == ("filters",)
    assert c.model_kwargs == {"widths": [16, 24, 32]} and c.batch_size == 64
    assert c.to_dict()["protocols"] == ["A2G"]


@pytest.mark.parametrize("values, match", [
    ({"epoch": 3}, "unknown key 'epoch'"),
    ({"epochs": "many"}, "epochs must be a number"),
    ({"amp": 1}, "amp must be true or false"),
    ({"model_kwargs": 3}, "model_kwargs must be a table"),
])
def test_bad_values_are_refused_with_the_source(values, match):
    with pytest.raises(ConfigError, match="run.toml: " + match):
        config_from_mapping(values, source="run.toml")


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))


def test_config_differences_name_each_changed_setting():
    saved = TrainConfig(lr=0.065, epochs=10, output="a", protocols=("A2G", "G2A")).to_dict()
    now = TrainConfig(lr=0.5, epochs=10, output="b")
    assert config_differences(saved, now, ignore=("output",)) == ["lr 0.065 there, 0.5 now"]
    assert config_differences(saved, now, keys=("epochs", "arch")) == []
    assert "output 'a' there, 'b' now" in config_differences(saved, now)
    assert config_differences({"lr": 0.5}, now, keys=("lr", "seed")) == []  # absent: not compared


def test_precision_flags_of_train_and_search_reach_the_config():
    from cvnet.search import cli as search_cli
    from cvnet.search.config import SearchConfig
    from cvnet.training import cli as train_cli

    assert (TrainConfig().amp, TrainConfig().amp_dtype) == (True, "fp16")
    args = train_cli.build_parser().parse_args(["--data", "d", "--amp-dtype", "bf16"])
    assert train_cli.config_from_args(args).amp_dtype == "bf16"
    args = search_cli.build_parser().parse_args(["--data", "d", "--no-amp"])
    config = train_cli.config_from_args(args, cls=SearchConfig)
    assert not config.amp and config.amp_dtype == "fp16"
