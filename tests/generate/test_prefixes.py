"""Which prompts share a prefix, and how a batch is laid out in the cache (harness.engine.prefixes)."""

from harness.engine import prefixes

PASSAGE_A = list(range(100, 160))
PASSAGE_B = list(range(200, 250))
HEADER = [1, 2, 3]  # an instruction every prompt starts with: too short to share


def test_questions_on_one_passage_form_a_group_and_others_stay_alone():
    prompts = [
        HEADER + PASSAGE_A + [7, 8],
        HEADER + PASSAGE_B + [9],
        HEADER + PASSAGE_A + [5, 6, 7],
        HEADER + [40, 41, 42],
        HEADER + PASSAGE_B + [3, 3],
    ]
    order, shared = prefixes.plan(prompts)
    assert sorted(order) == list(range(5))
    assert shared[0] == shared[2] == len(HEADER + PASSAGE_A)
    assert shared[1] == shared[4] == len(HEADER + PASSAGE_B)
    assert shared[3] == 0  # shares only the 3-token header
    # groups stay together, the longest group first, and in a group the longest prompt first
    assert order[:2] == [2, 0] and order[2:4] == [4, 1] and order[4] == 3


def test_a_prompt_that_is_a_prefix_of_another_keeps_its_last_token_for_the_row_pass():
    short = PASSAGE_A[:40]
    _, shared = prefixes.plan([short, PASSAGE_A])
    assert shared == [39, 40]


def test_a_group_splits_where_sharing_drops_sharply():
    long_common = PASSAGE_A + PASSAGE_B
    prompts = [long_common + [1], long_common + [2], PASSAGE_A[:40] + [9] * 30]
    _, shared = prefixes.plan(prompts)
    assert shared[:2] == [len(long_common)] * 2 and shared[2] == 0


def test_batch_layout_needs_first_part_plus_rest_plus_new_tokens():
    prompts = [PASSAGE_A + [1, 2], PASSAGE_A + [3], [9] * 30]
    shared = [60, 60, 0]
    assert prefixes.split(prompts, shared) == [60, 60, 29]  # the lone prompt keeps one token for the row pass
    assert prefixes.slots_needed(prompts, shared, 8) == 64 + 2 + 8  # the first part rounded up to 16
    # without sharing nothing is split: one pass over the longest prompt
    assert prefixes.split(prompts, [0, 0, 0]) == [0, 0, 0]
    assert prefixes.slots_needed(prompts, None, 8) == 62 + 8


def test_a_batch_where_sharing_saves_little_is_prefilled_in_one_pass():
    loners = [[7, i] + list(range(300, 358)) for i in range(3)]
    prompts = [PASSAGE_A + [1], PASSAGE_A + [2]] + loners
    shared = [60, 60, 0, 0, 0]
    assert prefixes.split(prompts, shared) == [0] * 5  # 4 distinct first parts of 5 rows: no gain
    assert prefixes.slots_needed(prompts, shared, 8) == 61 + 8
