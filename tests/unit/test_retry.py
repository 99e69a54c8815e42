"""Transient failures are retried a bounded number of times; permanent ones fail at once."""

import pytest

from components.core.retry import RetryPolicy, with_retries
from components.omni.omnictl import Omnictl, Timeout, Unauthorized, Unreachable
from tests.conftest import stack_lookup

FAST = RetryPolicy(attempts=3, first_delay_seconds=0.001)


def fake_omnictl(
    tmp_path,
    stderr: str = "",
    exit_code: int = 1,
    succeed_after: int | None = None,
    body: str | None = None,
    timeout_seconds: float = 60.0,
):
    """An omnictl that records each call, then runs body, or fails with stderr (until call succeed_after)."""
    calls = tmp_path / "calls"
    script = tmp_path / "omnictl"
    ok = f'[ "$(wc -l < {calls})" -ge {succeed_after} ] && {{ echo ok; exit 0; }}' if succeed_after else ""
    rest = body if body is not None else f"{ok}\necho '{stderr}' >&2\nexit {exit_code}"
    script.write_text(f"#!/bin/sh\necho call >> {calls}\n{rest}\n")
    script.chmod(0o755)
    return Omnictl(
        binary=str(script),
        endpoint="https://127.0.0.1:1",
        service_account_key="k",
        retry=FAST,
        timeout_seconds=timeout_seconds,
    ), calls


def test_unreachable_is_tried_three_times_then_fails(tmp_path):
    client, calls = fake_omnictl(tmp_path, "rpc error: code = Unavailable desc = connection refused")
    with pytest.raises(Unreachable):
        client.run("get", "clusters")
    assert len(calls.read_text().splitlines()) == 3


def test_a_blip_that_clears_is_ridden_out(tmp_path):
    client, calls = fake_omnictl(tmp_path, "rpc error: code = Unavailable desc = connection refused", succeed_after=2)
    assert client.run("get", "clusters").strip() == "ok"
    assert len(calls.read_text().splitlines()) == 2


def test_a_refused_key_is_not_retried(tmp_path):
    client, calls = fake_omnictl(tmp_path, "rpc error: code = Unauthenticated desc = invalid signature")
    with pytest.raises(Unauthorized):
        client.run("get", "clusters")
    assert len(calls.read_text().splitlines()) == 1


def test_a_deliberate_long_wait_that_times_out_is_not_retried(tmp_path):
    client, calls = fake_omnictl(tmp_path, body="exec sleep 5", timeout_seconds=0.2)
    with pytest.raises(Timeout):
        client.run("cluster", "template", "status", timeout_seconds=0.2)
    assert len(calls.read_text().splitlines()) == 1
    with pytest.raises(Timeout):
        client.run("get", "clusters")  # the usual time: retried
    assert len(calls.read_text().splitlines()) == 4


def test_pauses_grow_and_are_bounded():
    pauses = []
    with pytest.raises(OSError):
        with_retries(
            lambda: (_ for _ in ()).throw(OSError("down")),
            lambda e: True,
            "x",
            RetryPolicy(attempts=5, first_delay_seconds=3, max_delay_seconds=8),
            sleep=pauses.append,
        )
    assert pauses == [3, 6, 8, 8]


def test_omnictl_of_another_minor_version_is_refused_by_name(tmp_path):
    from components.core.settings import omnictl_from_config
    from components.omni.omnictl import WrongVersion

    script = tmp_path / "omnictl"
    script.write_text("#!/bin/sh\necho 'omnictl version v1.6.3 (API Version: 0)'\n")
    script.chmod(0o755)
    config = {
        "omni-scale:omnictlPath": str(script),
        "omni-scale:omniEndpoint": "https://127.0.0.1:1",
        "omni-scale:omniServiceAccountKey": "k",
    }
    with pytest.raises(WrongVersion, match="is omnictl v1.6.3; this stack expects v1.8.x"):
        omnictl_from_config(stack_lookup(config))
    assert omnictl_from_config(stack_lookup({**config, "omni-scale:omnictlVersion": "v1.6.0"}))[0].binary == str(script)
