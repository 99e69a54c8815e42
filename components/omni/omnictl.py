"""The one way this program talks to Omni: the omnictl binary.

Secrets reach omnictl only through its environment (OMNI_ENDPOINT,
OMNI_SERVICE_ACCOUNT_KEY), never argv; every call has a timeout; failures
become typed errors that keep omnictl's own message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components import PROJECT_ROOT
from components.core.retry import DEFAULT_POLICY, RetryPolicy, with_retries
from components.omni.render import dump_yaml


class OmnictlError(Exception):
    """omnictl failed; `message` is what omnictl said, `verb` what we asked of it."""

    kind = "failed"

    def __init__(self, verb: str, message: str):
        self.verb, self.message = verb, message.strip()
        super().__init__(f"omnictl {verb} {self.kind}: {self.message}")


class NotFound(OmnictlError):
    kind = "found nothing"


class Unauthorized(OmnictlError):
    kind = "was refused (is the service-account key valid and unexpired?)"


class Unreachable(OmnictlError):
    kind = "could not reach Omni"


class InvalidInput(OmnictlError):
    kind = "rejected the input"


class Timeout(OmnictlError):
    kind = "timed out"


class WrongVersion(OmnictlError):
    pass


class OmnictlMissing(OmnictlError):
    kind = "is not installed"


# gRPC status codes as omnictl prints them ("rpc error: code = NotFound desc = ...").
_BY_GRPC_CODE: dict[str, type[OmnictlError]] = {
    "NotFound": NotFound,
    "Unauthenticated": Unauthorized,
    "PermissionDenied": Unauthorized,
    "Unavailable": Unreachable,
    "DeadlineExceeded": Unreachable,
    "InvalidArgument": InvalidInput,
    "FailedPrecondition": InvalidInput,
    "AlreadyExists": InvalidInput,
}
# Messages that come without a gRPC code (client-side failures), most specific first.
_BY_TEXT: list[tuple[type[OmnictlError], tuple[str, ...]]] = [
    (NotFound, ("doesn't exist", "not found")),
    (Unauthorized, ("signature", "expired", "service account key", "illegal base64 data")),
    (Unreachable, ("connection refused", "no such host", "failed to connect", "error reading server preface")),
    (InvalidInput, ("unknown flag", "unknown command", "yaml:", "failed to validate", "invalid")),
]


def classify(verb: str, message: str) -> OmnictlError:
    code = re.search(r"code = (\w+)", message)
    if code and code.group(1) in _BY_GRPC_CODE:
        return _BY_GRPC_CODE[code.group(1)](verb, message)
    for error_type, needles in _BY_TEXT:
        if any(needle in message for needle in needles):
            return error_type(verb, message)
    return OmnictlError(verb, message)


def resolve_binary(path: str) -> str:
    """A bare name is looked up on PATH (the project's .tools/bin first); a relative path is
    taken from the project root, so a stack config means the same from any working directory."""
    if os.sep not in path:
        tools_bin = str(PROJECT_ROOT / ".tools" / "bin")
        found = shutil.which(path, path=os.pathsep.join([tools_bin, os.environ.get("PATH", "")]))
        if found is None:
            raise OmnictlMissing("run", f"{path!r} is not on PATH; run `make setup` or set omni-scale:omnictlPath")
        return found
    resolved = Path(path) if os.path.isabs(path) else PROJECT_ROOT / path
    if not os.access(resolved, os.X_OK):
        raise OmnictlMissing("run", f"{resolved} is not an executable file; check omni-scale:omnictlPath")
    return str(resolved)


_VERSIONS: dict[str, str] = {}  # binary path -> what its --version said


@dataclass(frozen=True)
class Omnictl:
    binary: str
    endpoint: str = field(repr=False)
    service_account_key: str = field(repr=False)
    insecure_skip_tls_verify: bool = False
    # A private CA (or a self-signed Omni's own certificate) to trust besides the system's.
    ca_file: str = ""
    timeout_seconds: float = 60.0
    retry: RetryPolicy = DEFAULT_POLICY

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OMNI_ENDPOINT"] = self.endpoint
        env["OMNI_SERVICE_ACCOUNT_KEY"] = self.service_account_key
        # omnictl would prefer a Sidero key left in the environment to the one this client was given.
        env.pop("SIDERO_SERVICE_ACCOUNT_KEY", None)
        if self.ca_file:
            env["SSL_CERT_FILE"] = self.ca_file  # Go's TLS reads it in place of the system bundle
        return env

    def run(self, *args: str, timeout_seconds: float | None = None, idempotent: bool = True) -> str:
        """One omnictl call; an unreachable Omni, or one that did not answer in the usual time, is tried
        again; a deliberate long wait is not, nor a verb that must not happen twice (making a service account or a
        key: a try that timed out may have done it, and the second would fail or make a key no one holds)."""

        def transient(exc: Exception) -> bool:
            if not idempotent:
                return False
            return isinstance(exc, Unreachable) or (isinstance(exc, Timeout) and timeout_seconds is None)

        verb = " ".join(a for a in args[:3] if not a.startswith("-"))
        return with_retries(lambda: self._run_once(args, timeout_seconds), transient, f"omnictl {verb}", self.retry)

    def _run_once(self, args: tuple[str, ...], timeout_seconds: float | None) -> str:
        argv = [self.binary]
        if self.insecure_skip_tls_verify:
            argv.append("--insecure-skip-tls-verify")
        argv.extend(args)
        verb = " ".join(a for a in args[:3] if not a.startswith("-"))
        timeout_seconds = timeout_seconds or self.timeout_seconds
        try:
            proc = subprocess.run(
                argv, env=self._env(), capture_output=True, text=True, timeout=timeout_seconds, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise OmnictlMissing(verb, f"{self.binary} does not exist") from None
        except subprocess.TimeoutExpired:
            raise Timeout(verb, f"no answer within {timeout_seconds:g}s") from None
        if proc.returncode != 0:
            raise classify(verb, proc.stderr or proc.stdout or f"exit code {proc.returncode}")
        return proc.stdout

    def version(self) -> str:
        """`omnictl --version` -> 'v1.8.0' (no API call). Asked once per binary and process: every
        provider instance builds a client, and the answer cannot change while the program runs."""
        if self.binary not in _VERSIONS:
            match = re.search(r"\bv\d+\.\d+\.\d+\S*", self._run_once(("--version",), None))
            if not match:
                raise OmnictlMissing("--version", f"{self.binary} does not say which omnictl it is")
            _VERSIONS[self.binary] = match.group(0)
        return _VERSIONS[self.binary]

    def require_version(self, expected: str) -> None:
        """The same major.minor as expected (omnictl and Omni move together; a patch may differ)."""
        found = self.version()
        if found.split(".")[:2] != expected.split(".")[:2]:
            raise WrongVersion(
                "--version",
                f"{self.binary} is omnictl {found}; this stack expects "
                f"{'.'.join(expected.split('.')[:2])}.x (omni-scale:omnictlVersion)",
            )

    def get(self, resource_type: str, resource_id: str, namespace: str) -> dict:
        out = self.run("get", resource_type, resource_id, "-n", namespace, "-o", "yaml")
        docs = [d for d in yaml.safe_load_all(out) if d]
        if not docs:
            raise NotFound("get", f"{resource_type} {namespace}/{resource_id} NotFound")
        return docs[0]

    def get_or_none(self, resource_type: str, resource_id: str, namespace: str) -> dict | None:
        try:
            return self.get(resource_type, resource_id, namespace)
        except NotFound:
            return None

    def apply(self, document: dict) -> None:
        # omnictl apply reads a file; the document holds no secret, but keep it private anyway.
        with tempfile.NamedTemporaryFile("w", prefix="omni-scale-", suffix=".yaml") as f:
            f.write(dump_yaml(document))
            f.flush()
            self.run("apply", "-f", f.name)

    def delete(self, resource_type: str, resource_id: str, namespace: str) -> None:
        self.run("delete", resource_type, resource_id, "-n", namespace)

    def template(self, verb: str, template: str, *flags: str, timeout_seconds: float | None = None) -> str:
        """`omnictl cluster template VERB -f FILE FLAGS...` (validate, render, sync, diff, status, delete)."""
        with tempfile.NamedTemporaryFile("w", prefix="omni-scale-template-", suffix=".yaml") as f:
            f.write(template)
            f.flush()
            return self.run("cluster", "template", verb, "-f", f.name, *flags, timeout_seconds=timeout_seconds)

    def export_template(self, cluster: str) -> str:
        with tempfile.TemporaryDirectory(prefix="omni-scale-") as d:
            target = os.path.join(d, "template.yaml")
            self.run("cluster", "template", "export", "-c", cluster, "-o", target)
            with open(target) as f:
                return f.read()

    def service_account_kubeconfig(self, cluster: str, user: str, ttl_seconds: float) -> str:
        # A kubeconfig made without --service-account logs in through a browser: useless here.
        with tempfile.TemporaryDirectory(prefix="omni-scale-") as d:
            target = os.path.join(d, "kubeconfig")
            self.run(
                "kubeconfig",
                "-c",
                cluster,
                "--service-account",
                "--user",
                user,
                "--ttl",
                f"{int(ttl_seconds)}s",
                target,
            )
            with open(target) as f:
                return f.read()
