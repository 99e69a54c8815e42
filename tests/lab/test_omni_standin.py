"""lab/bin/omnictl (the omnictl v1.8.0 stand-in), driven as a subprocess exactly like a client.

Expected texts are the real omnictl's: captured from the v1.8.0 binary (unreachable,
argv errors, output layouts) or taken from the Omni/COSI sources (NotFound, invalid
signature, validation errors). See lab/OMNI_STANDIN.md.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OMNICTL = PROJECT_ROOT / "lab" / "bin" / "omnictl"
ENDPOINT = "https://127.0.0.1:50042"
MC = "MachineClasses.omni.sidero.dev"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ZERO_TIME = "0001-01-01T00:00:00Z"

sys.path.insert(0, str(PROJECT_ROOT))
from lab import omni_standin  # noqa: E402

UNREACHABLE = ('Error: rpc error: code = Unavailable desc = connection error: desc = '
               '"transport: Error while dialing: dial tcp {}: connect: connection refused"\n')
INVALID_SIGNATURE = "Error: rpc error: code = Unauthenticated desc = invalid signature\n"


def not_found(rid: str, ns: str = "default", rtype: str = MC) -> str:
    return f"Error: rpc error: code = NotFound desc = resource {rtype}({ns}/{rid}@undefined) doesn't exist\n"


class _NoTimestamps(yaml.SafeLoader):
    """safe_load, but RFC3339 stays a string (as omnictl's own JSON output keeps it)."""


_NoTimestamps.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(text: str):
    return yaml.load(text, Loader=_NoTimestamps)


class Lab:
    def __init__(self, root: Path):
        self.root = root
        self.state = root / "omni"
        self.key = omni_standin.init_server(self.state, ENDPOINT)
        self.files = root / "files"
        self.files.mkdir()

    def env(self, **overrides: str | None) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("OMNI_ENDPOINT", "OMNI_SERVICE_ACCOUNT_KEY", "SIDERO_SERVICE_ACCOUNT_KEY")}
        # `#!/usr/bin/env python3` must find an interpreter with PyYAML: the one running the tests
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["OMNI_SCALE_LAB_DIR"] = str(self.root)
        env["HOME"] = str(self.root / "home")
        env["OMNI_ENDPOINT"] = ENDPOINT
        env["OMNI_SERVICE_ACCOUNT_KEY"] = self.key
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def run(self, *args: str, cwd: Path | None = None, **env: str | None) -> subprocess.CompletedProcess:
        return subprocess.run([str(OMNICTL), *args], env=self.env(**env), capture_output=True, text=True,
                              cwd=cwd or self.root, timeout=60)

    def write(self, name: str, text: str) -> str:
        path = self.files / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return str(path)

    def apply(self, text: str, *flags: str, name: str = "doc.yaml") -> subprocess.CompletedProcess:
        return self.run("apply", "-f", self.write(name, text), *flags)

    def get_yaml(self, rtype: str, rid: str, *flags: str) -> dict:
        p = self.run("get", rtype, rid, "-o", "yaml", *flags)
        assert p.returncode == 0, p.stderr
        return load_yaml(p.stdout)


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab(tmp_path)


# A MachineClass spec written the way Omni prints it (every field, Go struct order), so the
# applied text and what `get` prints are the same document.
AUTO_SPEC = {
    "matchlabels": [],
    "autoprovision": {
        "providerid": "proxmox",
        "kernelargs": ["console=ttyS0"],
        "metavalues": [{"key": 10, "value": "hello"}],
        "providerdata": "cores: 4\nmemory: 8192\ndisk_size: 40\nstorage_selector: name == \"vm_ssd\"\n",
        "grpctunnel": 0,
    },
}


def class_doc(spec: dict, cid: str = "matrix-control-plane", **metadata: object) -> str:
    md = {"namespace": "default", "type": MC, "id": cid, **metadata}
    return yaml.safe_dump({"metadata": md, "spec": spec}, sort_keys=False)


