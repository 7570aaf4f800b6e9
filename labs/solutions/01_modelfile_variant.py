"""Solution: lab 1 (runs in the lab's namespace: BASE, VARIANT and TUTOR_SYSTEM are defined there)."""


def create_variant(client):
    client.create(model=VARIANT, from_=BASE, system=TUTOR_SYSTEM, parameters={"temperature": 0})  # noqa: F821


def by_hand(client, prompt):
    return client.generate(model=BASE, system=TUTOR_SYSTEM, prompt=prompt, options={"temperature": 0})  # noqa: F821
