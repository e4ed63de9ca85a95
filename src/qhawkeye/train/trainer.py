"""QHawkeyeGRPOTrainer: TRL's GRPOTrainer with UADO and PAO wired in through four narrow overrides.

How it differs from plain GRPO (TRL 1.16.0, pinned; see tests/test_trl_contract.py):
- UADO: after TRL computes the group-normalised advantages, each image's advantages are multiplied by
  ``exp(-alpha * u)``, ``u`` its rollouts' normalised score variance. Scores come from the one parser; groups
  are gathered across processes before the variance is taken, so a group split over GPUs is complete.
- PAO: once per generation batch, the sampled prompt+completion tokens are scored a second time, without
  gradient, with the dataset's paired degraded image in place of the original (same size, so the token layout
  is identical). In the loss, the k3 estimate of KL(pi(.|orig) || pi(.|deg)) is *maximised* with the cosine
  gamma schedule, and the true per-token entropies (TRL's fused-head entropy, with gradient) are minimised:
  ``loss += -gamma_t * KL_prcp + eta1 * H_orig + eta2 * H_deg``, each aggregated as TRL aggregates its loss.
  With ``pao_grad_through_degraded`` the degraded branch is forwarded with gradient at every step instead.
  PAO acts in training only; evaluation losses are plain GRPO.
- Logged each step under ``qhawkeye/``: kl_prcp, gamma_t, entropy_orig, entropy_deg, uado_weight,
  uado_uncertainty, parse_failure_rate, clip_rate.

How it differs from the authors' release: the entropy terms are real entropies and are switched on; the
degraded image is a required dataset column (a missing one is an error, never a skip); the vLLM path is
refused instead of silently dropping UADO and PAO; beta, loss_type and friends are explicit config fields.
"""

from __future__ import annotations

import logging

import torch
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import RepeatSampler

from qhawkeye.parsing import completion_text, parse_score
from qhawkeye.train.checkpoint import load_generation_state, load_weights_into, save_generation_state
from qhawkeye.train.config import QHawkeyeConfig
from qhawkeye.train.pao import aggregate_like_trl, gamma_schedule, perception_kl_per_token
from qhawkeye.train.uado import group_uncertainty, uado_weights

logger = logging.getLogger(__name__)

DEG_LOGPS_KEY = "qh_deg_per_token_logps"
DEG_ENTROPY_KEY = "qh_deg_entropies"
DEG_PIXELS_KEY = "qh_deg_pixel_values"  # a per-sample list, so TRL's shuffle/split permute it per sample


