import pytest

from helpers import grading
from helpers.curriculum import CIRCLE_TOOL


@pytest.mark.parametrize("text,expected", [("17 + 25 = 42. The answer is 42.", 42), ("about 1,200.5 km", 1200.5),
                                           ("-3 is it", -3), ("The answer is 2.4.", 2.4)])
def test_math_takes_the_final_number(text, expected):
    assert grading.grade_math(text, expected)


def test_math_rejects_wrong_or_missing_numbers():
    assert not grading.grade_math("The answer is 41.", 42)
    assert not grading.grade_math("I do not know.", 42)


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
