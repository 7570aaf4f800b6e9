"""The synthetic curriculum phi4-nano is trained on, in Phi-4-mini's chat format.

Task families (each task knows how to grade its answer, see ``helpers.grading``):

- ``arithmetic``: "What is 17 + 25?" with numbers below 100;
- ``word_problem``: the same sums and differences, in words;
- ``coding``: tiny Python functions with names and parameters taken from the prompt;
- ``tool_call``: tools in the system turn and a request that matches one of them;
- ``no_tool``: tools in the system turn and a request that matches none (plain text);
- ``tool_result``: the follow-up turn that answers from a tool's result;
- ``seed``: the seed tutorial's own prompts, memorised verbatim so the notebooks
  can show them (not part of the held-out accuracy).

Every templated task has a key (template + values); a fixed 10 % of keys is held
out of training (``is_heldout``), so accuracy is measured on unseen instances
of the same templates.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field, replace

from helpers.formats.chat_format import format_tool_calls

FAMILIES = ("arithmetic", "word_problem", "coding", "tool_call", "no_tool", "tool_result")

# ----------------------------------------------------------------------------- tools

CIRCLE_TOOL = {  # the seed tutorial's tool, verbatim
    "type": "function",
    "function": {
        "name": "calculate_circle_area",
        "description": "Calculate the area of a circle given its radius",
        "parameters": {
            "type": "object",
            "properties": {"radius": {"type": "number", "description": "The radius of the circle"}},
            "required": ["radius"],
        },
    },
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}
STOCK_TOOL = {
    "type": "function",
    "function": {
        "name": "get_stock_price",
        "description": "Get a stock price",
        "parameters": {
            "type": "object",
            "properties": {"symbol": {"type": "string", "description": "The stock symbol"}},
            "required": ["symbol"],
        },
    },
}
RECTANGLE_TOOL = {
    "type": "function",
    "function": {
        "name": "calculate_rectangle_area",
        "description": "Calculate the area of a rectangle",
        "parameters": {
            "type": "object",
            "properties": {
                "width": {"type": "number", "description": "The width of the rectangle"},
                "height": {"type": "number", "description": "The height of the rectangle"},
            },
            "required": ["width", "height"],
        },
    },
}
TOOLS = {t["function"]["name"]: t for t in (CIRCLE_TOOL, WEATHER_TOOL, STOCK_TOOL, RECTANGLE_TOOL)}

CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Tokyo", "Seattle", "Boston", "Oslo",
          "Lisbon", "Dublin", "Prague", "Warsaw", "Zurich", "Munich", "Hamburg", "Sydney", "Toronto", "Chicago"]
SYMBOLS = ["MSFT", "AAPL", "GOOG", "AMZN", "NVDA", "META", "TSLA", "IBM", "INTC", "ORCL", "SAP", "ADBE"]

TOOL_SYSTEMS = ["", "You are a helpful assistant with some tools."]
MATH_SYSTEMS = ["", "You are a mathematical reasoning assistant. Show your work step by step."]
CODE_SYSTEMS = ["", "You are a coding assistant."]


@dataclass
class Task:
    """One prompt of the curriculum, the answer phi4-nano is trained to give, and how to grade it."""

    family: str
    key: str
    messages: list[dict]
    answer: str
    expected: dict
    tools: list[dict] | None = None
    meta: dict = field(default_factory=dict)


def is_heldout(key: str) -> bool:
    """True for the fixed 10 % of task keys that training never sees."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 10 == 0


def _conversation(system: str, user: str) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


# ----------------------------------------------------------------------------- math

def worked_answer(a: int, b: int, op: str) -> tuple[str, int]:
    """phi4-nano's answer to ``a op b`` (``a >= b`` for ``-``), worked as on paper: the units, the tens with the
    carry or borrow, then the final number. Each step is a sum of single digits, which a 2-layer model learns far
    more reliably than a whole two-digit sum in one token (docs/phi4-nano.md, recipe 5)."""
    a_tens, a_units = divmod(a, 10)
    b_tens, b_units = divmod(b, 10)
    if op == "+":
        carry = (a_units + b_units) // 10
        units = f"{a_units} + {b_units} = {a_units + b_units}"
        tens = f"{a_tens} + {b_tens} + {carry} = {a_tens + b_tens + carry}"
        result = a + b
    else:
        borrow = int(a_units < b_units)
        units = f"{a_units + 10 * borrow} - {b_units} = {a_units + 10 * borrow - b_units}"
        tens = f"{a_tens} - {b_tens} - {borrow} = {a_tens - b_tens - borrow}"
        result = a - b
    return f"Units: {units}. Tens: {tens}. So {a} {op} {b} = {result}. The answer is {result}.", result


