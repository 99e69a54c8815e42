"""`docker`, as far as the provider LXC's compose deployment uses it, for the lab's SSH server.

    docker compose config [--quiet]       interpolate from .env, validate against the compose-spec
                                          JSON schema (compose-go's, from the Go module proxy)
    docker compose up -d                  validate, then (re)create the services whose config changed
    docker compose ps [--all] --format json
    docker compose logs [--tail N] [SERVICE]
    docker compose down [-v]              stop and remove the services (and, with -v, the volumes)

Most images do not run: their service is recorded as running. An image the lab knows how to run (the file
$OMNI_SCALE_LAB_CONTAINERS maps an image, without its tag, to a command) starts as a process of its own, as a
container would: its `command` as arguments (bind-mount targets read as their sources), its interpolated
`environment` as its environment, after a start delay; under a restart policy (restart: unless-stopped) it is
started again whenever it exits, as docker does. It is stopped when its service is recreated or taken down.

Services start in dependency order. A service with a `healthcheck` is healthy unless the lab says otherwise
($HOME/.docker-standin/health.json, {"PROJECT/SERVICE": "unhealthy"}, written by set_health: the lab cannot run
the check's command, say tailscale's /healthz, so its verdict is given). A `depends_on` with `condition:
service_healthy` waits for it as compose does: on an unhealthy dependency `up -d` exits 1 with compose's
"dependency failed to start: container P-S-1 is unhealthy" and the dependent stays created, not started.

State, logs and an argv history live in $HOME/.docker-standin/, so tests can see what ran, e.g. that nothing
ever passed -v. Anything else exits 1 saying it is not modelled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from lab.processes import started_at, still_running, terminate

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


class ComposeError(Exception):
    pass


def _state_dir() -> Path:
    path = Path(os.environ.get("HOME", ".")) / ".docker-standin"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _load_state() -> dict:
    path = _state_dir() / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"projects": {}, "volumes": {}}


def _save_state(state: dict) -> None:
    tmp = _state_dir() / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(_state_dir() / "state.json")


def read_dotenv(path: Path) -> dict[str, str]:
    """compose's .env: KEY=VALUE lines; single-quoted values are literal, double-quoted ones unescaped."""
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ComposeError(f"{path}:{number}: unexpected line (KEY=VALUE expected)")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env: dict[str, str], where: str = ""):
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        name, op, arg = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?+]?)(.*)", expr, re.S).groups()
        present = name in env and (env[name] != "" or not op.startswith(":"))
        if op in (":?", "?"):
            if not present:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op in (":-", "-"):
            return env[name] if present else arg
        if op in (":+", "+"):
            return arg if present else ""
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def load_project(directory: Path) -> tuple[str, dict]:
    found = next((directory / n for n in COMPOSE_FILES if (directory / n).exists()), None)
    if found is None:
        raise ComposeError(f"no configuration file provided: not found in {directory}")
    try:
        raw = yaml.safe_load(found.read_text())
    except yaml.YAMLError as exc:
        raise ComposeError(f"{found.name}: {exc}") from None
    if not isinstance(raw, dict):
        raise ComposeError(f"{found.name}: top-level object must be a mapping")
    document = interpolate(raw, {**read_dotenv(directory / ".env")})
    schema_path = os.environ.get("OMNI_SCALE_COMPOSE_SCHEMA")
    if not schema_path or not Path(schema_path).exists():
        raise ComposeError(
            "lab: the compose-spec schema is missing (OMNI_SCALE_COMPOSE_SCHEMA); run tools/bootstrap.sh"
        )
    import jsonschema

    schema = json.loads(Path(schema_path).read_text())
    errors = sorted(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(document), key=lambda e: list(e.path)
    )
    if errors:
        e = errors[0]
        raise ComposeError(f"validating {found.name}: {'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}")
    for name, service in document.get("services", {}).items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and not (directory / source).exists():
                raise ComposeError(f"service {name}: bind mount source {source} does not exist")
        mode = service.get("network_mode", "")
        if mode.startswith("service:") and mode[len("service:") :] not in document["services"]:
            raise ComposeError(f"service {name}: network_mode names an unknown service {mode}")
    return str(document.get("name") or directory.name), document


def set_health(home: Path, project: str, service: str, verdict: str) -> None:
    """What the lab says a service's healthcheck answers (healthy, unhealthy) from now on."""
    path = home / ".docker-standin" / "health.json"
    verdicts = json.loads(path.read_text()) if path.exists() else {}
    verdicts[f"{project}/{service}"] = verdict
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps(verdicts))


