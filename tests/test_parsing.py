import pytest

from qhawkeye.parsing import completion_text, is_well_formed, parse_score


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>ok</think><answer>3.75</answer>", 3.75),
        ("<answer> 4 </answer>", 4.0),
        ("<answer>\n2.5\n</answer>", 2.5),
        ("<answer>+3.0</answer>", 3.0),
        ("<think>a</think><answer>2</answer><answer>5</answer>", 2.0),  # the first block counts
    ],
)
def test_parses_valid_answers(text, expected):
    parsed = parse_score(text)
    assert parsed.ok and parsed.score == expected and not parsed.clipped


@pytest.mark.parametrize(
    "text",
    [
        "3.75",  # no tag
        "<answer></answer>",
        "<answer>3.75 out of 5</answer>",
        "<answer>3.5 4.0</answer>",  # two numbers
        "<answer>.5</answer>",  # grammar needs digits before the point
        "<answer>3.</answer>",
        "<answer>three</answer>",
        "<answer>1e0</answer>",
        "<answer>nan</answer>",
        "<answer>4</answer",  # unclosed
        "<answer>abc</answer><answer>4</answer>",  # first block is bad: failure, no fallback
    ],
)
def test_rejects_everything_else(text):
    parsed = parse_score(text)
    assert not parsed.ok and parsed.score is None and parsed.error


@pytest.mark.parametrize(
    "text, raw, score", [("<answer>7</answer>", 7.0, 5.0), ("<answer>-2.5</answer>", -2.5, 1.0)]
)
def test_out_of_range_is_clipped_and_recorded(text, raw, score):
    parsed = parse_score(text)
    assert parsed.ok and parsed.raw == raw and parsed.score == score and parsed.clipped


def test_well_formed_requires_whole_completion():
    assert is_well_formed("<think>sharp, clean</think><answer>4.25</answer>")
    assert is_well_formed(" <think>x</think> <answer> 3 </answer>\n")
    assert not is_well_formed("<answer>3</answer>")
    assert not is_well_formed("<think>x</think><answer>3</answer> trailing")
    assert not is_well_formed("<think>x</think><answer>good</answer>")


def test_completion_text_accepts_trl_shapes():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert (
        completion_text(
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        )
        == "ab"
    )


def test_prompt_presets_have_their_own_parsers():
    from qhawkeye import prompts

    assert prompts.build_messages(with_image=True) == prompts.get_preset("qhawkeye").messages()
    release = prompts.get_preset("q-hawkeye-release")
    assert release.parser("<think>x</think><answer>\nfinal_score: 3.5\n</answer>").score == 3.5
    assert release.parser("<answer>3.5 or 4</answer>").error
    insight = prompts.get_preset("q-insight")
    assert insight.parser('<think>x</think><answer>{"rating": 4.25}</answer>').score == 4.25
    assert insight.parser("<answer>4.25</answer>").error  # Q-Insight answers in JSON
    assert insight.parser('<answer>{"rating": 7}</answer>').clipped
    messages = insight.messages()
    assert messages[1]["content"][0]["type"] == "text"  # the question comes before the image there
    with pytest.raises(ValueError, match="did you mean 'q-insight'"):
        prompts.get_preset("q-insigt")