def arithmetic(rng: random.Random) -> Task:
    a, b = rng.randrange(100), rng.randrange(100)
    op = rng.choice("+-")
    if op == "-" and b > a:
        a, b = b, a
    answer, c = worked_answer(a, b, op)
    user = rng.choice(["What is {a} {op} {b}?", "Calculate {a} {op} {b}."]).format(a=a, b=b, op=op)
    return Task("arithmetic", f"arith|{a}{op}{b}", _conversation(rng.choice(MATH_SYSTEMS), user), answer,
                {"number": c})


def word_problem(rng: random.Random) -> Task:
    kind = rng.choice(["buy", "spend", "distance"])
    if kind == "buy":
        a, b = rng.randrange(1, 100), rng.randrange(1, 100)
        name, item = rng.choice(["Tom", "Mia", "Ali", "Sara"]), rng.choice(["apples", "books", "stamps"])
        user, op = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?", "+"
    elif kind == "spend":
        a = rng.randrange(10, 100)
        b = rng.randrange(1, a)
        name = rng.choice(["Anna", "Ben", "Lena", "Omar"])
        user, op = f"{name} had {a} euros and spent {b} euros. How many euros are left?", "-"
    else:
        a, b = rng.randrange(10, 100), rng.randrange(10, 100)
        user, op = f"A train travels {a} km before noon and {b} km after noon. How far does it travel?", "+"
    answer, value = worked_answer(a, b, op)
    return Task("word_problem", f"word|{user}", _conversation(rng.choice(MATH_SYSTEMS), user), answer,
                {"number": value}, meta={"kind": kind})


# ----------------------------------------------------------------------------- coding

# op -> (prompt phrase, arity, body, hidden tests as (args, result))
CODE_OPS = {
    "sum": ("returns the sum of {0} and {1}", 2, "return {0} + {1}", [((2, 3), 5), ((-4, 10), 6)]),
    "difference": ("returns {0} minus {1}", 2, "return {0} - {1}", [((9, 4), 5), ((1, 3), -2)]),
    "product": ("returns the product of {0} and {1}", 2, "return {0} * {1}", [((6, 7), 42), ((0, 5), 0)]),
    "maximum": ("returns the larger of {0} and {1}", 2, "return max({0}, {1})", [((3, 8), 8), ((-1, -5), -1)]),
    "minimum": ("returns the smaller of {0} and {1}", 2, "return min({0}, {1})", [((3, 8), 3), ((-1, -5), -5)]),
    "square": ("returns the square of {0}", 1, "return {0} * {0}", [((7,), 49), ((-3,), 9)]),
    "is_even": ("returns True if {0} is even", 1, "return {0} % 2 == 0", [((4,), True), ((7,), False)]),
    "reverse": ("returns the string {0} reversed", 1, "return {0}[::-1]", [(("abc",), "cba"), (("",), "")]),
    "fibonacci": ("returns the {0}-th Fibonacci number", 1,
                  "a, b = 0, 1\n    for _ in range({0}):\n        a, b = b, a + b\n    return a",
                  [((0,), 0), ((10,), 55)]),
    "factorial": ("returns the factorial of {0}", 1,
                  "result = 1\n    for i in range(2, {0} + 1):\n        result *= i\n    return result",
                  [((0,), 1), ((5,), 120)]),
}
CANONICAL_NAMES = {"sum": "add", "difference": "subtract", "product": "multiply", "maximum": "larger",
                   "minimum": "smaller", "square": "square", "is_even": "is_even", "reverse": "reverse",
                   "fibonacci": "fibonacci", "factorial": "factorial"}
FUNC_PREFIXES = ["compute", "get", "calc", "my", "do", "find", "make", "solve"]
PARAMS_2 = [("a", "b"), ("x", "y"), ("m", "n"), ("p", "q"), ("first", "second"), ("left", "right"), ("u", "v")]
PARAMS_1 = ["n", "x", "k", "value", "num", "s", "word", "text"]


