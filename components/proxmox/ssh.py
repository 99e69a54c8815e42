"""Commands on the provider LXC over SSH (asyncssh), the way the compose deployment reaches it.

File contents, secrets among them, travel on the command's stdin, never in its argv, so they show
in no process list and no shell history on either side. The host key is pinned: either the one the
stack config names, or the one seen on first contact, which the state then remembers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncssh

from components.core.retry import DEFAULT_POLICY, RetryPolicy, with_retries


class SshError(Exception):
    """The host could not be reached, refused us, or a command failed; the message says which."""


class SshUnreachable(SshError):
    pass


@dataclass(frozen=True)
class SshSettings:
    host: str
    port: int
    user: str
    private_key: str = field(repr=False)  # OpenSSH private key text
    # OpenSSH public host key ("ssh-ed25519 AAAA..."); empty: trust on first use.
    host_key: str = ""
    timeout_seconds: float = 60.0
    retry: RetryPolicy = DEFAULT_POLICY

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


def public_key_of(private_key: str) -> str:
    """The authorized_keys line for a private key (what the container is created with)."""
    try:
        key = asyncssh.import_private_key(private_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise SshError(f"the SSH private key could not be read: {exc}") from None
    return key.export_public_key().decode().strip()


class RemoteHost:
    """One SSH connection per batch of commands (a provider operation), closed at the end."""

    def __init__(self, settings: SshSettings):
        self.settings = settings
        self.seen_host_key = ""  # what the host presented, for the state to pin next time
        self.commands: list[str] = []  # what ran (argv only, never stdin): tests and benchmarks read it

    async def _connect(self) -> asyncssh.SSHClientConnection:
        s = self.settings
        try:
            client_key = asyncssh.import_private_key(s.private_key)
            trusted: tuple | None = ([asyncssh.import_public_key(s.host_key)], [], []) if s.host_key else None
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SshError(f"{s.target}: a key could not be read ({exc})") from None
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(
                    s.host,
                    port=s.port,
                    username=s.user,
                    client_keys=[client_key],
                    known_hosts=trusted,
                    agent_path=None,
                    config=[],
                    login_timeout=s.timeout_seconds,
                ),
                s.timeout_seconds,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise SshError(
                f"{s.target}: the host key is not the pinned one ({exc}); if the container was "
                "rebuilt on purpose, set providerLxcSshHostKey to its new key"
            ) from None
        except asyncssh.PermissionDenied as exc:
            raise SshError(f"{s.target}: the SSH key was refused ({exc})") from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise SshUnreachable(f"{s.target}: unreachable ({type(exc).__name__}: {exc})") from None
        key = conn.get_server_host_key()
        self.seen_host_key = key.export_public_key().decode().strip() if key else ""
        return conn

    def run_all(self, commands: list[tuple[str, str | None]]) -> list[CommandResult]:
        """Runs (command, stdin) pairs in order on one connection; stops at the first failure.
        An unreachable host (refused, timed out) is tried again; a refused key or host key is not.
        SshUnreachable comes only from connecting, before any command ran, so a retry repeats none."""
        return with_retries(
            lambda: self._run_all_once(commands),
            lambda exc: isinstance(exc, SshUnreachable),
            "ssh",
            self.settings.retry,
        )

    def _run_all_once(self, commands: list[tuple[str, str | None]]) -> list[CommandResult]:
        # A private loop, not asyncio.run: that would leave the calling thread without a current loop,
        # which breaks whatever runs there next (the Pulumi SDK looks one up).
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self._run_all(commands))
        finally:
            loop.close()

    async def _run_all(self, commands: list[tuple[str, str | None]]) -> list[CommandResult]:
        results = []
        async with await self._connect() as conn:
            for command, stdin in commands:
                self.commands.append(command)
                try:
                    # Always a stdin that ends: a command never waits on input that will not come.
                    stdin_args = {"input": stdin} if stdin else {"stdin": asyncssh.DEVNULL}
                    done = await asyncio.wait_for(
                        conn.run(command, check=False, **stdin_args), self.settings.timeout_seconds
                    )
                except TimeoutError:
                    raise SshError(
                        f"{self.settings.target}: `{command}` did not finish within {self.settings.timeout_seconds:g}s"
                    ) from None
                result = CommandResult(
                    done.exit_status if done.exit_status is not None else 255,
                    str(done.stdout or ""),
                    str(done.stderr or ""),
                )
                if result.exit_status != 0:
                    raise SshError(
                        f"{self.settings.target}: `{command}` failed ({result.exit_status}): "
                        f"{(result.stderr or result.stdout).strip()[-2000:]}"
                    )
                results.append(result)
        return results
