from pathlib import Path

import pytest
import yaml

from qhawkeye.train.config import parse_config, parse_dict

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs" / "train").glob("*.yaml"))
CPU = {
    "use_cpu": True,
    "bf16": False,
}  # the GPU recipes ask for bf16, which TrainingArguments refuses on a CPU


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_parse_and_set_every_algorithm_knob(recipe):
    values = yaml.safe_load(recipe.read_text())
    explicit = {
        "beta",
        "loss_type",
        "scale_rewards",
        "epsilon",
        "epsilon_high",
        "num_generations",
        "temperature",
        "max_completion_length",
        "num_iterations",
        "uado_alpha",
        "pao_gamma",
        "pao_eta1",
        "pao_eta2",
    }
    assert explicit <= set(values), f"{recipe.name} leaves {explicit - set(values)} to defaults"
    assert recipe.read_text().startswith("# "), "each recipe starts with the command that runs it"
    _, _, config = parse_config(recipe, overrides=CPU)
    assert config.loss_type == "grpo" and config.beta == 0.04 and config.num_generations == 4


def test_released_recipe_values():
    model, _, config = parse_config(ROOT / "configs/train/qwen2_5_vl_7b.yaml", overrides=CPU)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (4, 2)
    assert config.learning_rate == 5e-6 and config.num_train_epochs == 15 and config.max_grad_norm == 0.1
    assert config.reward_funcs == ["accuracy", "format", "repetition"] and model.max_pixels == 786432
    assert (config.uado_alpha, config.pao_gamma, config.pao_gamma_zero_epoch) == (0.2, 1e-4, 5.0)


def test_unknown_field_is_named_with_a_suggestion():
    with pytest.raises(ValueError, match=r"'pao_gama' \(did you mean 'pao_gamma'\?\)"):
        parse_dict({"pao_gama": 1.0, "output_dir": "x", **CPU})


def test_eta2_without_gradient_through_degraded_is_rejected():
    with pytest.raises(ValueError, match="pao_grad_through_degraded"):
        parse_dict({"pao_eta2": 1e-3, "output_dir": "x", **CPU})
    _, _, config = parse_dict({"pao_eta2": 1e-3, "pao_grad_through_degraded": True, "output_dir": "x", **CPU})
    assert config.pao_eta2 == 1e-3


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"use_vllm": True}, "use_vllm=True is not supported"),
        ({"reward_funcs": ["accuracy", "fromat"]}, "did you mean 'format'"),
        ({"uado_unparsed_policy": "zero"}, "uado_unparsed_policy"),
        ({"loss_type": "ppo"}, "loss_type"),
        ({"entropy_coef": 0.01}, "entropy_coef"),
        ({"pao_gamma_zero_epoch": 0}, "pao_gamma_zero_epoch"),
    ],
)
def test_invalid_values_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_dict({"output_dir": "x", **CPU, **bad})


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_config("nope.yaml")


def test_accelerate_configs_cover_ddp_zero2_zero3_fsdp():
    folder = ROOT / "configs" / "accelerate"
    kinds = {p.stem: yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")}
    assert kinds["ddp"]["distributed_type"] == "MULTI_GPU"
    assert kinds["zero2"]["deepspeed_config"]["zero_stage"] == 2
    assert kinds["zero3"]["deepspeed_config"]["zero_stage"] == 3
    assert kinds["fsdp"]["distributed_type"] == "FSDP"


def test_demo_trains_with_the_tiny_learning_recipe():
    """The demo's GRPO settings are configs/train/tiny_learn.yaml's (the recipe the ladder measured)."""
    from qhawkeye.demo import DemoConfig, train_config

    recipe = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs/train/tiny_learn.yaml").read_text()
    )
    demo = train_config(DemoConfig(), Path("data"), Path("out"), Path("warm"))
    keys = ["num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "temperature", "beta",
            "loss_type", "scale_rewards", "epsilon", "epsilon_high", "num_iterations", "learning_rate",
            "lr_scheduler_type", "max_grad_norm", "reward_funcs", "accuracy_tau", "accuracy_out_of_range",
            "max_completion_length", "scoring_mode",
            "max_steps", "uado_alpha", "pao_gamma", "pao_gamma_zero_epoch", "pao_eta1", "pao_eta2"]  # fmt: skip
    assert {k: demo[k] for k in keys} == {k: recipe[k] for k in keys}
    parse_dict({**recipe, "dataset_path": "x"})  # the recipe itself is a valid config


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("use_pao", "false", "true or false"),  # a quoted boolean would be truthy
        ("max_steps", 1.5, "an integer"),
        ("learning_rate", "fast", "a number"),
        ("reward_funcs", "accuracy", "a list of str"),
        ("output_dir", 3, "a string"),
    ],
)
def test_wrong_types_name_the_field(key, value, what):
    with pytest.raises(ValueError, match=rf"field '{key}' must be {what}"):
        parse_dict({"output_dir": "x", **CPU, key: value})


def test_yaml_exponent_strings_are_numbers(tmp_path):
    from qhawkeye.cli import _parse_override

    key, value = _parse_override("learning_rate=1e-4")
    assert value == "1e-4"  # YAML 1.1: a string ...
    _, _, config = parse_dict({"output_dir": "x", **CPU, key: value, "pao_gamma": "2.5E-3"})
    assert config.learning_rate == 1e-4 and config.pao_gamma == 2.5e-3  # ... taken as the number it spells


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the file is empty"), ("learning_rate: [1e-4\n", r"not valid YAML \(line 2, column 1\)"),
     ("- a\n- b\n", "must be a YAML mapping")],
)  # fmt: skip
def test_a_broken_recipe_file_is_one_clear_error(tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ValueError, match=rf"recipe\.yaml: .*{message}"):
        parse_config(recipe)
