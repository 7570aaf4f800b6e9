import itertools
import json
import random
import re

from helpers.tasks import curriculum, grading
from helpers.formats.tool_formats import parse_tool_calls


def test_training_stream_never_yields_heldout_keys():
    tasks = list(itertools.islice(curriculum.training_stream(0), 3000))
    assert not [t.key for t in tasks if t.family != "seed" and curriculum.is_heldout(t.key)]


def test_training_stream_is_deterministic():
    a = [t.key for t in itertools.islice(curriculum.training_stream(5), 200)]
    b = [t.key for t in itertools.islice(curriculum.training_stream(5), 200)]
    assert a == b


def test_heldout_set_covers_every_family_with_distinct_heldout_tasks():
    tasks = curriculum.heldout_set(20)
    for family in curriculum.FAMILIES:
        keys = [t.key for t in tasks if t.family == family]
        assert len(keys) == len(set(keys)) == 20
        assert all(curriculum.is_heldout(k) for k in keys)


def test_every_training_answer_passes_its_own_grader():
    """The curriculum's answers are what the graders accept (code runs, calls validate)."""
    stream = curriculum.training_stream(1)
    for task in itertools.islice(stream, 300):
        ok, why = grading.grade(task, task.answer)
        assert ok, (task.key, task.answer, why)
    for task in curriculum.seed_tasks():
        assert grading.grade(task, task.answer)[0], task.key


def test_arithmetic_numbers_stay_below_100():
    rng = random.Random(3)
    for _ in range(500):
        task = curriculum.arithmetic(rng)
        numbers = [int(n) for n in re.findall(r"\d+", task.messages[-1]["content"])]
        assert all(n < 100 for n in numbers) and task.expected["number"] >= 0


def test_worked_answers_are_true_step_by_step():
    """Every equation in a worked sum holds, and the units step works on single digits (plus a borrowed ten)."""
    for a, b in itertools.product(range(100), repeat=2):
        for op in "+-" if a >= b else "+":
            answer, result = curriculum.worked_answer(a, b, op)
            assert result == (a + b if op == "+" else a - b) and answer.endswith(f"The answer is {result}.")
            steps = re.findall(r"(\d+(?: [+-] \d+)+) = (\d+)", answer)
            assert len(steps) == 3 and all(eval(lhs) == int(rhs) for lhs, rhs in steps), answer
            assert int(steps[0][0].split()[0]) < 20 and int(steps[0][0].split()[-1]) < 10, answer


def test_tool_call_tasks_offer_the_expected_tool():
    rng = random.Random(0)
    for _ in range(100):
        task = curriculum.tool_call(rng)
        assert task.expected["name"] in [t["function"]["name"] for t in task.tools]
        assert parse_tool_calls(task.answer)[0] == {"name": task.expected["name"],
                                                   "arguments": task.expected["arguments"]}


def test_no_tool_tasks_never_offer_a_matching_tool():
    rng = random.Random(0)
    for _ in range(200):
        task = curriculum.no_tool(rng)
        assert task.expected["plain"] and parse_tool_calls(task.answer) is None


def test_seed_prompts_include_the_seed_tool_verbatim():
    tool_task = next(t for t in curriculum.seed_tasks() if t.tools)
    assert json.dumps(tool_task.tools[0]) == json.dumps(curriculum.CIRCLE_TOOL)
    assert tool_task.messages[-1]["content"] == "Calculate the area of a circle with radius 5 units"
