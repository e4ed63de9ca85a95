import math

import pytest

from qhawkeye.rewards import (
    accuracy_curve,
    accuracy_reward,
    format_reward,
    get_reward_funcs,
    repetition_penalty,
    repetition_penalty_value,
)


def conv(text):
    return [{"role": "assistant", "content": text}]


def test_accuracy_curve_hand_values():
    # exp(-|err|/0.3): err 0 -> 1, err 1 -> exp(-10/3) = 0.035674, err 0.3 -> exp(-1) = 0.367879
    assert accuracy_curve(3.0, 3.0, 0.3) == 1.0
    assert accuracy_curve(4.0, 3.0, 0.3) == pytest.approx(0.0356740, abs=1e-6)
    assert accuracy_curve(3.3, 3.0, 0.3) == pytest.approx(math.exp(-1))
    # both sides are clipped to [1, 5] first: pred 7 -> 5, gt 6 -> 5
    assert accuracy_curve(7.0, 6.0, 0.3) == 1.0
    with pytest.raises(ValueError):
        accuracy_curve(1, 1, 0)


def test_accuracy_reward_zero_on_parse_failure():
    completions = [conv("<think>x</think><answer>4</answer>"), conv("no answer"), conv("<answer>x</answer>")]
    rewards = accuracy_reward(completions, gt_score=[4.0, 4.0, 4.0], tau=0.3)
    assert rewards == [1.0, 0.0, 0.0]


def test_format_reward():
    rewards = format_reward([conv("<think>a</think><answer>3.5</answer>"), conv("<answer>3.5</answer>")])
    assert rewards == [0.8, 0.0]


def test_repetition_penalty_release_behaviour():
    # well-formed answer: text inside <answer> is "3.75" -> "375": nothing repeats
    assert repetition_penalty_value("<think>blah blah</think><answer>3.75</answer>") == 0.0
    # no tag: whole text. "a a a a a a" -> words: 'a' x6 (>5) -> 6; chars: 'a' x6, ' ' x5 -> 6 -> -0.25*12 = -3 -> floor -2
    assert repetition_penalty_value("a a a a a a") == -2.0
    # "ab ab ab ab ab ab" word 'ab' x6 -> 6 words, chars a x6, b x6, ' ' x5 -> 12: -0.25*18 -> floored -2
    # a milder case: "abcdef" * 1 with six 'x' chars: "xxxxxx" -> word 'xxxxxx' once, char 'x' 6 -> -1.5
    assert repetition_penalty_value("xxxxxx") == -1.5
    # punctuation is removed before counting: "!!!!!!" -> "" -> words [''] once -> 0
    assert repetition_penalty_value("!!!!!!") == 0.0
    assert repetition_penalty([conv("<answer>2</answer>"), conv("xxxxxx")]) == [0.0, -1.5]


def test_get_reward_funcs_binds_tau_and_names():
    acc, fmt = get_reward_funcs(["accuracy", "format"], accuracy_tau=1.0)
    assert acc.__name__ == "accuracy_reward" and fmt is format_reward
    assert acc([conv("<answer>4</answer>")], gt_score=[3.0]) == [pytest.approx(math.exp(-1))]
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        get_reward_funcs(["acuracy"], 0.3)


def test_out_of_range_answers_clip_or_earn_nothing():
    from qhawkeye.rewards import get_reward_funcs

    answers = ["<think>a</think><answer>1911</answer>", "<think>a</think><answer>5</answer>"]
    (clip,) = get_reward_funcs(["accuracy"], 0.3)
    (zero,) = get_reward_funcs(["accuracy"], 0.3, "zero")
    assert clip(answers, gt_score=[5.0, 5.0]) == [1.0, 1.0]  # 1911 is clipped to 5: a perfect score (SPEC)
    assert zero(answers, gt_score=[5.0, 5.0]) == [0.0, 1.0]
    with pytest.raises(ValueError, match="accuracy_out_of_range"):
        get_reward_funcs(["accuracy"], 0.3, "ignore")
