"""Batched generation for scoring and serving, with seeded sampling that does not depend on the batch.

``transformers``' own sampling draws from one global RNG, so a sample depends on which other requests share
the batch and in what order: scoring the same image twice would give different draws. Here each sampled row
owns a ``torch.Generator`` seeded by its request (for scoring: from the run seed, the image id and the draw
index); :class:`RowSampler` draws that row's token by inverse-CDF sampling and masks every other token, and
``generate`` itself runs greedily. A row without a seed is decoded greedily. So the same image with the same
seed gets the same answer in any batch (up to floating-point differences in the logits, which a different
batch shape can cause), and greedy and sampled requests can share one batch.

Rows with different ``max_new_tokens`` share a batch too: the batch generates up to the largest limit and
each row is cut at its own, which is exactly what generating that row alone with its limit gives.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList


def row_seed(seed: int, key: str, draw: int) -> int:
    """A 63-bit seed for draw ``draw`` of the image ``key`` under the run seed ``seed``."""
    digest = hashlib.sha256(f"{seed}\0{key}\0{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class GenerationRequest:
    """One conversation to answer.

    Attributes:
        messages: chat messages whose content lists hold ``{"type": "image"}`` placeholders, in order.
        images: the RGB images for those placeholders.
        max_new_tokens: this row's generation limit.
        seed: sample with this seed; None decodes greedily.
        temperature, top_p, top_k: sampling settings (ignored when greedy); top_k 0 and top_p 1.0 are off.
    """

    messages: list[dict]
    images: list[Image.Image]
    max_new_tokens: int
    seed: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0


@dataclass
class Generation:
    """One answer: its text, why it stopped ("stop" or "length"), token counts, optional log-probs.

    ``token_ids`` are the kept completion tokens; ``watched_logprobs`` (T, W) the log-probabilities of the
    ``watch_token_ids`` asked for at every step, under the full (unfiltered) distribution.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: torch.Tensor | None = field(default=None, repr=False)
    token_ids: list[int] = field(default_factory=list, repr=False)
    watched_logprobs: torch.Tensor | None = field(default=None, repr=False)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k (0 = off), then top-p (1.0 = off) on (V,) logits; removed entries -inf."""
    logits = logits.float() / temperature
    if 0 < top_k < logits.numel():
        logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        drop_sorted = probs.cumsum(-1) - probs >= top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(
            torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted), float("-inf")
        )
    return logits


class RowSampler(LogitsProcessor):
    """Samples each seeded row with its own generator and leaves greedy rows alone."""

    def __init__(self, requests: Sequence[GenerationRequest]):
        for r in requests:
            if r.seed is not None and r.temperature <= 0:
                raise ValueError("temperature must be > 0 for sampling (use greedy decoding instead)")
        self.requests = list(requests)
        self.generators = [
            None if r.seed is None else torch.Generator().manual_seed(r.seed) for r in requests
        ]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = scores.clone()
        for row, (req, gen) in enumerate(zip(self.requests, self.generators, strict=True)):
            if gen is None:
                continue
            probs = filter_logits(scores[row], req.temperature, req.top_k, req.top_p).softmax(-1)
            cdf = probs.cumsum(-1)
            target = torch.rand((), generator=gen).to(cdf.device) * cdf[-1]
            token = torch.searchsorted(cdf, target.unsqueeze(0), right=True).clamp_max(cdf.numel() - 1)
            out[row] = float("-inf")
            out[row, token] = 0.0
        return out


def _eos_ids(generation_config) -> set[int]:
    eos = generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


@torch.inference_mode()
def generate_batch(
    model,
    processor,
    requests: Sequence[GenerationRequest],
    generation_config,
    return_logprobs: bool = False,
    watch_token_ids: Sequence[int] | None = None,
) -> list[Generation]:
    """Answer several requests in one ``generate`` call (left padding); results in request order.

    ``watch_token_ids``: also return, per row and step, the log-probabilities of these tokens (the
    expected-score mode watches the score digits).
    """
    texts = [
        processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        for r in requests
    ]
    images = [img for r in requests for img in r.images]
    tokenizer = processor.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation appends on the right
    try:
        batch = processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(
            model.device
        )
    finally:
        tokenizer.padding_side = side
    config = copy.deepcopy(generation_config)
    config.max_new_tokens = max(r.max_new_tokens for r in requests)
    config.return_dict_in_generate = True
    config.output_logits = return_logprobs or watch_token_ids is not None
    sampled = any(r.seed is not None for r in requests)
    out = model.generate(
        **batch,
        generation_config=config,
        logits_processor=LogitsProcessorList([RowSampler(requests)]) if sampled else None,
    )
    new = out.sequences[:, batch["input_ids"].size(1) :]
    logprobs = _chosen_logprobs(new, out.logits) if return_logprobs else None
    watched = _watched_logprobs(out.logits, watch_token_ids) if watch_token_ids is not None else None
    prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
    eos = _eos_ids(generation_config)
    results = []
    for row, (req, ids) in enumerate(zip(requests, new.tolist(), strict=True)):
        ids = ids[: req.max_new_tokens]
        end = next((i for i, t in enumerate(ids) if t in eos), None)
        kept = ids if end is None else ids[: end + 1]
        text = processor.tokenizer.decode(kept, skip_special_tokens=True)
        finish = "length" if end is None else "stop"
        row_logprobs = None if logprobs is None else logprobs[row, : len(kept)].cpu()
        row_watched = None if watched is None else watched[row, : len(kept)].cpu()
        results.append(
            Generation(text, finish, int(prompt_lengths[row]), len(kept), row_logprobs, kept, row_watched)
        )
    return results


def _watched_logprobs(logits: tuple[torch.Tensor, ...], token_ids: Sequence[int]) -> torch.Tensor:
    """(B, T, W) log-probabilities of the watched tokens at every step."""
    index = torch.tensor(list(token_ids), device=logits[0].device)
    return torch.stack([step.float().log_softmax(-1)[:, index] for step in logits], dim=1)


def _chosen_logprobs(new: torch.Tensor, logits: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(B, T) log-probabilities of the generated tokens under the (unfiltered) model distribution."""
    return torch.stack(logits, dim=1).float().log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
