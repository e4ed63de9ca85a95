"""The one prompt module: what the model is asked, in training, scoring, evaluation and serving alike.

The system turn states the task, the answer format and the scale; the user turn carries the image and the
question. TRL inserts the image into the first user turn itself, so training prompts carry text only and
:func:`build_messages` adds an image placeholder for scoring.
"""

from __future__ import annotations

from qhawkeye import SCORE_MAX, SCORE_MIN

QUESTION = "What is your overall rating on the quality of this picture?"

SYSTEM_PROMPT = (
    "You are an expert in image quality assessment. Look at the picture and judge its overall visual "
    "quality (sharpness, noise, compression artefacts, exposure, colour, content clarity). "
    "First reason about the quality inside <think> </think> tags, then give the rating inside "
    "<answer> </answer> tags as a single number between "
    f"{SCORE_MIN:g} (bad) and {SCORE_MAX:g} (excellent); decimals such as 3.25 are allowed. "
    "The answer format is exactly: <think>your analysis</think><answer>your score</answer>"
)


def build_messages(with_image: bool = False) -> list[dict]:
    """Chat messages asking for a quality rating.

    Args:
        with_image: put an ``{"type": "image"}`` placeholder before the question (scoring, serving).
            Training prompts leave it out: TRL inserts the dataset's image into the first user turn.
    """
    if not with_image:
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": QUESTION},
        ]
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
    ]
