"""Fails loudly when the TRL hooks QHawkeyeGRPOTrainer overrides change.

The trainer overrides private GRPOTrainer methods. If TRL is upgraded, these checks fail and name what moved;
re-read the new methods, adapt the trainer, then update the pins below (and pyproject's trl pin).
"""

import hashlib
import inspect
import re

import trl
from trl import GRPOTrainer

TRL_VERSION = "1.16.0"
# sha256 of each method's source (whitespace-normalised) in trl 1.16.0
HOOK_SOURCE_SHA256 = {
    "_calculate_rewards": "28459084198ce72ea961a385c4e42f0577978b3756ea4c371d96e4840766d48b",
    "_generate_and_score_completions": "a9a9be044a8c279dbaf3d8eadc1f2ed1af22b56b011f7c0309e52d7dc31977a5",
    "_get_per_token_logps_and_entropies": "9fe649dbd39ee0c1d59f29485de967addca4648cf0962e0bf3f18c3dd095f94a",
    "_compute_loss": "b5eff5bfc18c864f749a0fdab79712cce10482c971ef491017104fce6008de7c",
    "_prepare_inputs": "5cb4fd26d4ca85ede069e3bad25171d6a7f7a00f934645fb39da772f6876c6f1",
    # exact resume (qhawkeye.train.checkpoint): the sampler we reseed per epoch, the per-process state files
    # we extend, the weight loader we replace for full-weights checkpoints, and where TRL counts micro-steps
    "_get_train_sampler": "b107b3cdea8cc9915c31bbeb094f955865367f6e7ed40ce132b5334c4820aa11",
    "_save_rng_state": "6bac7f52c41aad3e24f7d10dc359aca6d2052c3d748e069a3f34b3a045dc2588",
    "_load_rng_state": "e781477d9f695edd652d7235dc1480e5d4977c7185fd436eb1c3aa17da5d5e4c",
    "_load_from_checkpoint": "72142480ec89530ce411686909031dfb2ae8725b4d4342f37155f05037a4c339",
    "training_step": "37407a1ee6c102869ad3473bb99848ce19cef8e7e3713d1447429991140586f0",
    # not overridden, relied on: log() averages and clears self._metrics[mode], which our trainer's metrics and
    # the quality-eval callback (qhawkeye.evaluate.callback) append to
    "log": "b7a9c0e6c7ea757dbbe4dd187192b257e54abd6e2b5229e14cd141525d2bca37",
}


def _digest(name: str) -> str:
    source = inspect.getsource(getattr(GRPOTrainer, name))
    return hashlib.sha256(re.sub(r"\s+", " ", source).encode()).hexdigest()


def test_trl_version_is_the_pinned_one():
    assert trl.__version__ == TRL_VERSION, (
        f"qhawkeye is validated against trl=={TRL_VERSION}, found {trl.__version__}"
    )


def test_overridden_hooks_unchanged():
    changed = {name: _digest(name) for name, digest in HOOK_SOURCE_SHA256.items() if _digest(name) != digest}
    assert not changed, f"TRL hooks changed since {TRL_VERSION}: {sorted(changed)}; new digests: {changed}"


def test_hook_signatures():
    params = lambda name: list(inspect.signature(getattr(GRPOTrainer, name)).parameters)  # noqa: E731
    assert params("_calculate_rewards") == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert params("_generate_and_score_completions") == ["self", "inputs"]
    assert params("_compute_loss") == ["self", "model", "inputs"]
    logps = params("_get_per_token_logps_and_entropies")
    assert logps[:5] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    assert {
        "batch_size",
        "compute_entropy",
        "pixel_values",
        "image_grid_thw",
        "num_images",
        "mm_token_type_ids",
    } <= set(logps)


def test_loss_aggregation_branches_we_mirror_still_exist():
    source = inspect.getsource(GRPOTrainer._compute_loss)
    for branch in ('["grpo", "sapo"]', '"bnpo"', '"dr_grpo"', '["cispo", "dapo", "vespo"]', '"luspo"'):
        assert branch in source, (
            f"TRL's loss_type branch {branch} moved: update qhawkeye.train.pao.aggregate_like_trl"
        )