def coding(rng: random.Random) -> Task:
    op = rng.choice(list(CODE_OPS))
    phrase, arity, body, tests = CODE_OPS[op]
    params = rng.choice(PARAMS_2) if arity == 2 else (rng.choice(PARAMS_1),)
    canonical = CANONICAL_NAMES[op]
    if rng.random() < 0.3:
        name = canonical
        user = f"Write a Python function {name}({', '.join(params)})."
    else:
        name = rng.choice([canonical, f"{rng.choice(FUNC_PREFIXES)}_{canonical}"])
        user = f"Write a Python function {name}({', '.join(params)}) that {phrase.format(*params)}."
    code = f"def {name}({', '.join(params)}):\n    {body.format(*params)}"
    return Task("coding", f"code|{user}", _conversation(rng.choice(CODE_SYSTEMS), user),
                f"```python\n{code}\n```", {"function": name, "tests": tests})


# ----------------------------------------------------------------------------- tools

def _tool_request(rng: random.Random, name: str) -> tuple[str, dict]:
    """A user request that matches tool ``name``, and the arguments it implies."""
    if name == "calculate_circle_area":
        r = rng.choice([rng.randrange(1, 100), rng.randrange(1, 100) + 0.5])
        text = rng.choice(["Calculate the area of a circle with radius {r} units",
                           "What is the area of a circle with a radius of {r}?",
                           "Find the area of a circle whose radius is {r} cm."]).format(r=r)
        return text, {"radius": r}
    if name == "get_weather":
        city = rng.choice(CITIES)
        text = rng.choice(["What's the weather like in {c}?", "Is it raining in {c} today?",
                           "Tell me the weather in {c}."]).format(c=city)
        return text, {"city": city}
    if name == "get_stock_price":
        sym = rng.choice(SYMBOLS)
        text = rng.choice(["What is the current stock price of {s}?", "How much is {s} stock trading at?",
                           "Get me the share price of {s}."]).format(s=sym)
        return text, {"symbol": sym}
    w, h = rng.randrange(1, 100), rng.randrange(1, 100)
    text = rng.choice(["What is the area of a rectangle that is {w} by {h}?",
                       "Calculate the area of a rectangle with width {w} and height {h}."]).format(w=w, h=h)
    return text, {"width": w, "height": h}


def _toolset(rng: random.Random, must: str | None, exclude: str | None = None) -> list[dict]:
    names = [n for n in TOOLS if n not in (must, exclude)]
    extra = 1 if not must else int(rng.random() < 0.3)
    chosen = rng.sample(names, extra) + ([must] if must else [])
    rng.shuffle(chosen)
    return [TOOLS[n] for n in chosen]


def tool_call(rng: random.Random) -> Task:
    name = rng.choice(list(TOOLS))
    user, args = _tool_request(rng, name)
    tools = _toolset(rng, must=name)
    return Task("tool_call", f"tool|{user}", _conversation(rng.choice(TOOL_SYSTEMS), user),
                format_tool_calls([{"name": name, "arguments": args}]),
                {"name": name, "arguments": args}, tools=tools)


NO_TOOL_CHATS = [("Hello!", "Hello! How can I help you today?"),
                 ("Hi, who are you?", "I am phi4-nano, a tiny assistant model."),
                 ("Thank you!", "You are welcome!"),
                 ("Tell me a joke.", "Why did the function return early? It had a date with a return value.")]


def no_tool(rng: random.Random) -> Task:
    kind = rng.choice(["chat", "math", "missing"])
    if kind == "chat":
        user, answer = rng.choice(NO_TOOL_CHATS)
        tools, expected = _toolset(rng, must=None), {"plain": True}
    elif kind == "math":
        inner = arithmetic(rng)
        user, answer = inner.messages[-1]["content"], inner.answer
        tools, expected = _toolset(rng, must=None), {"plain": True, **inner.expected}
    else:
        missing = rng.choice(list(TOOLS))
        user, _ = _tool_request(rng, missing)
        tools = _toolset(rng, must=None, exclude=missing)
        answer, expected = "I don't have a tool for that.", {"plain": True}
    return Task("no_tool", f"notool|{kind}|{user}|{[t['function']['name'] for t in tools]}",
                _conversation(rng.choice(TOOL_SYSTEMS), user), answer, expected, tools=tools)


