"""The engine tests' shared fixture; a module that needs an estate of its own shape defines its own `estate`."""

import pytest

from tests.engine.estate import running_estate


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    """A lab estate of this module's own: a project copy, a lab, a stack, the real pulumi CLI."""
    with running_estate(tmp_path_factory, "engine") as running:
        yield running
