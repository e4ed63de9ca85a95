"""The trainer against TRL and against hand-computed Q-Hawkeye terms, on the tiny model (CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from trainer_utils import fixed_batch, make_config, make_trainer, reference_logps_and_entropy
from trl import GRPOTrainer

from qhawkeye.train.pao import gamma_schedule
from qhawkeye.train.trainer import DEG_LOGPS_KEY, QHawkeyeGRPOTrainer

# SGD step size for the "one PAO step" tests: the random tiny model starts with KL ~3e-5, and in the
# gradient-through mode the surrogate's gradient partly cancels, so a small step moves the KL by <1%.
LR = 2.0


def _train(trainer_cls, tiny_model_dir, paired_dataset_dir, tmp_path, **overrides):
    config = make_config(tmp_path / trainer_cls.__name__, max_steps=2, **overrides)
    trainer = make_trainer(tiny_model_dir, paired_dataset_dir, config, trainer_cls)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}, trainer


def test_with_additions_off_equals_trl(tiny_model_dir, paired_dataset_dir, tmp_path):
    off = dict(use_uado=False, use_pao=False, beta=0.04, gradient_accumulation_steps=2)
    stock_losses, stock_params, _ = _train(GRPOTrainer, tiny_model_dir, paired_dataset_dir, tmp_path, **off)
    ours_losses, ours_params, _ = _train(
        QHawkeyeGRPOTrainer, tiny_model_dir, paired_dataset_dir, tmp_path, **off
    )
    assert len(ours_losses) == 2 and ours_losses == pytest.approx(stock_losses, rel=1e-6, abs=1e-9)
    for name, value in stock_params.items():
        torch.testing.assert_close(ours_params[name], value, rtol=1e-6, atol=1e-8, msg=name)


def _expected_aggregate(x, m, loss_type, ga, num_items, num_processes, spg, max_len):
    """Written out per TRL 1.16 `_compute_loss`, independently of qhawkeye.train.pao."""
    m = m.float()
    if loss_type == "grpo":
        return ((x * m).sum(1) / m.sum(1).clamp(min=1)).mean() / ga
    if loss_type == "bnpo":
        return (x * m).sum() / m.sum() / ga
    if loss_type == "dr_grpo":
        return (x * m).sum() / (x.size(0) * max_len) / ga
    if loss_type == "dapo":
        return (x * m).sum() / (num_items / num_processes * ga / spg)
    raise AssertionError(loss_type)


@pytest.fixture(scope="module")
def pao_trainer(tiny_model_dir, paired_dataset_dir, tmp_path_factory):
    config = make_config(
        tmp_path_factory.mktemp("pao"),
        use_uado=False,
        use_pao=True,
        pao_gamma=0.5,
        pao_gamma_zero_epoch=4.0,
        pao_eta1=0.01,
        beta=0.0,
        gradient_accumulation_steps=2,
    )
    return make_trainer(tiny_model_dir, paired_dataset_dir, config)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("ga", [1, 2])
def test_extra_terms_match_hand_computation(pao_trainer, loss_type, ga):
    trainer = pao_trainer
    inputs = fixed_batch(trainer, n_images=1)
    trainer.loss_type, trainer.current_gradient_accumulation_steps = loss_type, ga
    trainer.state.epoch = 1.0  # gamma_t = 0.5 * 0.5 * (1 + cos(pi/4)) = 0.42678
    model = trainer.model
    loss_with = trainer._compute_loss(model, inputs)
    trainer.args.use_pao = False
    try:
        loss_without = trainer._compute_loss(model, inputs)
    finally:
        trainer.args.use_pao = True
    logps, entropy = reference_logps_and_entropy(model, inputs)
    d = (inputs[DEG_LOGPS_KEY] - logps).clamp(-20, 20)
    kl = (torch.exp(d) - d - 1).clamp(-10, 10)
    agg = lambda x: _expected_aggregate(  # noqa: E731
        x,
        inputs["completion_mask"],
        loss_type,
        ga,
        inputs["num_items_in_batch"].float(),
        1,
        trainer.args.steps_per_generation,
        trainer.max_completion_length,
    )
    gamma_t = 0.5 * 0.5 * (1 + math.cos(math.pi / 4))
    assert gamma_schedule(1.0, 0.5, 4.0) == pytest.approx(gamma_t)
    expected = -gamma_t * agg(kl) + 0.01 * agg(entropy)
    assert (loss_with - loss_without).item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-7)
    assert agg(kl).item() > 0  # the pair differs, so the KL estimate is positive


def _kl_now(trainer, inputs, fresh_degraded: bool) -> float:
    with torch.no_grad():
        logps, _ = reference_logps_and_entropy(trainer.model, inputs)
        deg = inputs[DEG_LOGPS_KEY]
        if fresh_degraded:
            deg_inputs = {**inputs, "pixel_values": torch.cat(inputs["qh_deg_pixel_values"])}
            deg, _ = reference_logps_and_entropy(trainer.model, deg_inputs)
    d = (deg - logps).clamp(-20, 20)
    kl = (torch.exp(d) - d - 1).clamp(-10, 10)
    m = inputs["completion_mask"].float()
    return ((kl * m).sum() / m.sum()).item()


@pytest.mark.parametrize("grad_through", [False, True])
def test_one_pao_step_raises_kl(tiny_model_dir, paired_dataset_dir, tmp_path, grad_through):
    config = make_config(
        tmp_path,
        use_uado=False,
        use_pao=True,
        pao_gamma=1.0,
        pao_eta1=0.0,
        pao_eta2=0.0,
        beta=0.0,
        pao_grad_through_degraded=grad_through,
        gradient_accumulation_steps=1,
    )
    trainer = make_trainer(tiny_model_dir, paired_dataset_dir, config)
    inputs = fixed_batch(trainer, n_images=1)
    if grad_through:  # hand the test the same frozen degraded log-probs for the "before" measurement
        with torch.no_grad():
            deg_inputs = {**inputs, "pixel_values": torch.cat(inputs["qh_deg_pixel_values"])}
            inputs[DEG_LOGPS_KEY], _ = reference_logps_and_entropy(trainer.model, deg_inputs)
    inputs["advantages"] = torch.zeros_like(inputs["advantages"])  # isolate the perception term
    trainer.current_gradient_accumulation_steps = 1
    trainer.state.epoch = 0.0
    before = _kl_now(trainer, inputs, fresh_degraded=grad_through)
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=LR)
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    optimizer.step()
    after = _kl_now(trainer, inputs, fresh_degraded=grad_through)
    assert before > 0 and after > before * 1.05, (before, after)


def test_uado_scales_advantages_by_group_weights(pao_trainer):
    trainer = pao_trainer
    output = {"advantages": torch.ones(8)}
    scores = torch.tensor([1, 1, 5, 5, 3, 3, 3, 3], dtype=torch.float32)  # two groups of G = 4
    trainer._apply_uado(output, scores, "train")
    expected = [math.exp(-0.2)] * 4 + [1.0] * 4
    assert output["advantages"].tolist() == pytest.approx(expected, abs=1e-6)
    assert trainer._metrics["train"]["qhawkeye/uado_weight"][-1] == pytest.approx(
        (math.exp(-0.2) + 1) / 2, abs=1e-6
    )


def test_uado_on_real_batch_uses_parsed_scores(pao_trainer):
    # The untrained tiny model never writes a parseable answer: every group falls under the unparsed policy.
    trainer = pao_trainer
    trainer.args.use_uado = True
    try:
        torch.manual_seed(1)
        on = fixed_batch(trainer, n_images=2, seed=1)
    finally:
        trainer.args.use_uado = False
    off = fixed_batch(trainer, n_images=2, seed=1)
    assert torch.equal(on["completion_ids"], off["completion_ids"])
    assert trainer._metrics["train"]["qhawkeye/parse_failure_rate"][-1] == 1.0
    torch.testing.assert_close(on["advantages"], off["advantages"] * math.exp(-0.2))


def test_pao_without_degraded_image_is_an_error(pao_trainer):
    rows = [dict(pao_trainer.train_dataset[0]) for _ in range(4)]
    rows[2]["degraded_image"] = None
    with pytest.raises(ValueError, match="no degraded image in column 'degraded_image'"):
        pao_trainer._generate_and_score_completions(rows)


def test_pao_with_mismatched_sizes_is_an_error(pao_trainer):
    rows = [dict(pao_trainer.train_dataset[0]) for _ in range(4)]
    for row in rows:
        row["degraded_image"] = row["degraded_image"].resize((56, 56))
    with pytest.raises(ValueError, match="does not have its original's size"):
        pao_trainer._generate_and_score_completions(rows)


def test_uado_weights_follow_parsed_scores(format_model_dir, paired_dataset_dir, tmp_path):
    from qhawkeye.parsing import parse_score
    from qhawkeye.train.uado import group_uncertainty, uado_weights

    config = make_config(tmp_path, use_uado=True, use_pao=False, max_completion_length=32, uado_alpha=2.0)
    trainer = make_trainer(format_model_dir, paired_dataset_dir, config)
    on = fixed_batch(trainer, n_images=2, seed=3)
    trainer.args.use_uado = False
    off = fixed_batch(trainer, n_images=2, seed=3)
    assert torch.equal(on["completion_ids"], off["completion_ids"])  # same rollouts
    texts = trainer.processing_class.batch_decode(on["completion_ids"], skip_special_tokens=True)
    scores = torch.tensor([s.score if s.ok else float("nan") for s in map(parse_score, texts)])
    assert (~scores.isnan()).sum() >= 4, texts  # the warm-started model mostly writes parseable answers
    w = uado_weights(
        group_uncertainty(scores.view(-1, 4), 1.0, 5.0, "max_uncertainty"), 2.0
    ).repeat_interleave(4)
    torch.testing.assert_close(on["advantages"], off["advantages"] * w)
    assert trainer._metrics["train"]["qhawkeye/uado_weight"][-1] == pytest.approx(w.mean().item(), abs=1e-6)


def test_each_completion_meets_its_own_image_and_label(format_model_dir, paired_dataset_dir, tmp_path):
    """The reward sees, for completion i, the label of the row whose image generated it (rows of 3 images with
    different labels, each repeated G times); the pixels the loss uses for completion i are that image's."""
    from qhawkeye.modeling import load_model, load_processor
    from qhawkeye.rewards import get_reward_funcs

    seen = []

    def recorder(completions, gt_score, group_id, **kwargs):
        seen.extend(zip(group_id, gt_score, strict=True))
        return [0.0] * len(completions)

    config = make_config(tmp_path, use_uado=False, use_pao=False, per_device_train_batch_size=12)
    trainer = make_trainer(format_model_dir, paired_dataset_dir, config)
    trainer = QHawkeyeGRPOTrainer(
        model=load_model(format_model_dir, dtype="float32"), processing_class=load_processor(format_model_dir),
        reward_funcs=[recorder, *get_reward_funcs(["accuracy"], 0.3)], args=config,
        train_dataset=trainer.train_dataset,
    )  # fmt: skip
    rows = [dict(trainer.train_dataset[i]) for i in (5, 0, 3) for _ in range(4)]
    assert len({r["gt_score"] for r in rows}) == 3
    out = trainer._generate_and_score_completions(rows)
    assert seen == [(r["group_id"], r["gt_score"]) for r in rows]
    image_processor = trainer.processing_class.image_processor
    per_row = torch.split(out["pixel_values"], out["image_grid_thw"].prod(-1).tolist())
    for row, pixels in zip(rows, per_row, strict=True):
        own = image_processor(images=[row["image"]], return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(pixels, own)
