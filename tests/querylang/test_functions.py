"""The function signature table and the evaluator's implementation table agree."""

from __future__ import annotations

from querylang.evaluator.calls import IMPLEMENTATIONS
from querylang.functions import FUNCTIONS


def test_every_signature_has_an_implementation_and_back() -> None:
    assert set(FUNCTIONS) == set(IMPLEMENTATIONS)
