import pytest

from helpers.tasks import grading
from helpers.tasks.curriculum import CIRCLE_TOOL


@pytest.mark.parametrize("text,expected", [("17 + 25 = 42. The answer is 42.", 42), ("about 1,200.5 km", 1200.5),
                                           ("-3 is it", -3), ("The answer is 2.4.", 2.4)])
def test_math_takes_the_final_number(text, expected):
    assert grading.grade_math(text, expected)


def test_math_rejects_wrong_or_missing_numbers():
    assert not grading.grade_math("The answer is 41.", 42)
    assert not grading.grade_math("I do not know.", 42)


@pytest.mark.parametrize("text", ["Time = 240 / 100 = 2.4 hours.\nSo the journey takes 2.4 hours (2 h 24 min).",
                                  "The new journey takes 2 hours and 24 minutes.", "It takes **2.4** hours.",
                                  "Therefore the answer is $\\boxed{2.4}$ hours.", "That is 144 minutes."])
def test_math_accepts_a_correct_answer_in_other_words(text):
    assert grading.grade_math(text, 2.4)


def test_math_accepts_rounding_as_written_but_not_a_different_number():
    assert grading.grade_math("The area is about 78.5 square units.", 78.54)
    assert grading.grade_math("Final amount: $5,955", 5955.08)
    assert not grading.grade_math("It takes 2 hours.", 2.4)  # within 0.5 of 2.4, but 17 % off
    assert not grading.grade_math("2.4 km/h faster, so it takes 3 hours.", 2.4)  # only the conclusion counts


def test_fibonacci_is_graded_by_its_documented_contract():
    as_list = "```python\ndef fibonacci(n):\n    seq = [0, 1]\n    while len(seq) < n:\n        seq.append(seq[-1] + seq[-2])\n    return seq[:n]\n```"
    assert grading.grade_code(as_list, "fibonacci", [((0,), 0), ((10,), 55)]) == (True, "ok")
    wrong = "```python\ndef fibonacci(n):\n    return list(range(n))\n```"
    assert not grading.grade_code(wrong, "fibonacci", [((0,), 0), ((10,), 55)])[0]


def test_code_that_prints_its_own_examples_is_graded():
    code = "```python\ndef add(a, b):\n    print('adding', a, b)\n    return a + b\n\nprint(add(1, 2))\n```"
    assert grading.grade_code(code, "add", [((2, 3), 5)]) == (True, "ok")


def test_code_under_a_related_name_and_after_prose_is_found():
    text = "Here is the code:\n```python\ndef fib_dp(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```\nUsage:\n```python\nprint(fib_dp(10))\n```"
    assert grading.grade_code(text, "fibonacci", [((10,), 55)]) == (True, "ok")
    two = "```python\ndef helper(x):\n    return x\n\ndef other(y):\n    return y\n```"
    ok, why = grading.grade_code(two, "add", [((1, 2), 3)])
    assert not ok and "no function 'add'" in why


def test_yes_no_answers_in_other_words():
    assert grading.grade_text("No, we cannot conclude that some cats are carnivores.", "No.")
    assert grading.grade_text("We cannot conclude that.", "No.")
    assert not grading.grade_text("Yes, some cats are carnivores.", "No.")


def test_tool_calls_in_any_format_are_graded_alike():
    fenced = '```json\n{"name": "calculate_circle_area", "arguments": {"radius": 5}}\n```'
    assert grading.grade_tool_call(fenced, "calculate_circle_area", {"radius": 5}, [CIRCLE_TOOL]) == (True, "ok")


def test_code_passes_and_fails_in_a_subprocess():
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    assert grading.grade_code(good, "add", [((2, 3), 5)]) == (True, "ok")
    ok, why = grading.grade_code(bad, "add", [((2, 3), 5)])
    assert not ok and "returned -1" in why


def test_code_cannot_touch_the_kernel_and_times_out():
    loop = "def f():\n    while True:\n        pass"
    ok, why = grading.grade_code("import sys\n" + loop + "\nf()", "f", [((), None)], timeout=1)
    assert not ok and "timed out" in why


def test_code_syntax_error_is_a_failure_not_an_exception():
    ok, why = grading.grade_code("def broken(:", "broken", [((), None)])
    assert not ok and "SyntaxError" in why


def test_tool_call_checked_against_schema_and_values():
    call = '<|tool_call|>[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]<|/tool_call|>'
    assert grading.grade_tool_call(call, "calculate_circle_area", {"radius": 5}, [CIRCLE_TOOL]) == (True, "ok")
    wrong_type = call.replace("5", '"five"')
    ok, why = grading.grade_tool_call(wrong_type, "calculate_circle_area", {"radius": 5}, [CIRCLE_TOOL])
    assert not ok and "not of type number" in why
    ok, why = grading.grade_tool_call("plain text", "calculate_circle_area", {"radius": 5}, [CIRCLE_TOOL])
    assert not ok and why == "no tool call"


def test_check_arguments_reports_missing_and_unknown():
    problems = grading.check_arguments({"r": 1}, CIRCLE_TOOL["function"]["parameters"])
    assert "missing required argument 'radius'" in problems and "unknown argument 'r'" in problems


def test_generated_code_gets_no_network():
    code = ("```python\nimport urllib.request\ndef fetch(x):\n    try:\n"
            "        urllib.request.urlopen('http://127.0.0.1:9', timeout=2)\n        return 'online'\n"
            "    except OSError as err:\n        return 'offline'\n```")
    assert grading.grade_code(code, "fetch", [((1,), "offline")]) == (True, "ok")
