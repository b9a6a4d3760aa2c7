"""Smoke tests of recipes: `kerakit smoke RECIPE...` and `pytest --kerakit PATH`.

Each recipe, in seconds on a CPU, on a tiny slice of its own data (`data`): is it
valid, does it build, does it overfit one batch, does one step of its real `fit`
run, does it predict the right shape, and does it save and reload in every format
(`checks`). `run` drives them and prints the table. docs/testing.md.
"""