def _tool_result(name: str, args: dict, rng: random.Random) -> tuple[dict, str, object]:
    """A tool's result, the final answer built from it, and the value the answer must carry."""
    if name == "calculate_circle_area":
        area = round(3.14159 * args["radius"] ** 2, 2)
        return {"area": area}, f"The area of the circle is {area}.", area
    if name == "calculate_rectangle_area":
        area = args["width"] * args["height"]
        return {"area": area}, f"The area of the rectangle is {area}.", area
    if name == "get_weather":
        temp, sky = rng.randrange(-5, 35), rng.choice(["sunny", "cloudy", "rainy", "windy"])
        return ({"temperature": temp, "condition": sky},
                f"It is {temp} degrees and {sky} in {args['city']}.", temp)
    price = round(rng.uniform(10, 500), 2)
    return {"price": price}, f"{args['symbol']} is trading at {price}.", price


def tool_result(rng: random.Random) -> Task:
    call = tool_call(rng)
    result, answer, value = _tool_result(call.expected["name"], call.expected["arguments"], rng)
    messages = call.messages + [
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": call.expected["name"],
                                                           "arguments": call.expected["arguments"]}}]},
        {"role": "tool", "content": json.dumps(result)},
    ]
    return Task("tool_result", f"result|{call.key}|{json.dumps(result)}", messages, answer,
                {"number": value} if not isinstance(value, str) else {"text": value}, tools=call.tools)


# ----------------------------------------------------------------------------- seed prompts

SEED_TRAIN_QUESTION = ("A train travels 240 km in 3 hours. If it increases its speed by 20 km/h, "
                       "how long would the same journey take?")
SEED_CODE_PROMPT = ("Write a Python function to calculate the Fibonacci sequence using dynamic programming. "
                    "Include comments explaining the approach.")
SEED_TOOL_PROMPT = "Calculate the area of a circle with radius 5 units"

SEED_TASKS = [
    (MATH_SYSTEMS[1], SEED_TRAIN_QUESTION,
     "Speed = 240 / 3 = 80 km/h. New speed = 80 + 20 = 100 km/h. Time = 240 / 100 = 2.4 hours. "
     "The answer is 2.4.", {"number": 2.4}),
    ("", SEED_TRAIN_QUESTION,
     "Speed = 240 / 3 = 80 km/h. New speed = 80 + 20 = 100 km/h. Time = 240 / 100 = 2.4 hours. "
     "The answer is 2.4.", {"number": 2.4}),
    ("", "Solve this step by step: If compound interest on $5000 at 6% annually for 3 years, "
         "what is the final amount?",
     "5000 * 1.06 ** 3 = 5955.08. The answer is 5955.08.", {"number": 5955.08}),
    ("", "A rectangle has length 15cm and width 8cm. If we increase both dimensions by 20%, "
         "what is the percentage increase in area?",
     "Area = 15 * 8 = 120. New area = 18 * 9.6 = 172.8. Increase = 52.8 / 120 = 44%. The answer is 44.",
     {"number": 44}),
    ("", "If a car travels at 60 mph for 2.5 hours, then at 80 mph for 1.5 hours, "
         "what is the total distance traveled?",
     "60 * 2.5 = 150. 80 * 1.5 = 120. 150 + 120 = 270 miles. The answer is 270.", {"number": 270}),
    ("", "All cats are mammals. Some mammals are carnivores. Can we conclude that some cats are carnivores?",
     "No. The carnivores among the mammals need not be cats, so the conclusion does not follow.",
     {"text": "No."}),
    ("", SEED_CODE_PROMPT,
     "```python\ndef fibonacci(n):\n    # dp[i] holds the i-th Fibonacci number\n    dp = [0, 1]\n"
     "    # build each number from the two before it\n    for i in range(2, n + 1):\n"
     "        dp.append(dp[i - 1] + dp[i - 2])\n    return dp[n]\n```",
     {"function": "fibonacci", "tests": [((0,), 0), ((10,), 55)]}),
    ("", "Create a Python function to find the greatest common divisor of two numbers using the "
         "Euclidean algorithm",
     "```python\ndef gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n```",
     {"function": "gcd", "tests": [((12, 18), 6), ((7, 5), 1)]}),
    ("", "Write a Python function to implement binary search with detailed comments",
     "```python\ndef binary_search(items, target):\n    # search the sorted list between lo and hi\n"
     "    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n        mid = (lo + hi) // 2\n"
     "        if items[mid] == target:\n            return mid\n        if items[mid] < target:\n"
     "            lo = mid + 1\n        else:\n            hi = mid - 1\n    return -1\n```",
     {"function": "binary_search", "tests": [(([1, 3, 5, 7], 5), 2), (([1, 3], 4), -1)]}),
]


