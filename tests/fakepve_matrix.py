"""An in-process Matrix-shaped fakepve server for tests: `with running_matrix(tmp_path) as matrix: ...`.

The server runs on its own asyncio loop in a background thread, on 127.0.0.1 with a port the system picks.
matrix.pve is the FakePve; change it through matrix.call(fn, *args), which runs fn on the server's loop and
waits for it, e.g. `matrix.call(fake.fill_storage, matrix.pve, 'vm_ssd')`. Direct calls from the test thread
are not safe on a running server: the handlers iterate fakepve's dicts (storages, volumes, nodes) while
answering, and a fault adding a key meanwhile ("dictionary changed size during iteration") or a request landing
between two of a fault's assignments would give a wrong answer.
"""

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import ssl
import threading
import urllib.request

from fakepve.certs import make_cert

from lab import fakepve_lab
from lab.fakepve_access import AccessControlledPve

HOST = "127.0.0.1"
TIMEOUT = 30  # seconds; a start, stop or call taking longer fails the test instead of hanging it


class Matrix:
    """What running_matrix() yields: the fake, how to reach it, and call() to change it safely."""

    def __init__(self, pve, loop, token_secret, cafile, provider_token_secret):
        self.pve = pve
        self.loop = loop
        self.api_url = pve.url + "/api2/json"
        self.token_id = fakepve_lab.TOKEN_ID
        self.token_secret = token_secret
        self.cafile = cafile
        # The infra provider's own token (what its config.yaml holds): it makes VMs.
        self.provider_token_id = fakepve_lab.PROVIDER_TOKEN_ID
        self.provider_token_secret = provider_token_secret

    def call(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) on the server's loop, between two requests; return its result or raise."""
        done = concurrent.futures.Future()

        def run():
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(TIMEOUT)


@contextlib.contextmanager
def running_matrix(tmp_path, prepare=None, readings=None):
    """Start a Matrix-shaped FakePve (time_scale 0, API token pulumi@pve!omni-scale) and yield a Matrix.

    prepare(pve), if given, runs before the server starts (no call() needed then): a fault from the first request.
    readings (a fakepve_lab.LiveReadings) makes the readings move between requests, as the lab's do; the default
    keeps them still, for tests that check arithmetic.
    """
    certfile, keyfile, _ = make_cert(str(tmp_path), hosts=(HOST,))
    token_secret, provider_token_secret = secrets.token_hex(16), secrets.token_hex(16)
    pve = fakepve_lab.build_matrix(
        AccessControlledPve(password=secrets.token_hex(16), host=HOST, port=0),
        token_secret,
        readings,
        provider_token_secret,
    )
    pve.time_scale = 0
    if prepare is not None:
        prepare(pve)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fakepve-matrix", daemon=True)
    thread.start()
    try:
        # start() returns once the socket listens (and pve.port holds the real port): no polling, no sleeps.
        asyncio.run_coroutine_threadsafe(pve.start(certfile, keyfile), loop).result(TIMEOUT)
        try:
            yield Matrix(pve, loop, token_secret, certfile, provider_token_secret)
        finally:
            asyncio.run_coroutine_threadsafe(pve.stop(), loop).result(TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        if not thread.is_alive():
            loop.close()


def api_get(api_url, token_id, token_secret, cafile, path):
    """GET one Proxmox API path with an API token, trusting only the lab's CA; the response's `data`."""
    request = urllib.request.Request(
        api_url + path, headers={"Authorization": f"PVEAPIToken={token_id}={token_secret}"}
    )
    context = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)["data"]