class QHawkeyeGRPOTrainer(GRPOTrainer):
    """GRPOTrainer + UADO + PAO. Takes a :class:`QHawkeyeConfig` as ``args``; otherwise TRL's signature."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, QHawkeyeConfig):
            raise TypeError(f"args must be a QHawkeyeConfig, got {type(self.args).__name__}")
        self._capture_forward = False
        self._captured = None
        self._local_parsed = None

    # ---------------------------------------------------------------- exact resume
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Full-weights checkpoints are restored strictly under their saved names (see train/checkpoint.py);
        LoRA, DeepSpeed and FSDP checkpoints go through transformers' own loaders."""
        target = model if model is not None else self.model
        full = not (self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(target, "peft_config"))
        if not full:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        load_weights_into(target, resume_from_checkpoint)
        return None

    def _get_train_sampler(self, dataset=None):
        """TRL's sampler, reshuffled from (seed, epoch) so a run resumed in a later epoch sees the same order."""
        sampler = super()._get_train_sampler(dataset)
        if type(sampler) is not RepeatSampler:
            raise TypeError(f"expected TRL's RepeatSampler, got {type(sampler).__name__} (TRL changed?)")
        sampler.__class__ = EpochRepeatSampler
        sampler.epoch = 0
        return sampler

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        generate_every = self.args.steps_per_generation * self.num_iterations
        mid_cycle = self._step % generate_every != 0
        save_generation_state(
            output_dir, self.accelerator.process_index, self._step, self._buffered_inputs, mid_cycle
        )

    def _load_rng_state(self, checkpoint):
        """Called by the Trainer exactly once when resuming: also restore TRL's generation buffer."""
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        state = load_generation_state(checkpoint, self.accelerator.process_index, self.accelerator.device)
        if state is None:
            logger.warning(
                "%s has no generation state (saved by an older qhawkeye): the run resumes, but not exactly",
                checkpoint,
            )
            return
        self._step = state["step"]
        self._buffered_inputs = state["buffer"]

    # ---------------------------------------------------------------- generation batch: scores, UADO, PAO
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._local_parsed = [parse_score(completion_text(c)) for c in completions]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def _generate_and_score_completions(self, inputs):
        mode = "train" if self.model.training else "eval"
        pao = self.args.use_pao and mode == "train"
        if pao:
            degraded = self._degraded_images(inputs)
        output = super()._generate_and_score_completions(inputs)
        scores = self._gathered_scores(mode)
        if self.args.use_uado:
            self._apply_uado(output, scores, mode)
        if pao:
            self._add_degraded_branch(output, degraded)
        return output

    def _degraded_images(self, inputs: list[dict]) -> list:
        column = self.args.degraded_image_column
        missing = [i for i, row in enumerate(inputs) if row.get(column) is None]
        if missing:
            row = inputs[missing[0]]
            ident = row.get("group_id", row.get("id", f"batch position {missing[0]}"))
            raise ValueError(
                f"PAO is on (use_pao: true) but row {ident!r} has no degraded image in column {column!r}. "
                "Build the training set with `qhawkeye data build` (it pairs every original with a degraded "
                "copy), or set use_pao: false."
            )
        return [row[column] for row in inputs]

    def _gathered_scores(self, mode: str) -> torch.Tensor:
        """Parsed scores of every completion in the global batch (NaN on failure), logged as rates."""
        device = self.accelerator.device
        local = torch.tensor(
            [[p.score if p.ok else float("nan"), float(p.clipped)] for p in self._local_parsed],
            dtype=torch.float32,
            device=device,
        )
        gathered = self.accelerator.gather(local)
        self._metrics[mode]["qhawkeye/parse_failure_rate"].append(
            torch.isnan(gathered[:, 0]).float().mean().item()
        )
        self._metrics[mode]["qhawkeye/clip_rate"].append(gathered[:, 1].mean().item())
        return gathered[:, 0]

    def _apply_uado(self, output: dict, scores: torch.Tensor, mode: str) -> None:
        g = self.num_generations if mode == "train" else self.num_generations_eval
        u = group_uncertainty(
            scores.view(-1, g),
            self.args.uado_score_min,
            self.args.uado_score_max,
            self.args.uado_unparsed_policy,
        )
        w = uado_weights(u, self.args.uado_alpha).repeat_interleave(g)
        n_local = output["advantages"].size(0)
        start = self.accelerator.process_index * n_local
        output["advantages"] = output["advantages"] * w[start : start + n_local].to(
            output["advantages"].dtype
        )
        self._metrics[mode]["qhawkeye/uado_weight"].append(w.mean().item())
        self._metrics[mode]["qhawkeye/uado_uncertainty"].append(u.mean().item())

    def _add_degraded_branch(self, output: dict, degraded: list) -> None:
        pixel_values = self._degraded_pixel_values(output, degraded)
        if self.args.pao_grad_through_degraded:
            rows = output["image_grid_thw"].prod(-1).tolist()
            output[DEG_PIXELS_KEY] = list(torch.split(pixel_values, rows))
            return
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
        ):
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                ids,
                mask,
                output["completion_ids"].size(1),
                batch_size=self.args.per_device_train_batch_size,
                compute_entropy=True,
                pixel_values=pixel_values,
                image_grid_thw=output["image_grid_thw"],
                num_images=output["num_images"],
                mm_token_type_ids=output.get("mm_token_type_ids"),
            )
        output[DEG_LOGPS_KEY] = logps
        output[DEG_ENTROPY_KEY] = entropies

    def _degraded_pixel_values(self, output: dict, degraded: list) -> torch.Tensor:
        if "image_grid_thw" not in output:
            raise ValueError("PAO needs a Qwen2-VL-style processor (pixel_values + image_grid_thw)")
        processed = self.processing_class.image_processor(images=degraded, return_tensors="pt")
        grid = processed["image_grid_thw"].to(output["image_grid_thw"].device)
        if grid.shape != output["image_grid_thw"].shape or not torch.equal(grid, output["image_grid_thw"]):
            raise ValueError(
                "a degraded image does not have its original's size (patch grids differ: "
                f"{output['image_grid_thw'].tolist()} vs {grid.tolist()}); PAO needs pairs of identical size. "
                "Rebuild the pairs with `qhawkeye data degrade`."
            )
        return processed["pixel_values"].to(self.accelerator.device)

    # ---------------------------------------------------------------- loss
    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._capture_forward:
            self._captured = result[:2]
            self._capture_forward = False
        return result

    def _compute_loss(self, model, inputs):
        if not (self.args.use_pao and self.model.training):
            return super()._compute_loss(model, inputs)
        self._capture_forward = True
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._capture_forward = False
        logps_orig, entropy_orig = self._captured
        self._captured = None
        return loss + self._perception_terms(model, inputs, logps_orig, entropy_orig)

    def _perception_terms(self, model, inputs, logps_orig, entropy_orig) -> torch.Tensor:
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        logps_deg, entropy_deg = self._degraded_logps(model, inputs)
        kl = perception_kl_per_token(logps_orig, logps_deg)
        gamma_t = gamma_schedule(self.state.epoch or 0.0, self.args.pao_gamma, self.args.pao_gamma_zero_epoch)
        agg = self._aggregate(mask, inputs["num_items_in_batch"])
        extra = -gamma_t * agg(kl) + self.args.pao_eta1 * agg(entropy_orig)
        if self.args.pao_grad_through_degraded:
            extra = extra + self.args.pao_eta2 * agg(entropy_deg)
        metrics = self._metrics["train"]
        metrics["qhawkeye/kl_prcp"].append(self._global_token_mean(kl, mask))
        metrics["qhawkeye/gamma_t"].append(gamma_t)
        metrics["qhawkeye/entropy_orig"].append(self._global_token_mean(entropy_orig, mask))
        metrics["qhawkeye/entropy_deg"].append(self._global_token_mean(entropy_deg, mask))
        return extra

    def _degraded_logps(self, model, inputs):
        if not self.args.pao_grad_through_degraded:
            if DEG_LOGPS_KEY not in inputs:
                raise ValueError(
                    "PAO is on but the batch has no degraded log-probs (was it generated with PAO off?)"
                )
            return inputs[DEG_LOGPS_KEY], inputs[DEG_ENTROPY_KEY]
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model,
            torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
            inputs["completion_ids"].size(1),
            compute_entropy=True,
            pixel_values=torch.cat(inputs[DEG_PIXELS_KEY]),
            image_grid_thw=inputs["image_grid_thw"],
            num_images=inputs["num_images"],
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )
        return logps, entropies

    def _aggregate(self, mask: torch.Tensor, num_items_in_batch):
        def agg(per_token: torch.Tensor) -> torch.Tensor:
            return aggregate_like_trl(
                per_token,
                mask,
                self.loss_type,
                train=True,
                gradient_accumulation_steps=self.current_gradient_accumulation_steps,
                num_items_in_batch=num_items_in_batch,
                num_processes=self.accelerator.num_processes,
                steps_per_generation=self.args.steps_per_generation,
                max_completion_length=self.max_completion_length,
            )

        return agg

    def _global_token_mean(self, per_token: torch.Tensor, mask: torch.Tensor) -> float:
        totals = torch.stack([(per_token.detach() * mask).sum(), mask.sum().to(per_token.dtype)])
        totals = self.accelerator.reduce(totals, reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()


class EpochRepeatSampler(RepeatSampler):
    """TRL's RepeatSampler whose permutation is a function of (seed, epoch), not of how many epochs this
    process has iterated: the Trainer calls ``set_epoch`` before each epoch, including the one it resumes in."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            self.generator.manual_seed((self.seed or 0) + self.epoch)
        return super().__iter__()
