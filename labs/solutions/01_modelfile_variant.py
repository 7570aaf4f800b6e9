"""Solution: lab 1."""


def create_variant(client):
    client.create(model=VARIANT, from_="phi4-mini", system=TUTOR_SYSTEM, parameters={"temperature": 0})  # noqa: F821


def by_hand(client, prompt):
    return client.generate(model="phi4-mini", system=TUTOR_SYSTEM, prompt=prompt, options={"temperature": 0})  # noqa: F821
