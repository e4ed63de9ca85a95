"""Restoring a training checkpoint's model weights exactly, whatever names ``save_pretrained`` gave them.

transformers 5 saves Qwen2.5-VL weights under their legacy names (``model.layers.*``, ``visual.*``) so that
older loaders and vLLM read them, while the live module calls them ``model.language_model.layers.*`` and
``model.visual.*``. ``Trainer._load_from_checkpoint`` loads a checkpoint with a *non-strict*
``load_state_dict`` that applies no renaming, so on resume no key matched and training silently went on from
the base weights. :func:`load_weights_into` maps the checkpoint's names through transformers' own
conversion mapping (the same one ``save_pretrained`` applied in reverse), copies every tensor in place and
refuses any missing or unexpected key.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from accelerate.utils import send_to_device
from safetensors import safe_open

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a ``save_pretrained`` folder (one file, or the shards of an index)."""
    folder = Path(folder)
    if (folder / SAFE_WEIGHTS).is_file():
        return [folder / SAFE_WEIGHTS]
    if (folder / SAFE_INDEX).is_file():
        index = json.loads((folder / SAFE_INDEX).read_text())
        return [folder / name for name in sorted(set(index["weight_map"].values()))]
    raise FileNotFoundError(
        f"{folder} holds no {SAFE_WEIGHTS} or {SAFE_INDEX}: it is not a full-weights checkpoint "
        "(LoRA checkpoints hold adapter_model.safetensors; DeepSpeed/FSDP ones their own shards)."
    )


def saved_name_map(model: torch.nn.Module) -> dict[str, str]:
    """``{name in a save_pretrained file: name in model.state_dict()}``.

    Built by running transformers' own save-time conversion on the model's state dict and matching the
    tensors by identity; raises ``NotImplementedError`` when the conversion transforms tensors (fused or
    split weights) instead of only renaming them.
    """
    from transformers.core_model_loading import revert_weight_conversion

    own = model.state_dict()
    by_id = {id(t): name for name, t in own.items()}
    reverted = revert_weight_conversion(model, dict(own))
    mapping = {}
    for saved, tensor in reverted.items():
        if id(tensor) not in by_id:
            raise NotImplementedError(
                f"{type(model).__name__}: saving transforms weight {saved!r} (not only renames it)"
            )
        mapping[saved] = by_id[id(tensor)]
    return mapping


def load_weights_into(model: torch.nn.Module, folder: str | Path) -> int:
    """Copy a checkpoint's weights into ``model`` in place, strictly; returns the number of tensors.

    Raises:
        ValueError: the checkpoint lacks weights the model has, or holds weights the model does not,
            or a shape differs (it was saved from another architecture or size).
    """
    names = saved_name_map(model)
    own = model.state_dict()
    files = checkpoint_files(folder)
    seen: set[str] = set()
    unexpected: list[str] = []
    with torch.no_grad():
        for path in files:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for saved in f.keys():
                    target = names.get(saved)
                    if target is None:
                        unexpected.append(saved)
                        continue
                    tensor = f.get_tensor(saved)
                    if tensor.shape != own[target].shape:
                        raise ValueError(
                            f"{path}: weight {saved!r} has shape {tuple(tensor.shape)}, the model's "
                            f"{target!r} has {tuple(own[target].shape)}; the checkpoint is from another model."
                        )
                    own[target].copy_(tensor)
                    seen.add(target)
    missing = _untied_missing(own, set(names.values()) - seen, seen)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {folder} does not match the model: missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(unexpected)[:5]} (of {len(missing)} and {len(unexpected)}). Resume with the model the run "
            "was started from."
        )
    logger.info("restored %d weight tensors from %s", len(seen), folder)
    return len(seen)


def _untied_missing(own: dict, missing: set[str], loaded: set[str]) -> set[str]:
    """Missing names that do not share storage with a loaded one (tied weights are saved once)."""
    loaded_ptrs = {own[name].data_ptr() for name in loaded}
    return {name for name in missing if own[name].data_ptr() not in loaded_ptrs}


# ---------------------------------------------------------------- GRPO's generation buffer
# TRL generates once per ``steps_per_generation * num_iterations`` micro-steps and serves the slices from
# ``_buffered_inputs``. A checkpoint taken inside such a cycle must carry that buffer (and TRL's micro-step
# counter): regenerating it on resume would draw other completions than the uninterrupted run used.


def generation_state_file(folder: str | Path, process_index: int) -> Path:
    return Path(folder) / f"qhawkeye_generation_state_{process_index}.pt"


def save_generation_state(folder: str | Path, process_index: int, step: int, buffer, mid_cycle: bool) -> None:
    """Write TRL's micro-step counter, and the buffered generation batch when inside a cycle."""
    state = {"step": step, "buffer": send_to_device(buffer, "cpu") if mid_cycle else None}
    path = generation_state_file(folder, process_index)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_generation_state(folder: str | Path, process_index: int, device) -> dict | None:
    """What :func:`save_generation_state` wrote (buffer moved to ``device``), or None for older checkpoints."""
    path = generation_state_file(folder, process_index)
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["buffer"] = send_to_device(state["buffer"], device) if state["buffer"] is not None else None
    return state