def _health(project: str, service: str, info: dict) -> str:
    """docker's Health of a running container: empty without a healthcheck."""
    if not info.get("healthcheck") or service_state(info) != "running":
        return ""
    path = _state_dir() / "health.json"
    verdicts = json.loads(path.read_text()) if path.exists() else {}
    return verdicts.get(f"{project}/{service}", "healthy")


def _dependencies(body: dict) -> dict[str, str]:
    """depends_on as {service: condition}; the list form means service_started."""
    depends = body.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()}


def _start_order(services: dict) -> list[str]:
    """Dependencies before their dependents, as compose starts them."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise ComposeError(f"dependency cycle detected: {' -> '.join((*path, name))}")
        for dependency in _dependencies(services[name]):
            if dependency not in services:
                raise ComposeError(f"service {name} depends on undefined service {dependency}: invalid compose project")
            visit(dependency, (*path, name))
        order.append(name)

    for name in services:
        visit(name, ())
    return order


def _service_hash(service: dict) -> str:
    return hashlib.sha256(json.dumps(service, sort_keys=True).encode()).hexdigest()


def _runner(image: str) -> dict | None:
    """How the lab runs this image, if it does: {"argv": [...], "env": {...}, "start_delay_seconds": N}."""
    path = os.environ.get("OMNI_SCALE_LAB_CONTAINERS")
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text()).get(image.split("@")[0].rsplit(":", 1)[0])


RESTARTING_POLICIES = ("always", "unless-stopped", "on-failure")


def _log_path(project: str, service: str) -> Path:
    return _state_dir() / f"{project}-{service}.log"


def _start(project: str, service: str, body: dict, directory: Path, runner: dict) -> int:
    """The service's container as a process: its command, bind-mount targets read as their sources."""
    binds = {}
    for volume in body.get("volumes", []):
        parts = volume.split(":") if isinstance(volume, str) else [volume.get("source", ""), volume.get("target", "")]
        if len(parts) >= 2 and parts[0].startswith((".", "/")):
            binds[parts[1]] = str((directory / parts[0]).resolve())
    command = body.get("command") or []
    command = command.split() if isinstance(command, str) else command
    argv = [*runner["argv"], *(binds.get(arg, arg) for arg in command)]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **runner.get("env", {}),
        **{k: str(v) for k, v in (body.get("environment") or {}).items()},
    }
    # A container takes a moment to start: the process runs after the start delay, as its own session. Under a
    # restart policy docker starts it again whenever it exits (here after a second; docker backs off from 100 ms).
    restarts = body.get("restart", "no") in RESTARTING_POLICIES
    script = 'sleep "$0"; while :; do "$@"; sleep 1; done' if restarts else 'sleep "$0" && exec "$@"'
    with open(_log_path(project, service), "ab") as log:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script, str(runner.get("start_delay_seconds", 0)), *argv],
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def _start_anew(info: dict, project: str, service: str, body: dict, directory: Path, runner: dict) -> None:
    """The service's process stopped (if it runs) and started again, recorded in info."""
    _stop(info)
    info["pid"] = _start(project, service, body, directory, runner)
    info["pid_started"] = started_at(info["pid"])


def running_service_pids(home: Path) -> list[int]:
    """The processes that run as services in the container whose home this is (each checked to be the one
    recorded, not a later holder of its pid)."""
    state = home / ".docker-standin" / "state.json"
    if not state.exists():
        return []
    services = [s for p in json.loads(state.read_text())["projects"].values() for s in p["services"].values()]
    return [s["pid"] for s in services if _alive(s)]


def _alive(info: dict) -> bool:
    return still_running(info.get("pid"), info.get("pid_started"))


def _stop(info: dict) -> None:
    # Never another process's group: a stopped service's pid may since have gone to, say, a pulumi plugin.
    if _alive(info):
        terminate(info["pid"], group=True)  # a container gets 10 s to stop, then it is killed
    info["pid"] = info["pid_started"] = None


def service_state(info: dict) -> str:
    """What `ps` says of a service: a process the lab runs is running only while it is alive."""
    if info["state"] != "running" or "pid" not in info:
        return info["state"]
    if _alive(info):
        return "running"
    return "restarting" if info.get("restart") in RESTARTING_POLICIES else "exited"