def test_apply_creates_version_1_and_get_round_trips_the_spec(lab):
    omni_standin.register_provider(lab.state, "proxmox", name="Proxmox")
    p = lab.apply(class_doc(AUTO_SPEC))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")

    got = lab.get_yaml("machineclass", "matrix-control-plane")
    assert got["spec"] == AUTO_SPEC
    md = got["metadata"]
    assert (md["namespace"], md["type"], md["id"], md["version"], md["owner"], md["phase"]) == \
        ("default", MC, "matrix-control-plane", 1, None, "running")
    assert RFC3339.match(md["created"]) and md["updated"] == ZERO_TIME  # what COSI's Create keeps

    p = lab.run("get", "mc", "matrix-control-plane", "-o", "json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["spec"] == AUTO_SPEC
    assert data["metadata"]["version"] == 1 and data["metadata"]["owner"] is None
    assert p.stdout.startswith('{\n    "metadata": {\n        "created": ')  # Go: sorted keys, 4-space indent


def test_get_yaml_is_formatted_like_omnictl(lab):
    omni_standin.register_provider(lab.state, "proxmox")
    assert lab.apply(class_doc(AUTO_SPEC, labels={"zeta": "1", "alpha": ""})).returncode == 0
    out = lab.run("get", "mc", "matrix-control-plane", "-o", "yaml").stdout
    out = re.sub(r"created: \S+", "created: <T>", out)
    assert out == textwrap.dedent("""\
        metadata:
            namespace: default
            type: MachineClasses.omni.sidero.dev
            id: matrix-control-plane
            version: 1
            owner:
            phase: running
            created: <T>
            updated: 0001-01-01T00:00:00Z
            labels:
                alpha:
                zeta: 1
        spec:
            matchlabels: []
            autoprovision:
                providerid: proxmox
                kernelargs:
                    - console=ttyS0
                metavalues:
                    - key: 10
                      value: hello
                providerdata: |
                    cores: 4
                    memory: 8192
                    disk_size: 40
                    storage_selector: name == "vm_ssd"
                grpctunnel: 0
        """)


def test_partial_spec_is_completed_with_zero_values_like_omni(lab):
    assert lab.apply(class_doc({"matchlabels": ["omni.sidero.dev/arch = amd64"]}, cid="workers")).returncode == 0
    assert lab.get_yaml("mc", "workers")["spec"] == {"matchlabels": ["omni.sidero.dev/arch = amd64"],
                                                     "autoprovision": None}


def test_reapply_with_changed_spec_updates_to_version_2(lab):
    omni_standin.register_provider(lab.state, "proxmox")
    assert lab.apply(class_doc(AUTO_SPEC)).returncode == 0
    created = lab.get_yaml("mc", "matrix-control-plane")["metadata"]["created"]
    changed = json.loads(json.dumps(AUTO_SPEC))
    changed["autoprovision"]["providerdata"] = changed["autoprovision"]["providerdata"].replace("cores: 4", "cores: 8")
    p = lab.apply(class_doc(changed))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    got = lab.get_yaml("mc", "matrix-control-plane")
    assert got["spec"] == changed
    assert got["metadata"]["version"] == 2
    assert got["metadata"]["created"] == created and RFC3339.match(got["metadata"]["updated"])


def test_dry_run_changes_nothing_and_prints_the_diff(lab):
    omni_standin.register_provider(lab.state, "proxmox")
    path = lab.write("c.yaml", class_doc(AUTO_SPEC))
    p = lab.run("apply", "-f", path, "--dry-run")
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.startswith(f"Processing 1 resource file(s)\nApplying resources from: {path}\n"
                               "Creating resource 'matrix-control-plane'\n\nmetadata:\n")
    assert "    version: undefined\n" in p.stdout and p.stdout.endswith("grpctunnel: 0\n\n\n")
    assert lab.run("get", "mc", "matrix-control-plane").returncode == 1  # nothing was created

    assert lab.run("apply", "-f", path).returncode == 0
    before = lab.get_yaml("mc", "matrix-control-plane")
    changed = json.loads(json.dumps(AUTO_SPEC))
    changed["autoprovision"]["providerdata"] = changed["autoprovision"]["providerdata"].replace("cores: 4", "cores: 8")
    p = lab.run("apply", "-d", "-f", lab.write("c.yaml", class_doc(changed)))
    assert p.returncode == 0, p.stderr
    assert "Updating resource 'matrix-control-plane'\n\n" in p.stdout
    # go-diff's DiffPrettyText: deletions red, insertions green
    assert "cores: \x1b[31m4\x1b[0m\x1b[32m8\x1b[0m\n" in p.stdout
    assert "version: \x1b[31m1\x1b[0m\x1b[32mundefined\x1b[0m\n" in p.stdout
    assert lab.get_yaml("mc", "matrix-control-plane") == before


def test_get_missing_is_not_found(lab):
    p = lab.run("get", "machineclasses", "nope")
    assert p.returncode == 1
    assert p.stderr == not_found("nope")
    assert p.stdout == "NAMESPACE   TYPE   ID   VERSION\n"  # the table header is flushed anyway
    p = lab.run("get", "mc", "nope", "-n", "other", "-o", "yaml")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", not_found("nope", "other"))


def test_delete_then_get_is_not_found(lab):
    assert lab.apply(class_doc({"matchlabels": ["a"]}, cid="workers")).returncode == 0
    p = lab.run("delete", "machineclass", "workers")
    assert (p.returncode, p.stdout) == (0, "")
    assert p.stderr == f"torn down {MC} workers\ndestroyed {MC} workers\n"
    p = lab.run("get", "mc", "workers", "-o", "yaml")
    assert (p.returncode, p.stderr) == (1, not_found("workers"))
    p = lab.run("delete", "mc", "workers")
    assert (p.returncode, p.stderr) == (1, not_found("workers"))
    p = lab.run("delete", "mc")
    assert p.stderr == "Error: either resource ID or one of --all or --selector flags must be specified\n"


def test_wrong_key_is_unauthenticated(lab, tmp_path_factory):
    other = omni_standin.init_server(tmp_path_factory.mktemp("other") / "omni", ENDPOINT)
    p = lab.run("get", "mc", OMNI_SERVICE_ACCOUNT_KEY=other)
    assert (p.returncode, p.stdout, p.stderr) == (1, "", INVALID_SIGNATURE)
    # a key that is not even a key fails in the client, before any connection, like omnictl
    p = lab.run("get", "mc", OMNI_SERVICE_ACCOUNT_KEY="dummy")
    assert (p.returncode, p.stderr) == (1, "Error: illegal base64 data at input byte 4\n")
    p = lab.run("get", "mc", OMNI_SERVICE_ACCOUNT_KEY=base64.b64encode(b"{}").decode())
    assert p.stderr == "Error: gopenpgp: error in reading key ring: openpgp: invalid argument: no armored data found\n"


def test_no_key_is_the_real_clients_error(lab):
    p = lab.run("get", "mc", OMNI_SERVICE_ACCOUNT_KEY=None)
    assert p.returncode == 1
    assert p.stderr == ("Error: rpc error: code = Unauthenticated desc = failed to validate: 1 error occurred:\n"
                        "\t* rpc error: code = Unauthenticated desc = unauthenticated: missing valid signature\n\n\n")
    # without a key and without an endpoint omnictl dials its default omniconfig context
    p = lab.run("get", "mc", OMNI_SERVICE_ACCOUNT_KEY=None, OMNI_ENDPOINT=None)
    assert (p.returncode, p.stderr) == (1, UNREACHABLE.format("127.0.0.1:8080"))


def test_server_down_is_unreachable_and_keeps_resources(lab):
    assert lab.apply(class_doc({"matchlabels": ["a"]}, cid="workers")).returncode == 0
    omni_standin.stop_server(lab.state)
    assert not (lab.state / "server.json").exists()
    for args in (("get", "mc", "workers"), ("delete", "mc", "workers"),
                 ("apply", "-f", lab.write("x.yaml", class_doc({"matchlabels": ["b"]})))):
        p = lab.run(*args)
        assert (p.returncode, p.stdout, p.stderr) == (1, "", UNREACHABLE.format("127.0.0.1:50042")), args
    key = omni_standin.init_server(lab.state, ENDPOINT)
    assert lab.run("get", "mc", "workers", OMNI_SERVICE_ACCOUNT_KEY=key).returncode == 0


def test_other_endpoint_is_unreachable(lab):
    p = lab.run("get", "mc", OMNI_ENDPOINT="https://127.0.0.1:1")
    assert (p.returncode, p.stderr) == (1, UNREACHABLE.format("127.0.0.1:1"))
    p = lab.run("get", "mc", OMNI_ENDPOINT="https://localhost")
    assert p.stderr == UNREACHABLE.format("127.0.0.1:443")
    p = lab.run("get", "mc", OMNI_ENDPOINT="127.0.0.1:50042")
    assert p.stderr == 'Error: parse "127.0.0.1:50042": first path segment in URL cannot contain colon\n'


def test_unknown_type_is_an_error(lab):
    p = lab.apply("""\
        metadata: {namespace: default, type: Frobs.omni.sidero.dev, id: x}
        spec: {a: 1}
        """, name="frob.yaml")
    assert p.returncode == 1
    assert p.stderr == (f'Error: failed to apply resources from file "{lab.files / "frob.yaml"}": '
                        "yaml: construct errors:\n  line 1: failed to create resource: "
                        "no resource is registered for the resource type Frobs.omni.sidero.dev\n")
    p = lab.run("get", "frobs")
    assert (p.returncode, p.stderr) == (1, 'Error: resource "frobs" is not registered\n')


def test_class_with_both_matchlabels_and_autoprovision_is_rejected(lab):
    omni_standin.register_provider(lab.state, "proxmox")
    spec = {"matchlabels": ["a"], "autoprovision": {"providerid": "proxmox"}}
    p = lab.apply(class_doc(spec, cid="both"), name="both.yaml")
    assert p.returncode == 1
    assert p.stderr == (f'Error: failed to apply resources from file "{lab.files / "both.yaml"}": '
                        f"failed to create resource 'both' '{MC}': rpc error: code = InvalidArgument desc = "
                        "failed to validate: 1 error occurred:\n"
                        "\t* can't set both auto provision and match labels at the same time\n\n\n")
    assert lab.run("get", "mc", "both").returncode == 1


@pytest.mark.parametrize("spec, message", [
    ({"autoprovision": {"providerdata": "cores: 1"}}, "providerID can not be empty"),
    ({"autoprovision": {"providerid": "nobody"}},
     "failed to get provider: resource InfraProviderStatuses.omni.sidero.dev(infra-provider/nobody@undefined) "
     "doesn't exist"),
    ({"matchlabels": []}, "machine class should either have auto provision or match labels set"),
    ({"matchlabels": ["omni.sidero.dev/no-manual-allocation"]},
     "selectors using label omni.sidero.dev/no-manual-allocation are not allowed"),
])
def test_other_machine_class_validations(lab, spec, message):
    p = lab.apply(class_doc(spec))
    assert p.returncode == 1 and f"failed to validate: 1 error occurred:\n\t* {message}\n\n\n" in p.stderr


def test_provider_schema_validates_providerdata(lab):
    schema = {"type": "object", "required": ["cores", "memory"], "additionalProperties": False,
              "properties": {"cores": {"type": "integer", "minimum": 1}, "memory": {"type": "integer", "minimum": 2048}}}
    omni_standin.register_provider(lab.state, "proxmox", schema=json.dumps(schema))
    bad = {"autoprovision": {"providerid": "proxmox", "providerdata": "cores: 0\n"}}
    p = lab.apply(class_doc(bad))
    assert p.returncode == 1
    assert '* - config value ".memory": is required\n- config value ".cores": must be at least 1\n' in p.stderr
    good = {"autoprovision": {"providerid": "proxmox", "providerdata": "cores: 2\nmemory: 4096\n"}}
    assert lab.apply(class_doc(good)).returncode == 0


def test_type_aliases_resolve_like_omnictl(lab):
    assert lab.apply(class_doc({"matchlabels": ["a"]}, cid="workers")).returncode == 0
    table = lab.run("get", "mc").stdout
    assert table == ("NAMESPACE   TYPE           ID        VERSION\n"
                     "default     MachineClass   workers   1\n")
    for alias in ("machineclasses", "machineclass", MC, "MACHINECLASSES", "machineclasses.omni", "mc", "g"):
        args = ("get", alias) if alias != "g" else ("g", "mc")
        p = lab.run(*args)
        assert (p.returncode, p.stdout) == (0, table), alias
    p = lab.run("get", "mcs")
    assert p.stderr == ('Error: resource type "mcs" is ambiguous: '
                        "[machineclasses.omni.sidero.dev maintenanceconfigstatuses.omni.sidero.dev]\n")


def test_other_types_and_default_namespaces(lab):
    p = lab.apply("""\
        metadata: {namespace: infra-provider, type: InfraProviderStatuses.omni.sidero.dev, id: proxmox}
        spec: {name: Proxmox, description: Proxmox infra provider}
        ---
        metadata: {namespace: infra-provider-ephemeral, type: InfraProviderHealthStatuses.omni.sidero.dev, id: proxmox}
        spec:
          lastheartbeattimestamp: {seconds: 1763725000, nanos: 5}
        ---
        metadata: {namespace: default, type: Clusters.omni.sidero.dev, id: talos-prod-01}
        spec: {kubernetesversion: 1.33.0, talosversion: 1.10.0}
        """)
    assert p.returncode == 0, p.stderr
    assert lab.run("get", "infraproviderstatus").stdout == (
        "NAMESPACE        TYPE                  ID        VERSION   NAME      DESCRIPTION\n"
        "infra-provider   InfraProviderStatus   proxmox   1         Proxmox   Proxmox infra provider\n")
    assert lab.run("get", "iphs").stdout == (
        "NAMESPACE                  TYPE                        ID        VERSION   LAST HEARTBEAT TIMESTAMP"
        "           ERROR\n"
        "infra-provider-ephemeral   InfraProviderHealthStatus   proxmox   1         "
        '{"nanos":5,"seconds":1763725000}   \n')
    assert lab.get_yaml("cluster", "talos-prod-01")["spec"] == {
        "kubernetesversion": "1.33.0", "talosversion": "1.10.0", "features": None, "backupconfiguration": None}


def test_list_yaml_uses_document_separators_and_multi_doc_and_directory_apply(lab):
    lab.write("dir/a.yaml", class_doc({"matchlabels": ["a"]}, cid="a"))
    lab.write("dir/sub/b.yml", class_doc({"matchlabels": ["b"]}, cid="b") + "---\n"
              + class_doc({"matchlabels": ["c"]}, cid="c"))
    lab.write("dir/ignored.txt", "not yaml")
    p = lab.run("apply", "-f", "files/dir", "-v")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Processing 2 resource file(s)\nApplying resources from: files/dir/a.yaml\n")
    assert "Applying resources from: files/dir/sub/b.yml\nCreating resource 'b'" in p.stdout
    out = lab.run("get", "mc", "-o", "yaml").stdout
    assert out.count("---\n") == 2 and [d["metadata"]["id"] for d in yaml.load_all(out, Loader=_NoTimestamps)] == ["a", "b", "c"]
    out = lab.run("get", "mc", "-o", "json").stdout
    assert out.count("}\n{") == 2  # one JSON document per resource, like omnictl
    p = lab.run("get", "mc", "-l", "!nothing", "--id-match-regexp", "^[ab]$")
    assert p.stdout.splitlines()[1:] == ["default     MachineClass   a    1", "default     MachineClass   b    1"]


def test_empty_document_panics_like_omnictl_and_applies_nothing(lab):
    # real omnictl v1.8.0: "panic: resource is not set", exit status 2, on e.g. a trailing '---'
    p = lab.apply(class_doc({"matchlabels": ["a"]}, cid="first") + "---\n")
    assert p.returncode == 2 and p.stderr.startswith("panic: resource is not set\n")
    assert lab.run("get", "mc", "first").returncode == 1


def test_spec_type_errors_are_go_yaml_construct_errors(lab):
    p = lab.apply("""\
        metadata: {namespace: default, type: MachineClasses.omni.sidero.dev, id: x}
        spec:
          matchlabels: a
          autoprovision:
            grpctunnel: nope
        """, name="bad.yaml")
    path = lab.files / "bad.yaml"
    assert p.stderr == (f'Error: failed to apply resources from file "{path}": '
                        "yaml: construct errors:\n  line 1: failed to unmarshal spec: yaml: construct errors:\n"
                        "  line 3: cannot construct !!str `a` into []string\n"
                        "  line 5: cannot construct !!str `nope` into specs.GrpcTunnelMode\n")


def test_concurrent_invocations_are_serialized(lab):
    path = lab.write("same.yaml", class_doc({"matchlabels": ["a"]}, cid="same"))
    procs = [subprocess.Popen([str(OMNICTL), "apply", "-f", path], env=lab.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert lab.get_yaml("mc", "same")["metadata"]["version"] == 8
    leftovers = [p for p in (lab.state / "resources").rglob("*") if p.is_file() and not p.name.endswith(".yaml")]
    assert leftovers == []


def test_cli_behaviour_matches_omnictl(lab):
    assert lab.run("--version").stdout == "omnictl version v1.8.0 (lab stand-in)\n"
    assert lab.run("--help").stdout == omni_standin.HELP_TEXTS["root"]
    for verb in ("apply", "get", "delete"):
        assert lab.run(verb, "--help").stdout == omni_standin.HELP_TEXTS[verb]
        assert lab.run("help", verb).stdout == omni_standin.HELP_TEXTS[verb]
    assert lab.run("--insecure-skip-tls-verify", "get", "mc").returncode == 0
    assert lab.run("get", "mc", "--insecure-skip-tls-verify", "-o", "yaml").returncode == 0
    cases = [
        (("apply",), 'Error: required flag(s) "file" not set\n'),
        (("apply", "-f"), "Error: flag needs an argument: 'f' in -f\n"),
        (("apply", "foo", "-f", "x"), 'Error: unknown command "foo" for "omnictl apply"\n'),
        (("apply", "-f", "x", "--dry-run=maybe"),
         'Error: invalid argument "maybe" for "-d, --dry-run" flag: strconv.ParseBool: parsing "maybe": '
         "invalid syntax\n"),
        (("get",), "Error: accepts between 1 and 2 arg(s), received 0\n"),
        (("get", "mc", "--bogus"), "Error: unknown flag: --bogus\n"),
        (("get", "mc", "-o", "xml"), 'Error: output format "xml" is not supported\n'),
        (("delete",), "Error: requires at least 1 arg(s), only received 0\n"),
        (("delete", "mc", "--all", "-l", "a"), "Error: if any flags in the group [all selector] are set none "
                                               "of the others can be; [all selector] were all set\n"),
        (("frob",), "Error: unknown command \"frob\" for \"omnictl\"\nRun 'omnictl --help' for usage.\n"),
        (("gte",), 'Error: unknown command "gte" for "omnictl"\n\nDid you mean this?\n\tget\n\n'
                   "Run 'omnictl --help' for usage.\n"),
        (("apply", "-f", "missing.yaml"),
         'Error: failed to discover yaml files from "missing.yaml": stat missing.yaml: no such file or directory\n'),
    ]
    for args, stderr in cases:
        p = lab.run(*args)
        assert (p.returncode, p.stderr) == (1, stderr), args


def test_unsupported_verbs_fail_clearly(lab):
    for args in (("cluster", "lock", "x"), ("cluster", "kubernetes", "upgrade-pre-checks"), ("serviceaccount", "list"),
                 ("get", "mc", "--watch"), ("get", "mc", "-o", "jsonpath={.metadata.id}")):
        p = lab.run(*args)
        assert p.returncode == 1 and "not supported by the lab stand-in" in p.stderr, args


def test_key_shape_file_mode_and_never_echoed(lab):
    mode = stat.S_IMODE((lab.state / "server.json").stat().st_mode)
    assert mode == 0o600
    assert json.loads((lab.state / "server.json").read_text()) == {"endpoint": ENDPOINT, "service_account_key": lab.key}
    blob = json.loads(base64.b64decode(lab.key))
    assert set(blob) == {"name", "pgp_key"}
    assert blob["pgp_key"].startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----\n")
    outputs = [lab.run(*a) for a in (("get", "mc"), ("get", "mc", "x"), ("--help",), ("apply", "-f", "nope"),
                                      ("get", "mc", "-o", "yaml"))]
    outputs.append(lab.run("get", "mc", OMNI_ENDPOINT="https://127.0.0.1:9"))
    pgp_body = blob["pgp_key"].split("\n")[2]
    for p in outputs:
        for text in (p.stdout, p.stderr):
            assert lab.key not in text and pgp_body not in text


def test_init_and_stop_from_the_command_line(tmp_path):
    state = tmp_path / "omni"
    run = lambda *a: subprocess.run([sys.executable, "-m", "lab.omni_standin", *a], cwd=PROJECT_ROOT,
                                    capture_output=True, text=True, timeout=60)
    p = run("init", "--state-dir", str(state), "--endpoint", ENDPOINT)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert json.loads((state / "server.json").read_text())["endpoint"] == ENDPOINT
    p = run("stop", "--state-dir", str(state))
    assert p.returncode == 0 and not (state / "server.json").exists()


# The real omnictl the project builds (make test runs the set-up first): these tests never skip.
REAL_OMNICTL = str(PROJECT_ROOT / ".tools" / "bin" / "omnictl")


def test_every_flag_the_stand_in_accepts_exists_in_real_omnictl(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}  # real omnictl writes ~/.talos

    def real_help(*args: str) -> str:
        p = subprocess.run([REAL_OMNICTL, *args, "--help"], env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    version = subprocess.run([REAL_OMNICTL, "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("omnictl version v1.8.0") and "stand-in" not in version.stdout
    root_help = real_help()
    for verb in ("apply", "get", "delete"):
        text = real_help(verb)
        assert text == omni_standin.HELP_TEXTS[verb]
        for flag in omni_standin.COMMAND_FLAGS[verb] + omni_standin._GLOBAL_FLAGS:
            long_re = rf"^\s+(-{flag.short}, )?--{re.escape(flag.name)}\b" if flag.short else \
                rf"^\s+--{re.escape(flag.name)}\b"
            assert re.search(long_re, text, re.M), (verb, flag.name)
    for flag in omni_standin.COMMAND_FLAGS[""] + omni_standin._GLOBAL_FLAGS:
        assert re.search(rf"^\s+(-{flag.short}, )?--{flag.name}\b", root_help, re.M), flag.name
    assert root_help == omni_standin.HELP_TEXTS["root"]


def test_unreachable_and_key_errors_match_real_omnictl(lab, tmp_path):
    omni_standin.stop_server(lab.state)
    for key in (lab.key, "dummy", "e30=", None):
        env = lab.env(OMNI_ENDPOINT="https://127.0.0.1:1", OMNI_SERVICE_ACCOUNT_KEY=key, HOME=str(tmp_path))
        real = subprocess.run([REAL_OMNICTL, "get", "mc"], env=env, capture_output=True, text=True, timeout=60)
        ours = subprocess.run([str(OMNICTL), "get", "mc"], env=env, capture_output=True, text=True, timeout=60)
        assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr), key
