"""The lab's S3: moto's server mode, in the lab Omni's network namespace, where Omni's etcd backup store points.

    start(directory, netns_pid, bucket) -> {"endpoint", "bucket", "access_key_id", "secret_access_key", "pid"}

It runs inside Omni's namespace (lab/omni_lab.py) because that is where Omni dials its store: 127.0.0.1 there is
not 127.0.0.1 here. Like S3 it checks who asks: requests are signed with an access key moto's IAM made at start,
for a user whose policy allows S3 and nothing else; an unknown key or a wrong secret is refused as S3 refuses it
(InvalidAccessKeyId, SignatureDoesNotMatch), and a bucket that does not exist is NoSuchBucket. The bucket the spec
names is made at start. What the lab cannot give it is a backup: Omni takes etcd snapshots through the Talos API of
a control plane, which no lab machine has (put_snapshot puts an object where Omni would, so the store lists one).

Run as a script (inside the namespace): `serve` starts the server and writes its ready file; `put` puts an object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from lab.processes import spawn, terminate, wait_until, write_private_json

HOST = "127.0.0.1"
REGION = "us-east-1"
# The first requests moto answers unsigned: making the user, its policy and its key. Every later one is checked.
_SETUP_REQUESTS = 3
_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def serve(ready_file: Path, bucket: str) -> int:
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_REQUESTS)  # read when moto is imported
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(HOST, 0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://{HOST}:{port}"
    unsigned = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": REGION}
    iam = boto3.client("iam", endpoint_url=endpoint, **unsigned)
    iam.create_user(UserName="omni-backups")
    iam.put_user_policy(UserName="omni-backups", PolicyName="s3", PolicyDocument=json.dumps(_POLICY))
    key = iam.create_access_key(UserName="omni-backups")["AccessKey"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name=REGION,
    )
    s3.create_bucket(Bucket=bucket)
    write_private_json(
        ready_file,
        {
            "endpoint": endpoint,
            "bucket": bucket,
            "region": REGION,
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
            "pid": os.getpid(),
        },
    )
    threading.Event().wait()  # serves until terminated
    return 0


def put(endpoint: str, bucket: str, key: str) -> int:
    """Puts stdin as the object, signed with the key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).put_object(
        Bucket=bucket, Key=key, Body=sys.stdin.buffer.read()
    )
    return 0


def start(directory: Path, netns_pid: int, bucket: str) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "s3.json"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "lab.s3_lab", "serve", "--ready-file", str(ready), "--bucket", bucket]
    proc = spawn(directory.parent, "s3", ["nsenter", "-t", str(netns_pid), "-n", "--", *argv])
    log = directory.parent / "s3.log"
    info = wait_until(lambda: ready.exists() and json.loads(ready.read_text()), proc, "the lab's S3", log)
    return {**info, "netns_pid": netns_pid}


def stop(info: dict) -> None:
    terminate(info["pid"], grace_seconds=0)


def snapshot_key(cluster_uuid: str, unix_seconds: int) -> str:
    """Where Omni keeps a backup of the cluster taken at that time: `<cluster UUID>/<%016X of uint64(-unix)>.snapshot`
    (newest first when listed by name)."""
    return f"{cluster_uuid}/{(-unix_seconds) % 2**64:016X}.snapshot"


def put_snapshot(info: dict, cluster_uuid: str, unix_seconds: int, body: bytes = b"not an etcd snapshot") -> str:
    """An object where Omni would put a backup of the cluster taken at unix_seconds; its snapshot name. Omni lists
    it as a backup (`omnictl get etcdbackups`); restoring from it fails, as its content is no backup of Omni's."""
    key = snapshot_key(cluster_uuid, unix_seconds)
    argv = [sys.executable, "-m", "lab.s3_lab", "put", "--endpoint", info["endpoint"], "--bucket", info["bucket"]]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": info["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": info["secret_access_key"],
    }
    subprocess.run(
        ["nsenter", "-t", str(info["netns_pid"]), "-n", "--", *argv, "--key", key],
        input=body,
        env=env,
        check=True,
        capture_output=True,
    )
    return key.rsplit("/", 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    serving = verbs.add_parser("serve")
    serving.add_argument("--ready-file", type=Path, required=True)
    serving.add_argument("--bucket", required=True)
    putting = verbs.add_parser("put")
    putting.add_argument("--endpoint", required=True)
    putting.add_argument("--bucket", required=True)
    putting.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    if args.verb == "serve":
        return serve(args.ready_file, args.bucket)
    return put(args.endpoint, args.bucket, args.key)


if __name__ == "__main__":
    sys.exit(main())
