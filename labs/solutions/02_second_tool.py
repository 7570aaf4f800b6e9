"""Solution: lab 2 (runs in the lab's namespace: lab, QUESTION, CIRCLE_TOOL, TOKENS and servers are defined there)."""


def weather_tool():
    return {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}},
                       "required": ["city"]}}}


def get_weather(city):
    return {"temperature": 20, "condition": "sunny"}


TOOLS = {"get_weather": get_weather}


def round_trip(name):
    tools = [CIRCLE_TOOL, weather_tool()]  # noqa: F821
    messages = [{"role": "user", "content": QUESTION}]  # noqa: F821
    client = lab.client(name, servers[name])  # noqa: F821 - the backend's own client (openai or ollama)
    reply = client.chat(messages, tools, max_tokens=TOKENS)  # noqa: F821
    calls = [(c["name"], c["arguments"]) for c in reply.tool_calls]
    results = [TOOLS[n](**a) for n, a in calls]
    final = client.chat(client.tool_result_messages(messages, reply, results), tools, max_tokens=TOKENS)  # noqa: F821
    return calls, final.content
