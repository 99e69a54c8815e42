"""The engine tests' shared fixture; a module that needs an estate of its own shape defines its own `estate`."""

import pytest

from tests.engine.estate import CALL_FAILED, running_estate


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    """A lab estate of this module's own: a project copy, a lab, a stack, the real pulumi CLI."""
    with running_estate(tmp_path_factory, "engine") as running:
        yield running
