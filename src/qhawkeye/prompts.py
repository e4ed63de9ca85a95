"""The one prompt module: what the model is asked, in training, scoring, evaluation and serving alike.

The system turn states the task, the answer format and the scale; the user turn carries the image and the
question. TRL inserts the image into the first user turn itself, so training prompts carry text only and
:func:`build_messages` adds an image placeholder for scoring.

Evaluating someone else's checkpoint with the prompt it was trained on is a named :class:`PromptPreset`
(``qhawkeye`` is the default and the only one used in training); the preset's name is recorded in every
scoring and evaluation output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qhawkeye import SCORE_MAX, SCORE_MIN, parsing
from qhawkeye.registry import lookup

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
    return PRESETS["qhawkeye"].messages()


@dataclass(frozen=True)
class PromptPreset:
    """A prompt and the parser that reads its answers.

    Attributes:
        name: the name users type (``--prompt-preset``) and that results record.
        system: the system turn.
        question: the user turn's text.
        image_first: whether the image comes before the question in the user turn.
        parser: ``text -> ParsedScore``.
        source: where the prompt comes from.
    """

    name: str
    system: str
    question: str
    image_first: bool
    parser: Callable[[str], parsing.ParsedScore]
    source: str

    def messages(self) -> list[dict]:
        """Chat messages with an ``{"type": "image"}`` placeholder, for the processor's chat template."""
        image, text = {"type": "image"}, {"type": "text", "text": self.question}
        content = [image, text] if self.image_first else [text, image]
        return [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {"role": "user", "content": content},
        ]


_RELEASE_SYSTEM = (
    "You are doing the image quality assessment task. Here is the question: What is your overall rating on "
    "the quality of this picture?\nPlease provide your response in the following format:\n<think>\n[Your "
    "detailed analysis of the image quality here]\n</think>\n<answer>\n[Only the numerical score here]\n"
    "</answer>\nRequirements:\n- The rating should be a float between 1 and 5, rounded to two decimal "
    "places\n- 1 represents very poor quality and 5 represents excellent quality\n- The <answer></answer> "
    "tags must contain ONLY the numerical score (e.g., 3.75), no other text\n"
)
_RELEASE_QUESTION = (
    "Please evaluate and rating this picture following the exact format specified in the instructions. The "
    "rating should be a float between 1 and 5, rounded to two decimal places. Return the final answer with "
    "the following keys: final_score : The score."
)
_QINSIGHT_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>"
)
_QINSIGHT_QUESTION = (
    "What is your overall rating on the quality of this picture? The rating should be a float between 1 and "
    "5, rounded to two decimal places, with 1 representing very poor quality and 5 representing excellent "
    'quality. Return the final answer in JSON format with the following keys: "rating": The score.'
)

PRESETS: dict[str, PromptPreset] = {
    "qhawkeye": PromptPreset(
        "qhawkeye", SYSTEM_PROMPT, QUESTION, True, parsing.parse_score, "this package (training and scoring)"
    ),
    "q-hawkeye-release": PromptPreset(
        "q-hawkeye-release",
        _RELEASE_SYSTEM,
        _RELEASE_QUESTION,
        False,
        parsing.parse_score_release,
        "AMAP-ML/Q-Hawkeye inference.py",
    ),
    "q-insight": PromptPreset(
        "q-insight",
        _QINSIGHT_SYSTEM,
        _QINSIGHT_QUESTION,
        False,
        parsing.parse_score_json_rating,
        "ByteDance Q-Insight score demo (answer is JSON with a rating key)",
    ),
}
"""Prompt presets by name; ``qhawkeye`` is the default everywhere."""


def get_preset(name: str) -> PromptPreset:
    return lookup(PRESETS, name, "prompt preset")
