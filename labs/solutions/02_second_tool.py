"""Solution: lab 2 (runs in the lab's namespace: QUESTION, CIRCLE_TOOL, MODEL_NAME, TOKENS, servers are defined there)."""


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
    base_url = servers[name].base_url  # noqa: F821
    if name == "ollama":
        client = ollama.Client(host=base_url, timeout=600)  # noqa: F821
        options = {"temperature": 0, "num_predict": TOKENS}  # noqa: F821
        reply = client.chat(model=MODEL_NAME, messages=messages, tools=tools, options=options)  # noqa: F821
        calls = [(c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls or []]
        results = [TOOLS[n](**a) for n, a in calls]
        final = client.chat(model=MODEL_NAME, messages=ollama_lab.tool_result_messages(messages, reply, results),  # noqa: F821
                            tools=tools, options=options)
        return calls, final.message.content
    client = openai_chat.client(base_url, timeout=600)  # noqa: F821
    reply = openai_chat.chat(client, MODEL_NAME, messages, tools=tools, max_tokens=TOKENS)  # noqa: F821
    calls = [(c["name"], c["arguments"]) for c in reply.tool_calls]
    results = [TOOLS[n](**a) for n, a in calls]
    final = openai_chat.chat(client, MODEL_NAME, openai_chat.tool_result_messages(messages, reply, results),  # noqa: F821
                             tools=tools, max_tokens=TOKENS)  # noqa: F821
    return calls, final.content