def compose(args: list[str], directory: Path) -> int:
    verb, flags = (args[0], args[1:]) if args else ("", [])
    history = _state_dir() / "history.log"
    with open(history, "a") as log:
        log.write(json.dumps({"cwd": str(directory), "argv": ["compose", *args]}) + "\n")
    if verb == "config":
        name, document = load_project(directory)
        if not ({"-q", "--quiet"} & set(flags)):
            sys.stdout.write(yaml.safe_dump(document, sort_keys=True))
        return 0
    state = _load_state()
    if verb == "up":
        if "-d" not in flags and "--detach" not in flags:
            raise ComposeError("lab: only `up -d` is modelled (a foreground up would never return)")
        name, document = load_project(directory)
        project = state["projects"].setdefault(name, {"dir": str(directory), "services": {}})
        services = document["services"]
        for service in _start_order(services):
            body = services[service]
            old = project["services"].get(service, {})
            for dependency, condition in _dependencies(body).items():
                if condition != "service_healthy":
                    continue
                if not services[dependency].get("healthcheck"):
                    _save_state(state)
                    raise ComposeError(
                        f"dependency failed to start: container {name}-{dependency}-1 has no healthcheck configured"
                    )
                if _health(name, dependency, project["services"][dependency]) != "healthy":
                    # The dependent is created, never started; what started before it keeps running.
                    project["services"][service] = {**old, "image": body.get("image", ""), "state": "created"}
                    if old:
                        _stop(project["services"][service])
                    _save_state(state)
                    raise ComposeError(f"dependency failed to start: container {name}-{dependency}-1 is unhealthy")
            digest = _service_hash(body)
            recreated = old.get("config_hash") != digest or service_state(old) != "running" if old else True
            info = {
                "image": body.get("image", ""),
                "state": "running",
                "config_hash": digest,
                "starts": old.get("starts", 0) + (1 if recreated else 0),
                "restart": body.get("restart", "no"),
                "healthcheck": bool(body.get("healthcheck")),
            }
            runner = _runner(info["image"])
            if runner is not None:
                info["pid"], info["pid_started"] = old.get("pid"), old.get("pid_started")
                if recreated:
                    _start_anew(info, name, service, body, directory, runner)
            project["services"][service] = info
        for volume in document.get("volumes", {}) or {}:
            state["volumes"].setdefault(f"{name}_{volume}", {"created_by": "up"})
        _save_state(state)
        return 0
    if verb == "ps":
        name = _project_name(directory)
        services = state["projects"].get(name, {}).get("services", {})
        for service, info in sorted(services.items()):
            now = service_state(info)
            if now == "running" or "--all" in flags or "-a" in flags:
                print(
                    json.dumps(
                        {
                            "Name": f"{name}-{service}-1",
                            "Service": service,
                            "State": now,
                            "Health": _health(name, service, info),
                            "Image": info["image"],
                            "Project": name,
                        }
                    )
                )
        return 0
    if verb == "logs":
        name = _project_name(directory)
        tail = int(flags[flags.index("--tail") + 1]) if "--tail" in flags else None
        wanted = [f for f in flags if not f.startswith("-") and f != str(tail)]
        for service in sorted(state["projects"].get(name, {}).get("services", {})):
            log = _log_path(name, service)
            if (not wanted or service in wanted) and log.exists():
                lines = log.read_text(errors="replace").splitlines()
                for line in lines[-tail:] if tail else lines:
                    print(f"{service}-1  | {line}")
        return 0
    if verb == "down":
        name = _project_name(directory)
        for info in state["projects"].pop(name, {}).get("services", {}).values():
            _stop(info)
        if {"-v", "--volumes"} & set(flags):
            for volume in [v for v in state["volumes"] if v.startswith(f"{name}_")]:
                del state["volumes"][volume]
        _save_state(state)
        return 0
    if verb == "restart":
        # The same containers, their processes started again: what they read at start (a bind-mounted file) is read
        # anew. A service that was not running is left as it is, as docker does.
        name, document = load_project(directory)
        project = state["projects"].get(name, {"services": {}})
        wanted = [f for f in flags if not f.startswith("-")] or list(project["services"])
        for service in wanted:
            if service not in document.get("services", {}):
                raise ComposeError(f"no such service: {service}")
            info = project["services"].get(service)
            if not info or info["state"] != "running":
                continue
            runner = _runner(info["image"])
            info["starts"] = info.get("starts", 0) + 1
            if runner is not None:
                _start_anew(info, name, service, document["services"][service], directory, runner)
        _save_state(state)
        return 0
    raise ComposeError(f"lab: `docker compose {verb}` is not modelled by the stand-in")


def _project_name(directory: Path) -> str:
    try:
        return load_project(directory)[0]
    except ComposeError:
        return directory.name


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "compose":
        print(
            f"lab: `docker {' '.join(argv)}` is not modelled by the stand-in (only `docker compose`)", file=sys.stderr
        )
        return 1
    try:
        return compose(argv[1:], Path.cwd())
    except ComposeError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