def seed_tasks() -> list[Task]:
    """The seed tutorial's prompts with the answers phi4-nano memorises."""
    tasks = [Task("seed", f"seed|{i}", _conversation(system, user), answer, expected)
             for i, (system, user, answer, expected) in enumerate(SEED_TASKS)]
    call = {"name": "calculate_circle_area", "arguments": {"radius": 5}}
    tasks.append(Task("seed", "seed|tool", _conversation("", SEED_TOOL_PROMPT), format_tool_calls([call]), call,
                      tools=[CIRCLE_TOOL]))
    tasks.append(Task("seed", "seed|tool-result", seed_tool_round_trip(), "The area of the circle is 78.54.",
                      {"number": 78.54}, tools=[CIRCLE_TOOL]))
    return tasks


SEED_TOOL_RESULT = {"area": 78.54}


def seed_tool_round_trip() -> list[dict]:
    """The seed's tool conversation up to the tool's result, as an OpenAI client sends it back."""
    return _conversation("", SEED_TOOL_PROMPT) + [
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "calculate_circle_area",
                                                          "arguments": json.dumps({"radius": 5})}}]},
        {"role": "tool", "content": json.dumps(SEED_TOOL_RESULT)}]


# ----------------------------------------------------------------------------- streams

GENERATORS = {"arithmetic": arithmetic, "word_problem": word_problem, "coding": coding,
              "tool_call": tool_call, "no_tool": no_tool, "tool_result": tool_result}
# Sampling weights (recipe 6): sums get the most steps, since their single-digit facts with a carry are what a
# run misses (docs/phi4-nano.md); coding is solved by step 6,000 and the seed's eleven fixed prompts within a
# few hundred steps, so they get the least.
MIX = {"arithmetic": 0.35, "word_problem": 0.13, "coding": 0.06, "tool_call": 0.20, "no_tool": 0.08,
       "tool_result": 0.15, "seed": 0.03}


def with_any_system(task: Task, rng: random.Random) -> Task:
    """``task`` under one of its kind's system prompts (or none): the seed's prompts reach the model both bare and
    behind a system prompt (the engine's /reasoning adds one, an Ollama variant stores one)."""
    systems = CODE_SYSTEMS if "function" in task.expected else TOOL_SYSTEMS if task.tools else MATH_SYSTEMS
    system = rng.choice(systems)
    turns = [m for m in task.messages if m["role"] != "system"]
    return replace(task, messages=([{"role": "system", "content": system}] if system else []) + turns)


def training_stream(seed: int):
    """An endless stream of training tasks, never yielding a held-out key."""
    rng = random.Random(seed)
    seeds = seed_tasks()
    families, weights = zip(*MIX.items())
    while True:
        family = rng.choices(families, weights)[0]
        if family == "seed":
            yield with_any_system(rng.choice(seeds), rng)
            continue
        task = GENERATORS[family](rng)
        if not is_heldout(task.key):
            yield task


def heldout_set(per_family: int, seed: int = 1234) -> list[Task]:
    """``per_family`` distinct held-out tasks of every family, deterministic."""
    rng = random.Random(seed)
    tasks = []
    for family, generate in GENERATORS.items():
        seen: set[str] = set()
        for _ in range(per_family * 400):
            if len(seen) == per_family:
                break
            task = generate(rng)
            if is_heldout(task.key) and task.key not in seen:
                seen.add(task.key)
                tasks.append(task)
    return tasks


def corpus_lines(n: int, seed: int = 7) -> list[str]:
    """Text of ``n`` training tasks (prompts, tool specs, answers) for tokenizer training."""
    stream = training_stream(seed)
    lines = []
    for _ in range(n):
        task = next(stream)
        lines += [m["content"] for m in task.messages if m.get("content")] + [task.answer]
        if task.tools:
            lines.append(json.dumps([t["function"] for t in task.tools]))
    return lines
