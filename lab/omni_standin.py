"""Lab stand-in for `omnictl` v1.8.0: the verbs this project uses, answered from files.

The real omnictl talks gRPC to an Omni server. In the lab there is no Omni: this module
plays both parts. It parses argv like omnictl (cobra/pflag rules), authenticates from the
environment like omnictl (OMNI_ENDPOINT, OMNI_SERVICE_ACCOUNT_KEY), keeps resources as one
YAML file each under the state directory, validates MachineClasses like the Omni server,
and prints output and errors byte-for-byte the way omnictl prints them (captured from the
real v1.8.0 binary against a COSI reference server). See lab/OMNI_STANDIN.md for what is
supported and where it differs.

State directory: $OMNI_SCALE_LAB_DIR/omni (or <repo>/.lab/omni):

    server.json                      {"endpoint": ..., "service_account_key": ...}, mode 0600;
                                     absent = "Omni is down"
    resources/<Type>/<ns>/<id>.yaml  one file per resource (atomic writes)
    .lock                            fcntl.flock: commands are serialized
    lab-knobs/cluster-not-ready/<c>  set_cluster_ready(..., False): `cluster status` reports C not ready

Cluster templates: `cluster template validate|render` run the real omnictl binary (.tools/bin/omnictl,
offline, exact output); sync/diff/delete/status/export are ports of pkg/template(/operations) over the
stored resources, with Omni's MachineSet validations and cleanup controllers.

Library: init_server(state_dir, endpoint) -> key, stop_server(state_dir),
register_provider(state_dir, provider_id, ...), heartbeat(state_dir, provider_id, error=, at=),
set_cluster_ready(state_dir, cluster, ready), default_state_dir(), main(argv).
CLI:     python -m lab.omni_standin init --state-dir D --endpoint URL
         python -m lab.omni_standin stop --state-dir D
         lab/bin/omnictl ...               (the omnictl stand-in itself)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import struct
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import yaml

VERSION_TAG = "v1.8.0"
VERSION_LINE = f"omnictl version {VERSION_TAG} (lab stand-in)"
SERVICE_ACCOUNT_NAME = "omni-scale-lab"
KEY_LIFETIME_SECONDS = 365 * 24 * 3600  # omnictl serviceaccount create --ttl default

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class CmdError(Exception):
    """An error omnictl would print as `Error: <text>` and exit 1 for."""

    def __init__(self, text: str, *, unknown_command: bool = False):
        super().__init__(text)
        self.text = text
        self.unknown_command = unknown_command


class GoPanic(Exception):
    """Where the real omnictl v1.8.0 panics (exit status 2, Go stack trace on stderr)."""


class NotSupported(CmdError):
    """Something real omnictl does that the lab stand-in does not."""

    def __init__(self, what: str):
        super().__init__(f"lab stand-in: {what} is not supported by the lab stand-in "
                         "(supported: apply, get, delete, cluster template validate|render|sync|diff|"
                         "delete|status|export, cluster status|delete, kubeconfig --service-account, help, --version; "
                         "see lab/OMNI_STANDIN.md)")


# --------------------------------------------------------------------------------------
# Go-compatible texts for the errors the real client produces before/while connecting
# --------------------------------------------------------------------------------------

def unreachable_error(target: str) -> str:
    """grpc-go's text for a refused TCP connection (captured from omnictl v1.8.0)."""
    if target == "":
        return 'rpc error: code = Unavailable desc = delegating_resolver: invalid target address "": missing address'
    return ('rpc error: code = Unavailable desc = connection error: desc = '
            f'"transport: Error while dialing: dial tcp {target}: connect: connection refused"')


# Omni's signature interceptor answers every bad/unknown/expired service-account signature
# with this status (internal/pkg/auth/interceptor/signature.go: errGRPCInvalidSignature).
INVALID_SIGNATURE_ERROR = "rpc error: code = Unauthenticated desc = invalid signature"

# No key: the client falls back to the (default) omniconfig context, which has no identity,
# so it sends unsigned requests; Omni's access filter (auth.CheckGRPC WithValidSignature)
# refuses the first one (Get SysVersion) inside its validated state, which wraps errors as
# "failed to validate: <multierror>" while keeping the inner gRPC code.
MISSING_SIGNATURE_ERROR = (
    "rpc error: code = Unauthenticated desc = failed to validate: 1 error occurred:\n"
    "\t* rpc error: code = Unauthenticated desc = unauthenticated: missing valid signature\n\n")


def multierror_text(errors: list[str]) -> str:
    """hashicorp/go-multierror ListFormatFunc."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


def validation_error(errors: list[str]) -> str:
    """Omni's validated state: InvalidArgument 'failed to validate: ...' (validated/errors.go)."""
    seen: list[str] = []
    for e in errors:
        if e not in seen:
            seen.append(e)
    return "rpc error: code = InvalidArgument desc = failed to validate: " + multierror_text(seen)


def not_found_error(rtype: str, ns: str, rid: str) -> str:
    """cosi inmem ErrNotFound(Metadata{..., VersionUndefined}) as relayed by the gRPC server."""
    return f"rpc error: code = NotFound desc = resource {rtype}({ns}/{rid}@undefined) doesn't exist"


def go_base64_decode(s: str) -> bytes:
    """encoding/base64.StdEncoding.DecodeString, including its error positions."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    dmap = {c: i for i, c in enumerate(alphabet)}
    out = bytearray()
    si, n = 0, len(s)

    def corrupt(pos: int) -> CmdError:
        return CmdError(f"illegal base64 data at input byte {pos}")

    while True:
        dbuf = [0, 0, 0, 0]
        dlen = 4
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                raise corrupt(si - j)
            ch = s[si]
            si += 1
            if ch in "\r\n":
                continue
            if ch in dmap:
                dbuf[j] = dmap[ch]
                j += 1
                continue
            if ch != "=":
                raise corrupt(si - 1)
            # padding
            if j in (0, 1):
                raise corrupt(si - 1)
            if j == 2:
                while si < n and s[si] in "\r\n":
                    si += 1
                if si == n:
                    raise corrupt(n)
                if s[si] != "=":
                    raise corrupt(si - 1)
                si += 1
            while si < n and s[si] in "\r\n":
                si += 1
            if si < n:
                raise corrupt(si)
            dlen = j
            break
        val = (dbuf[0] << 18) | (dbuf[1] << 12) | (dbuf[2] << 6) | dbuf[3]
        chunk = bytes([(val >> 16) & 0xFF, (val >> 8) & 0xFF, val & 0xFF])
        out += chunk[:dlen - 1]
        if dlen < 4:
            return bytes(out)


def _go_json_error(doc: str) -> str:
    """An approximation of encoding/json's syntax error texts for the common cases."""
    stripped = doc.lstrip(" \t\r\n")
    if not stripped:
        return "unexpected end of JSON input"
    first = stripped[0]
    if first not in '{["-0123456789tfn':
        return f"invalid character {_go_quote_rune(first)} looking for beginning of value"
    try:
        json.loads(doc)
    except json.JSONDecodeError as e:
        if e.pos >= len(doc.rstrip(" \t\r\n")):
            return "unexpected end of JSON input"
        return f"invalid character {_go_quote_rune(doc[e.pos])} after top-level value" \
            if e.msg == "Extra data" else f"invalid character {_go_quote_rune(doc[e.pos])} in JSON value"
    return "invalid JSON"


def _go_quote_rune(c: str) -> str:
    if c == "'":
        return "'\\''"
    if c.isprintable():
        return f"'{c}'"
    return "'" + c.encode("unicode_escape").decode() + "'"


def _check_armored_packets(armored: str) -> None:
    """A light structural check of the armored key (the real client parses it fully)."""
    body = armored.split("-----BEGIN PGP", 1)[1].split("\n\n", 1)
    lines = body[1].split("-----END PGP", 1)[0].split("\n") if len(body) == 2 else []
    b64 = "".join(ln.strip() for ln in lines if ln.strip() and not ln.startswith("="))
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise CmdError("gopenpgp: error in reading key ring: openpgp: invalid data: armor invalid") from None
    pos = 0
    while pos < len(data):
        tag = data[pos]
        if not tag & 0x80:
            raise CmdError("gopenpgp: error in reading key ring: unexpected EOF")
        if tag & 0x40:
            if pos + 1 >= len(data):
                raise CmdError("gopenpgp: error in reading key ring: unexpected EOF")
            first = data[pos + 1]
            if first < 192:
                length, hdr = first, 2
            elif first < 224 and pos + 2 < len(data):
                length, hdr = ((first - 192) << 8) + data[pos + 2] + 192, 3
            elif first == 255 and pos + 5 < len(data):
                length, hdr = struct.unpack(">I", data[pos + 2:pos + 6])[0], 6
            else:
                return
        else:
            ltype = tag & 3
            size = {0: 1, 1: 2, 2: 4}.get(ltype)
            if size is None or pos + 1 + size > len(data):
                raise CmdError("gopenpgp: error in reading key ring: unexpected EOF")
            length = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
            hdr = 1 + size
        if pos + hdr + length > len(data):
            raise CmdError("gopenpgp: error in reading key ring: unexpected EOF")
        pos += hdr + length


def decode_service_account_key(value: str) -> dict:
    """serviceaccount.Decode: base64 -> JSON {name, pgp_key} -> armored PGP private key."""
    raw = go_base64_decode(value)
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        raise CmdError(_go_json_error(text)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        kind = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}[type(data)]
        raise CmdError(f"json: cannot unmarshal {kind} into Go value of type serviceaccount.JSON")
    for field in ("name", "pgp_key"):
        v = data.get(field)
        if v is not None and not isinstance(v, str):
            kind = {list: "array", dict: "object", bool: "bool", int: "number", float: "number"}[type(v)]
            raise CmdError(f"json: cannot unmarshal {kind} into Go struct field JSON.{field} of type string")
    armored = data.get("pgp_key") or ""
    if "-----BEGIN PGP" not in armored:
        raise CmdError("gopenpgp: error in reading key ring: openpgp: invalid argument: no armored data found")
    _check_armored_packets(armored)
    return {"name": data.get("name") or "", "pgp_key": armored, "raw": raw}


# --------------------------------------------------------------------------------------
# Service-account key generation: a real OpenPGP v4 Ed25519 key, like `omnictl
# serviceaccount create` makes (pgp.GenerateKey), so the real omnictl can parse it.
# --------------------------------------------------------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _inv(x: int) -> int:
    return pow(x, _P - 2, _P)


def _xrecover(y: int) -> int:
    xx = (y * y - 1) * _inv(_D * y * y + 1)
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * _I % _P
    return _P - x if x % 2 else x


_BY = 4 * _inv(5) % _P
_BASE = (_xrecover(_BY), _BY, 1, _xrecover(_BY) * _BY % _P)


def _pt_add(p: tuple, q: tuple) -> tuple:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _pt_mul(s: int, p: tuple) -> tuple:
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _pt_add(q, p)
        p = _pt_add(p, p)
        s >>= 1
    return q


def _pt_encode(p: tuple) -> bytes:
    zi = _inv(p[2])
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _ed_expand(seed: bytes) -> tuple[int, bytes]:
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def _ed_sign(seed: bytes, msg: bytes) -> bytes:
    a, prefix = _ed_expand(seed)
    pub = _pt_encode(_pt_mul(a, _BASE))
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % _L
    big_r = _pt_encode(_pt_mul(r, _BASE))
    h = int.from_bytes(hashlib.sha512(big_r + pub + msg).digest(), "little") % _L
    return big_r + ((r + h * a) % _L).to_bytes(32, "little")


def _mpi(b: bytes) -> bytes:
    b = b.lstrip(b"\x00")
    bits = (len(b) - 1) * 8 + b[0].bit_length() if b else 0
    return struct.pack(">H", bits) + b


def _pgp_packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + struct.pack(">I", n)
    return bytes([0xC0 | tag]) + length + body


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def generate_pgp_private_key(name: str, comment: str, email: str, lifetime: int) -> str:
    """Armored OpenPGP v4 secret key (EdDSA/Ed25519, self-certified, expiring like Omni's)."""
    seed = secrets.token_bytes(32)
    a, _ = _ed_expand(seed)
    pub = _pt_encode(_pt_mul(a, _BASE))
    created = int(time.time())
    oid = bytes.fromhex("2b06010401da470f01")  # Ed25519
    pub_body = bytes([4]) + struct.pack(">I", created) + bytes([22, len(oid)]) + oid + _mpi(b"\x40" + pub)
    fingerprint = hashlib.sha1(b"\x99" + struct.pack(">H", len(pub_body)) + pub_body).digest()
    secret_mpi = _mpi(seed)
    sec_body = pub_body + b"\x00" + secret_mpi + struct.pack(">H", sum(secret_mpi) & 0xFFFF)
    uid = f"{name} ({comment}) <{email}>".encode()

    def sub(typ: int, data: bytes) -> bytes:
        return bytes([len(data) + 1, typ]) + data

    hashed = (sub(33, b"\x04" + fingerprint) + sub(2, struct.pack(">I", created)) + sub(27, b"\x03")
              + sub(9, struct.pack(">I", lifetime)) + sub(3, struct.pack(">I", lifetime)) + sub(25, b"\x01"))
    sig_head = bytes([4, 0x13, 22, 8]) + struct.pack(">H", len(hashed)) + hashed
    h = hashlib.sha256()
    h.update(b"\x99" + struct.pack(">H", len(pub_body)) + pub_body)
    h.update(b"\xb4" + struct.pack(">I", len(uid)) + uid)
    h.update(sig_head)
    h.update(b"\x04\xff" + struct.pack(">I", len(sig_head)))
    digest = h.digest()
    sig = _ed_sign(seed, digest)
    unhashed = sub(16, fingerprint[-8:])
    sig_body = sig_head + struct.pack(">H", len(unhashed)) + unhashed + digest[:2] + _mpi(sig[:32]) + _mpi(sig[32:])
    data = _pgp_packet(5, sec_body) + _pgp_packet(13, uid) + _pgp_packet(2, sig_body)
    b64 = base64.b64encode(data).decode()
    lines = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    return ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + lines + "\n=" + crc
            + "\n-----END PGP PRIVATE KEY BLOCK-----")


def generate_service_account_key(name: str = SERVICE_ACCOUNT_NAME) -> str:
    """base64(JSON{name, pgp_key}) exactly like serviceaccount.Encode."""
    armored = generate_pgp_private_key(name, "linux/amd64", f"{name}@serviceaccount.omni.sidero.dev",
                                       KEY_LIFETIME_SECONDS)
    blob = json.dumps({"name": name, "pgp_key": armored}, separators=(",", ":"))
    return base64.b64encode(blob.encode()).decode()


# --------------------------------------------------------------------------------------
# go-yaml (go.yaml.in/yaml/v4, as used by omnictl) compatible pieces
# --------------------------------------------------------------------------------------

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_YAML_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]*)?(Z|[+-][0-9]{1,2}(:[0-9]{2})?)?)?$")
_BASE60_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_OLD_BOOLS = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
              "n", "N", "no", "No", "NO", "off", "Off", "OFF"}
_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _v in ("true", "True", "TRUE"):
    _RESOLVE_MAP[_v] = ("bool", True)
for _v in ("false", "False", "FALSE"):
    _RESOLVE_MAP[_v] = ("bool", False)
for _v in ("", "~", "null", "Null", "NULL"):
    _RESOLVE_MAP[_v] = ("null", None)
for _v in (".nan", ".NaN", ".NAN"):
    _RESOLVE_MAP[_v] = ("float", math.nan)
for _v in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"):
    _RESOLVE_MAP[_v] = ("float", math.inf)
for _v in ("-.inf", "-.Inf", "-.INF"):
    _RESOLVE_MAP[_v] = ("float", -math.inf)
_RESOLVE_MAP["<<"] = ("merge", "<<")

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _go_parse_int(s: str, bits: int = 64, unsigned: bool = False) -> int | None:
    """strconv.ParseInt/ParseUint(s, 0, bits)."""
    if not s:
        return None
    sign = 1
    body = s
    if body[0] in "+-":
        if unsigned:
            return None
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base = 10
    low = body.lower()
    if low.startswith("0x"):
        base, body = 16, body[2:]
    elif low.startswith("0o"):
        base, body = 8, body[2:]
    elif low.startswith("0b"):
        base, body = 2, body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, body = 8, body[1:]
    if not body or not re.fullmatch(r"[0-9a-fA-F]+", body):
        return None
    try:
        v = sign * int(body, base)
    except ValueError:
        return None
    if unsigned:
        return v if 0 <= v <= (2**bits - 1) else None
    return v if -(2 ** (bits - 1)) <= v <= 2 ** (bits - 1) - 1 else None


def go_resolve(s: str) -> tuple[str, Any]:
    """go-yaml's resolve("", s) for a plain scalar: (short tag, value)."""
    if s in _RESOLVE_MAP:
        return _RESOLVE_MAP[s]
    if not s:
        return ("null", None)
    hint = s[0]
    if hint in "+-0123456789":
        if hint in "0123456789" and _YAML_TIMESTAMP.match(s) and not re.fullmatch(r"[0-9]+", s):
            return ("timestamp", s)
        plain = s.replace("_", "")
        v = _go_parse_int(plain)
        if v is not None:
            return ("int", v)
        v = _go_parse_int(plain, unsigned=True)
        if v is not None:
            return ("int", v)
        if _YAML_FLOAT.match(plain):
            f = float(plain)
            if not math.isinf(f):  # strconv.ParseFloat: out of range is an error
                return ("float", f)
        for prefix, base in (("0b", 2), ("-0b", 2), ("0o", 8), ("-0o", 8)):
            if plain.startswith(prefix):
                digits = plain[len(prefix):]
                try:
                    v = int(digits, base) * (-1 if prefix.startswith("-") else 1)
                except ValueError:
                    break
                return ("int", v)
        return ("str", s)
    if hint == ".":
        try:
            return ("float", float(s)) if re.fullmatch(r"\.[0-9]+([eE][-+]?[0-9]+)?", s) else ("str", s)
        except ValueError:
            return ("str", s)
    return ("str", s)


def _is_break(c: str) -> bool:
    return c in "\r\n\x85\u2028\u2029"


def _is_blankz(c: str) -> bool:
    return c in " \t\r\n\x85\u2028\u2029\x00"


def _is_printable(c: str) -> bool:
    o = ord(c)
    return (o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF))


def _analyze_scalar(value: str) -> dict:
    """libyaml's yaml_emitter_analyze_scalar (go-yaml emitterc.go)."""
    if not value:
        return {"multiline": False, "flow_plain": False, "block_plain": True, "single": True, "block": False}
    block_ind = flow_ind = line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    if value.startswith("---") or value.startswith("..."):
        block_ind = flow_ind = True
    n = len(value)
    preceded_ws = True
    for i, ch in enumerate(value):
        followed_ws = i + 1 >= n or value[i + 1] in " \t"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif ch in "?:":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif ch == "-" and followed_ws:
                flow_ind = block_ind = True
        else:
            if ch in ",?[]{}":
                flow_ind = True
            elif ch == ":":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif ch == "#" and preceded_ws:
                flow_ind = block_ind = True
        if ch == "\t":
            tabs = True
        elif not _is_printable(ch):
            special = True
        if ch == " ":
            if i == 0:
                leading_space = True
            if i == n - 1:
                trailing_space = True
            if previous_break:
                break_space = True
            previous_space, previous_break = True, False
        elif _is_break(ch):
            line_breaks = True
            if i == 0:
                leading_break = True
            if i == n - 1:
                trailing_break = True
            if previous_space:
                space_break = True
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_ws = _is_blankz(ch)
    res = {"multiline": line_breaks, "flow_plain": True, "block_plain": True, "single": True, "block": True}
    if leading_space or leading_break or trailing_space or trailing_break:
        res["flow_plain"] = res["block_plain"] = False
    if trailing_space:
        res["block"] = False
    if break_space or space_break or tabs or special:
        res["flow_plain"] = res["block_plain"] = res["single"] = False
    if space_break or special:
        res["block"] = False
    if line_breaks:
        res["flow_plain"] = res["block_plain"] = False
    if flow_ind:
        res["flow_plain"] = False
    if block_ind:
        res["block_plain"] = False
    return res


_DQ_ESCAPES = {0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f",
               0x0D: "r", 0x1B: "e", 0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_",
               0x2028: "L", 0x2029: "P"}


def _double_quoted(value: str) -> str:
    out = ['"']
    for ch in value:
        o = ord(ch)
        if not _is_printable(ch) or _is_break(ch) or ch in '"\\':
            esc = _DQ_ESCAPES.get(o)
            if esc is not None:
                out.append("\\" + esc)
            elif o <= 0xFF:
                out.append("\\x%02X" % o)
            elif o <= 0xFFFF:
                out.append("\\u%04X" % o)
            else:
                out.append("\\U%08X" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class Scalar:
    """A scalar to emit. `style` is what the go-yaml encoder asks for: 'plain', 'double' or
    'literal'; the emitter may still fall back to quoting, exactly like libyaml."""

    __slots__ = ("text", "style")

    def __init__(self, text: str, style: str = "plain"):
        self.text, self.style = text, style


def untagged(text: str) -> Scalar:
    """A yaml.Node scalar without tag (cosi metadata, labels): plain unless multi-line."""
    return Scalar(text, "literal" if "\n" in text else "plain")


def go_string(text: str) -> Scalar:
    """A Go string field marshaled by go-yaml: quoted when it would not read back as a string."""
    if "\n" in text:
        literal = len(text) >= 2 and any(not c.isspace() for c in text)
        return Scalar(text, "literal" if literal else "double")
    tag, _ = go_resolve(text)
    if tag == "str" and not (_BASE60_FLOAT.match(text) or text in _OLD_BOOLS):
        return Scalar(text, "plain")
    return Scalar(text, "double")


def _final_style(s: Scalar, simple_key: bool) -> str:
    a = _analyze_scalar(s.text)
    style = s.style
    if simple_key and a["multiline"]:
        style = "double"
    if style == "plain":
        if not a["block_plain"]:
            style = "single"
        if not s.text and simple_key:
            style = "single"
    if style == "single" and not a["single"]:
        style = "double"
    if style == "literal" and (not a["block"] or simple_key):
        style = "double"
    return style


def _scalar_inline(s: Scalar, simple_key: bool = False) -> str:
    style = _final_style(s, simple_key)
    if style == "plain":
        return s.text
    if style == "single":
        return "'" + s.text.replace("'", "''") + "'"
    return _double_quoted(s.text)


def _literal_block(text: str, content_indent: int, best_indent: int = 4) -> tuple[str, list[str]]:
    """(header after the indicator, content lines) of a literal block scalar."""
    hint = ""
    if text and text[0] == " ":
        hint += str(best_indent)
    if not text or not _is_break(text[-1]):
        hint += "-"
    elif len(text) == 1 or _is_break(text[-2]):
        hint += "+"
    body = text[:-1] if text and text[-1] == "\n" else text
    lines = [("" if not ln else " " * content_indent + ln) for ln in body.split("\n")]
    return "|" + hint, lines


def emit_yaml(node: Any, indent_step: int = 4) -> str:
    """Block-style YAML the way go-yaml's encoder writes a document (indent 4, non-compact
    sequences, no line folding). Nodes: Scalar, dict (ordered mapping of str -> node),
    list (sequence)."""
    out: list[str] = []

    def scalar_after(prefix: str, s: Scalar, indent: int) -> None:
        style = _final_style(s, False)
        if style == "literal":
            header, lines = _literal_block(s.text, indent, indent_step)
            out.append(prefix + " " + header)
            out.extend(lines)
            return
        text = _scalar_inline(s)
        out.append(prefix + (" " + text if text else ""))

    def value(prefix: str, v: Any, indent: int, in_seq: bool) -> None:
        # prefix is "key:" or "-" already indented; nested block collections go below
        child = indent + 2 if in_seq else indent_step * ((indent + indent_step) // indent_step)
        if isinstance(v, Scalar):
            scalar_after(prefix, v, child)
        elif isinstance(v, dict):
            if not v:
                out.append(prefix + " {}")
            elif in_seq:
                mapping(v, child, first_prefix=prefix + " ")
            else:
                out.append(prefix)
                mapping(v, child)
        elif isinstance(v, list):
            if not v:
                out.append(prefix + " []")
            else:
                out.append(prefix)
                sequence(v, child)
        else:
            raise TypeError(f"cannot emit {type(v).__name__}")

    def mapping(m: dict, indent: int, first_prefix: str | None = None) -> None:
        for i, (k, v) in enumerate(m.items()):
            key = _scalar_inline(k if isinstance(k, Scalar) else untagged(str(k)), simple_key=True)
            lead = first_prefix if (i == 0 and first_prefix is not None) else " " * indent
            value(lead + key + ":", v, indent, False)

    def sequence(items: list, indent: int) -> None:
        for v in items:
            value(" " * indent + "-", v, indent, True)

    if isinstance(node, dict):
        mapping(node, 0)
    elif isinstance(node, list):
        sequence(node, 0)
    else:
        scalar_after("", node, 0)
        out[-1] = out[-1].lstrip(" ")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------
# Reading YAML input with go-yaml semantics (PyYAML only tokenizes; we resolve ourselves)
# --------------------------------------------------------------------------------------

class YamlInputError(Exception):
    pass


def compose_documents(text: str) -> list[yaml.Node | None]:
    try:
        return list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"line {mark.line + 1}: " if mark else ""
        raise YamlInputError(f"yaml: {line}{e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise YamlInputError(f"yaml: {e}") from None


def node_kind(node: yaml.Node) -> int:
    """go-yaml Kind numbers: Document 1, Sequence 2, Mapping 4, Scalar 8, Alias 16."""
    if isinstance(node, yaml.MappingNode):
        return 4
    if isinstance(node, yaml.SequenceNode):
        return 2
    return 8


def node_line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def node_col(node: yaml.Node) -> int:
    return node.start_mark.column + 1


_STR_TAG = "tag:yaml.org,2002:str"


def scalar_tag(node: yaml.ScalarNode) -> tuple[str, Any]:
    """(short tag, value) of a scalar as go-yaml resolves it (PyYAML only parsed it)."""
    if node.style in ("'", '"', "|", ">"):
        return ("str", node.value)
    pyyaml_implicit = yaml.SafeLoader.resolve(yaml.SafeLoader, yaml.ScalarNode, node.value, (True, False))
    if node.tag == _STR_TAG and pyyaml_implicit != _STR_TAG:  # an explicit !!str
        return ("str", node.value)
    return go_resolve(node.value)


def node_to_any(node: yaml.Node) -> Any:
    """yaml.Unmarshal into `any` (maps -> dict, timestamps stay strings)."""
    if isinstance(node, yaml.MappingNode):
        return {str(node_to_any(k)): node_to_any(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [node_to_any(v) for v in node.value]
    tag, value = scalar_tag(node)
    if tag in ("timestamp", "merge", "binary"):
        return node.value
    return value


def yaml_text_to_any(text: str) -> Any:
    docs = compose_documents(text)
    if not docs or docs[0] is None:
        return None
    return node_to_any(docs[0])


# --------------------------------------------------------------------------------------
# encoding/json compatible output
# --------------------------------------------------------------------------------------

def _go_json_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif o < 0x20 or ch in "<>&" or o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_json_float(f: float) -> str:
    """strconv.AppendFloat(f, 'f' or 'e', -1, 64) the way encoding/json picks between them."""
    if math.isnan(f) or math.isinf(f):
        raise CmdError(f"json: unsupported value: {'NaN' if math.isnan(f) else ('+Inf' if f > 0 else '-Inf')}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        mant, exp = repr(f).split("e")
        sign, digits = exp[0], exp[1:].rjust(2, "0")
        if sign == "-" and digits[0] == "0":  # encoding/json: e-07 -> e-7
            digits = digits[1:]
        return f"{mant}e{sign}{digits}"
    if f == int(f):
        return str(int(f))
    import decimal
    return format(decimal.Decimal(repr(f)), "f")


def go_json(v: Any, indent: str | None = "    ", level: int = 0) -> str:
    """json.Marshal / Encoder.SetIndent("", indent) output (without the trailing newline)."""
    nl = "\n" + (indent or "") * (level + 1) if indent is not None else ""
    end = "\n" + (indent or "") * level if indent is not None else ""
    sep = ": " if indent is not None else ":"
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_json_float(v)
    if isinstance(v, str):
        return _go_json_string(v)
    if isinstance(v, dict):
        if not v:
            return "{}"
        keys = sorted(v, key=lambda k: k.encode("utf-8"))
        parts = [_go_json_string(k) + sep + go_json(v[k], indent, level + 1) for k in keys]
        return "{" + nl + ("," + nl).join(parts) + end + "}"
    if isinstance(v, list):
        if not v:
            return "[]"
        parts = [go_json(x, indent, level + 1) for x in v]
        return "[" + nl + ("," + nl).join(parts) + end + "]"
    raise TypeError(type(v))


# --------------------------------------------------------------------------------------
# text/tabwriter (minwidth 0, tabwidth 0, padding 3, padchar ' ', flags 0)
# --------------------------------------------------------------------------------------

def tabwrite(text: str, padding: int = 3) -> str:
    lines = [ln.split("\t") for ln in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, c in enumerate(cells):
                parts.append(c)
                if j < len(widths):
                    parts.append(" " * (widths[j] - len(c)))
            out.append("".join(parts) + ("\n" if i + 1 < len(lines) else ""))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = 0
            while this < line1:
                if column >= len(lines[this]) - 1:
                    break
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "".join(out)


# --------------------------------------------------------------------------------------
# github.com/sergi/go-diff v1.4.0: DiffMain(a, b, false) + DiffPrettyText
# --------------------------------------------------------------------------------------

_DELETE, _EQUAL, _INSERT = -1, 0, 1


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def diff_main(t1: str, t2: str, deadline: float | None = None) -> list[tuple[int, str]]:
    if deadline is None:
        deadline = time.monotonic() + 1.0
    if t1 == t2:
        return [(_EQUAL, t1)] if t1 else []
    n = _common_prefix(t1, t2)
    prefix, t1, t2 = t1[:n], t1[n:], t2[n:]
    n = _common_suffix(t1, t2)
    suffix = t1[len(t1) - n:] if n else ""
    if n:
        t1, t2 = t1[:-n], t2[:-n]
    diffs = _diff_compute(t1, t2, deadline)
    if prefix:
        diffs.insert(0, (_EQUAL, prefix))
    if suffix:
        diffs.append((_EQUAL, suffix))
    return _cleanup_merge(diffs)


def _diff_compute(t1: str, t2: str, deadline: float) -> list[tuple[int, str]]:
    if not t1:
        return [(_INSERT, t2)]
    if not t2:
        return [(_DELETE, t1)]
    long_t, short_t = (t1, t2) if len(t1) > len(t2) else (t2, t1)
    i = long_t.find(short_t)
    if i != -1:
        op = _DELETE if len(t1) > len(t2) else _INSERT
        return [(op, long_t[:i]), (_EQUAL, short_t), (op, long_t[i + len(short_t):])]
    if len(short_t) == 1:
        return [(_DELETE, t1), (_INSERT, t2)]
    hm = _half_match(t1, t2)
    if hm:
        a1, b1, a2, b2, mid = hm
        return diff_main(a1, a2, deadline) + [(_EQUAL, mid)] + diff_main(b1, b2, deadline)
    return _bisect(t1, t2, deadline)


def _half_match(t1: str, t2: str) -> tuple | None:
    long_t, short_t = (t1, t2) if len(t1) > len(t2) else (t2, t1)
    if len(long_t) < 4 or len(short_t) * 2 < len(long_t):
        return None

    def half_i(lt: str, st: str, i: int) -> tuple | None:
        seed = lt[i:i + len(lt) // 4]
        best = ("", "", "", "", "")
        best_len = 0
        j = st.find(seed)
        while j != -1:
            p = _common_prefix(lt[i:], st[j:])
            s = _common_suffix(lt[:i], st[:j])
            if best_len < s + p:
                best = (lt[:i - s], lt[i + p:], st[:j - s], st[j + p:], st[j - s:j] + st[j:j + p])
                best_len = s + p
            j = st.find(seed, j + 1)
        if best_len * 2 < len(lt):
            return None
        return best

    hm1 = half_i(long_t, short_t, (len(long_t) + 3) // 4)
    hm2 = half_i(long_t, short_t, (len(long_t) + 1) // 2)
    if not hm1 and not hm2:
        return None
    if not hm2:
        hm = hm1
    elif not hm1:
        hm = hm2
    else:
        hm = hm1 if len(hm1[4]) > len(hm2[4]) else hm2
    if len(t1) > len(t2):
        return hm
    return (hm[2], hm[3], hm[0], hm[1], hm[4])


def _bisect(t1: str, t2: str, deadline: float) -> list[tuple[int, str]]:
    l1, l2 = len(t1), len(t2)
    max_d = (l1 + l2 + 1) // 2
    v_off, v_len = max_d, 2 * max_d
    v1 = [-1] * v_len
    v2 = [-1] * v_len
    v1[v_off + 1] = 0
    v2[v_off + 1] = 0
    delta = l1 - l2
    front = delta % 2 != 0
    k1s = k1e = k2s = k2e = 0
    for d in range(max_d):
        if d % 16 == 0 and time.monotonic() > deadline:
            break
        for k1 in range(-d + k1s, d - k1e + 1, 2):
            k1o = v_off + k1
            if k1 == -d or (k1 != d and v1[k1o - 1] < v1[k1o + 1]):
                x1 = v1[k1o + 1]
            else:
                x1 = v1[k1o - 1] + 1
            y1 = x1 - k1
            while x1 < l1 and y1 < l2 and t1[x1] == t2[y1]:
                x1 += 1
                y1 += 1
            v1[k1o] = x1
            if x1 > l1:
                k1e += 2
            elif y1 > l2:
                k1s += 2
            elif front:
                k2o = v_off + delta - k1
                if 0 <= k2o < v_len and v2[k2o] != -1:
                    if x1 >= l1 - v2[k2o]:
                        return _bisect_split(t1, t2, x1, y1, deadline)
        for k2 in range(-d + k2s, d - k2e + 1, 2):
            k2o = v_off + k2
            if k2 == -d or (k2 != d and v2[k2o - 1] < v2[k2o + 1]):
                x2 = v2[k2o + 1]
            else:
                x2 = v2[k2o - 1] + 1
            y2 = x2 - k2
            while x2 < l1 and y2 < l2 and t1[l1 - x2 - 1] == t2[l2 - y2 - 1]:
                x2 += 1
                y2 += 1
            v2[k2o] = x2
            if x2 > l1:
                k2e += 2
            elif y2 > l2:
                k2s += 2
            elif not front:
                k1o = v_off + delta - k2
                if 0 <= k1o < v_len and v1[k1o] != -1:
                    x1 = v1[k1o]
                    y1 = v_off + x1 - k1o
                    if x1 >= l1 - x2:
                        return _bisect_split(t1, t2, x1, y1, deadline)
    return [(_DELETE, t1), (_INSERT, t2)]


def _bisect_split(t1: str, t2: str, x: int, y: int, deadline: float) -> list[tuple[int, str]]:
    return diff_main(t1[:x], t2[:y], deadline) + diff_main(t1[x:], t2[y:], deadline)


def _cleanup_merge(diffs: list[tuple[int, str]]) -> list[tuple[int, str]]:
    diffs = [list(d) for d in diffs] + [[_EQUAL, ""]]
    pointer = count_del = count_ins = 0
    text_del = text_ins = ""
    while pointer < len(diffs):
        op = diffs[pointer][0]
        if op == _INSERT:
            count_ins += 1
            text_ins += diffs[pointer][1]
            pointer += 1
        elif op == _DELETE:
            count_del += 1
            text_del += diffs[pointer][1]
            pointer += 1
        else:
            if count_del + count_ins > 1:
                if count_del and count_ins:
                    n = _common_prefix(text_ins, text_del)
                    if n:
                        x = pointer - count_del - count_ins
                        if x > 0 and diffs[x - 1][0] == _EQUAL:
                            diffs[x - 1][1] += text_ins[:n]
                        else:
                            diffs.insert(0, [_EQUAL, text_ins[:n]])
                            pointer += 1
                        text_ins, text_del = text_ins[n:], text_del[n:]
                    n = _common_suffix(text_ins, text_del)
                    if n:
                        diffs[pointer][1] = text_ins[len(text_ins) - n:] + diffs[pointer][1]
                        text_ins, text_del = text_ins[:len(text_ins) - n], text_del[:len(text_del) - n]
                start = pointer - count_del - count_ins
                if count_del == 0:
                    new = [[_INSERT, text_ins]]
                elif count_ins == 0:
                    new = [[_DELETE, text_del]]
                else:
                    new = [[_DELETE, text_del], [_INSERT, text_ins]]
                diffs[start:start + count_del + count_ins] = new
                pointer = start + len(new) + 1
            elif pointer != 0 and diffs[pointer - 1][0] == _EQUAL:
                diffs[pointer - 1][1] += diffs[pointer][1]
                del diffs[pointer]
            else:
                pointer += 1
            count_ins = count_del = 0
            text_del = text_ins = ""
    if not diffs[-1][1]:
        diffs.pop()
    changes = False
    pointer = 1
    while pointer < len(diffs) - 1:
        prev, cur, nxt = diffs[pointer - 1], diffs[pointer], diffs[pointer + 1]
        if prev[0] == _EQUAL and nxt[0] == _EQUAL:
            if cur[1].endswith(prev[1]):
                cur[1] = prev[1] + cur[1][:len(cur[1]) - len(prev[1])]
                nxt[1] = prev[1] + nxt[1]
                del diffs[pointer - 1]
                changes = True
            elif cur[1].startswith(nxt[1]):
                prev[1] += nxt[1]
                cur[1] = cur[1][len(nxt[1]):] + nxt[1]
                del diffs[pointer + 1]
                changes = True
        pointer += 1
    result = [(d[0], d[1]) for d in diffs]
    if changes:
        return _cleanup_merge(result)
    return result


def diff_pretty_text(diffs: list[tuple[int, str]]) -> str:
    out = []
    for op, text in diffs:
        if op == _EQUAL:
            out.append(text)
            continue
        color = "\x1b[32m" if op == _INSERT else "\x1b[31m"
        lines = text.split("\n")
        for i, line in enumerate(lines):
            out.append(color + line + ("\x1b[0m\n" if i < len(lines) - 1 else "\x1b[0m"))
    return "".join(out)


# --------------------------------------------------------------------------------------
# Resource types the stand-in stores. Spec layouts are the Go structs of the Omni v1.8.0
# client (github.com/siderolabs/omni/client/api/omni/specs), field by field in struct
# order, named the way go-yaml names them (lower-cased Go field name). Kinds:
#   string | bool | int32 | int64 | uint32 | uint64 | enum:<go type> | list:<kind> |
#   msg:<message name> (a pointer to a nested message; null when unset)
# To add a type: add its messages here and a row to SUPPORTED_TYPES (see OMNI_STANDIN.md).
# --------------------------------------------------------------------------------------

SPEC_MESSAGES: dict[str, list[tuple[str, str, str]]] = {
    "specs.MachineClassSpec": [
        ("matchlabels", "list:string", "[]string"),
        ("autoprovision", "msg:specs.MachineClassSpec_Provision", "*specs.MachineClassSpec_Provision"),
    ],
    "specs.MachineClassSpec_Provision": [
        ("providerid", "string", "string"),
        ("kernelargs", "list:string", "[]string"),
        ("metavalues", "list:msg:specs.MetaValue", "[]*specs.MetaValue"),
        ("providerdata", "string", "string"),
        ("grpctunnel", "enum:specs.GrpcTunnelMode", "specs.GrpcTunnelMode"),
    ],
    "specs.MetaValue": [
        ("key", "uint32", "uint32"),
        ("value", "string", "string"),
    ],
    "specs.InfraProviderStatusSpec": [
        ("schema", "string", "string"),
        ("name", "string", "string"),
        ("description", "string", "string"),
        ("icon", "string", "string"),
    ],
    "specs.InfraProviderHealthStatusSpec": [
        ("lastheartbeattimestamp", "msg:timestamppb.Timestamp", "*timestamppb.Timestamp"),
        ("error", "string", "string"),
    ],
    "timestamppb.Timestamp": [
        ("seconds", "int64", "int64"),
        ("nanos", "int32", "int32"),
    ],
    "specs.ClusterSpec": [
        ("kubernetesversion", "string", "string"),
        ("talosversion", "string", "string"),
        ("features", "msg:specs.ClusterSpec_Features", "*specs.ClusterSpec_Features"),
        ("backupconfiguration", "msg:specs.EtcdBackupConf", "*specs.EtcdBackupConf"),
    ],
    "specs.ClusterSpec_Features": [
        ("enableworkloadproxy", "bool", "bool"),
        ("diskencryption", "bool", "bool"),
        ("useembeddeddiscoveryservice", "bool", "bool"),
    ],
    "specs.EtcdBackupConf": [
        ("interval", "msg:durationpb.Duration", "*durationpb.Duration"),
        ("enabled", "bool", "bool"),
    ],
    "durationpb.Duration": [
        ("seconds", "int64", "int64"),
        ("nanos", "int32", "int32"),
    ],
    "specs.MachineSetSpec": [
        ("updatestrategy", "enum:specs.MachineSetSpec_UpdateStrategy", "specs.MachineSetSpec_UpdateStrategy"),
        ("machineclass", "msg:specs.MachineSetSpec_MachineAllocation", "*specs.MachineSetSpec_MachineAllocation"),
        ("bootstrapspec", "msg:specs.MachineSetSpec_BootstrapSpec", "*specs.MachineSetSpec_BootstrapSpec"),
        ("deletestrategy", "enum:specs.MachineSetSpec_UpdateStrategy", "specs.MachineSetSpec_UpdateStrategy"),
        ("updatestrategyconfig", "msg:specs.MachineSetSpec_UpdateStrategyConfig",
         "*specs.MachineSetSpec_UpdateStrategyConfig"),
        ("deletestrategyconfig", "msg:specs.MachineSetSpec_UpdateStrategyConfig",
         "*specs.MachineSetSpec_UpdateStrategyConfig"),
        ("machineallocation", "msg:specs.MachineSetSpec_MachineAllocation", "*specs.MachineSetSpec_MachineAllocation"),
        ("upgradestrategy", "enum:specs.MachineSetSpec_UpdateStrategy", "specs.MachineSetSpec_UpdateStrategy"),
        ("upgradestrategyconfig", "msg:specs.MachineSetSpec_UpdateStrategyConfig",
         "*specs.MachineSetSpec_UpdateStrategyConfig"),
    ],
    "specs.MachineSetSpec_MachineAllocation": [
        ("name", "string", "string"),
        ("machinecount", "uint32", "uint32"),
        ("allocationtype", "enum:specs.MachineSetSpec_MachineAllocation_Type",
         "specs.MachineSetSpec_MachineAllocation_Type"),
    ],
    "specs.MachineSetSpec_BootstrapSpec": [
        ("clusteruuid", "string", "string"),
        ("snapshot", "string", "string"),
    ],
    "specs.MachineSetSpec_UpdateStrategyConfig": [
        ("rolling", "msg:specs.MachineSetSpec_RollingUpdateStrategyConfig",
         "*specs.MachineSetSpec_RollingUpdateStrategyConfig"),
    ],
    "specs.MachineSetSpec_RollingUpdateStrategyConfig": [
        ("maxparallelism", "uint32", "uint32"),
    ],
    "specs.MachineSetNodeSpec": [],
    "specs.ConfigPatchSpec": [
        ("data", "string", "string"),
        ("compresseddata", "list:uint8", "[]uint8"),
    ],
    "specs.ExtensionsConfigurationSpec": [
        ("extensions", "list:string", "[]string"),
    ],
    "specs.KernelArgsSpec": [
        ("args", "list:string", "[]string"),
    ],
    "specs.KubernetesManifestGroupSpec": [
        ("compresseddata", "list:uint8", "[]uint8"),
        ("data", "string", "string"),
        ("mode", "enum:specs.KubernetesManifestGroupSpec_Mode", "specs.KubernetesManifestGroupSpec_Mode"),
    ],
}

MACHINE_CLASS_TYPE = "MachineClasses.omni.sidero.dev"
INFRA_PROVIDER_STATUS_TYPE = "InfraProviderStatuses.omni.sidero.dev"
INFRA_PROVIDER_HEALTH_STATUS_TYPE = "InfraProviderHealthStatuses.omni.sidero.dev"
CLUSTER_TYPE = "Clusters.omni.sidero.dev"
MACHINE_SET_TYPE = "MachineSets.omni.sidero.dev"
MACHINE_SET_NODE_TYPE = "MachineSetNodes.omni.sidero.dev"
CONFIG_PATCH_TYPE = "ConfigPatches.omni.sidero.dev"
EXTENSIONS_CONFIGURATION_TYPE = "ExtensionsConfigurations.omni.sidero.dev"
KUBERNETES_MANIFEST_GROUP_TYPE = "KubernetesManifestGroups.omni.sidero.dev"
KERNEL_ARGS_TYPE = "KernelArgs.omni.sidero.dev"

# type -> spec message; server-side validations are looked up in VALIDATORS below.
SUPPORTED_TYPES: dict[str, str] = {
    MACHINE_CLASS_TYPE: "specs.MachineClassSpec",
    INFRA_PROVIDER_STATUS_TYPE: "specs.InfraProviderStatusSpec",
    INFRA_PROVIDER_HEALTH_STATUS_TYPE: "specs.InfraProviderHealthStatusSpec",
    CLUSTER_TYPE: "specs.ClusterSpec",
    MACHINE_SET_TYPE: "specs.MachineSetSpec",
    MACHINE_SET_NODE_TYPE: "specs.MachineSetNodeSpec",
    CONFIG_PATCH_TYPE: "specs.ConfigPatchSpec",
    EXTENSIONS_CONFIGURATION_TYPE: "specs.ExtensionsConfigurationSpec",
    KUBERNETES_MANIFEST_GROUP_TYPE: "specs.KubernetesManifestGroupSpec",
    KERNEL_ARGS_TYPE: "specs.KernelArgsSpec",
}

_INT_RANGES = {"uint8": (0, 255), "int32": (-(2**31), 2**31 - 1), "int64": (INT64_MIN, INT64_MAX),
               "uint32": (0, 2**32 - 1), "uint64": (0, UINT64_MAX)}


class RD:
    """A resource definition as Omni serves it (meta.ResourceDefinitionSpec after Fill)."""

    def __init__(self, rtype: str, display: str, ns: str, aliases: tuple, columns: tuple):
        self.type, self.display, self.default_ns = rtype, display, ns
        self.aliases, self.columns = aliases, columns


def _rds() -> list[RD]:
    return [RD(*row) for row in RESOURCE_DEFINITIONS]


def resolve_type(name: str) -> RD:
    """pkg/omnictl/resources.ResolveType: RD id or any alias, case-insensitively."""
    matched = []
    for rd in sorted(_rds(), key=lambda r: r.type.lower()):
        if rd.type.lower() == name.lower() or any(a.lower() == name.lower() for a in rd.aliases):
            matched.append(rd)
    if len(matched) == 1:
        return matched[0]
    if len(matched) > 1:
        return_types = " ".join(r.type.lower() for r in matched)
        raise CmdError(f'resource type "{name}" is ambiguous: [{return_types}]')
    raise CmdError(f'resource "{name}" is not registered')


def registered_types() -> set[str]:
    return {row[0] for row in RESOURCE_DEFINITIONS if not row[0].endswith(".meta.cosi.dev")}


def _require_supported(rtype: str) -> str:
    if rtype not in SUPPORTED_TYPES:
        raise NotSupported(f"resource type {rtype}")
    return SUPPORTED_TYPES[rtype]


# ---- decoding a YAML spec node into a typed spec, with go-yaml's construct errors ----

class _Construct:
    def __init__(self):
        self.errors: list[str] = []

    def error(self, node: yaml.Node, go_type: str) -> None:
        if isinstance(node, yaml.MappingNode):
            desc = "!!map"
        elif isinstance(node, yaml.SequenceNode):
            desc = "!!seq"
        else:
            tag, _ = scalar_tag(node)
            value = node.value
            value = f" `{value[:7]}...`" if len(value) > 10 else f" `{value}`"
            desc = f"!!{tag}{value}"
        self.errors.append(f"line {node_line(node)}: cannot construct {desc} into {go_type.lstrip('*')}")

    def message(self, node: yaml.Node, name: str) -> dict | None:
        if isinstance(node, yaml.ScalarNode) and scalar_tag(node)[0] == "null":
            return None
        go_type = name
        if not isinstance(node, yaml.MappingNode):
            self.error(node, go_type)
            return None
        seen: dict[tuple, yaml.Node] = {}
        duplicates = False
        for k, _ in node.value:
            ident = (node_kind(k), k.value if isinstance(k, yaml.ScalarNode) else id(k))
            if ident in seen and isinstance(k, yaml.ScalarNode):
                self.errors.append(f"line {node_line(k)}: mapping key {json.dumps(k.value)} already defined "
                                   f"at line {node_line(seen[ident])}")
                duplicates = True
            seen.setdefault(ident, k)
        if duplicates:
            return zero_message(name)
        out = zero_message(name)
        fields = {f[0]: f for f in SPEC_MESSAGES[name]}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key in fields:
                _, kind, gtype = fields[key]
                out[key] = self.value(v, kind, gtype, out[key])
        return out

    def value(self, node: yaml.Node, kind: str, go_type: str, current: Any) -> Any:
        if kind.startswith("msg:"):
            return self.message(node, kind[4:]) if not (
                isinstance(node, yaml.ScalarNode) and scalar_tag(node)[0] == "null") else None
        if kind.startswith("list:"):
            if isinstance(node, yaml.ScalarNode) and scalar_tag(node)[0] == "null":
                return []
            if not isinstance(node, yaml.SequenceNode):
                self.error(node, go_type)
                return current
            elem_kind = kind[5:]
            elem_type = go_type[2:]
            items = []
            for item in node.value:
                if elem_kind.startswith("msg:"):
                    items.append(self.message(item, elem_kind[4:]) or zero_message(elem_kind[4:]))
                else:
                    items.append(self.value(item, elem_kind, elem_type, zero_value(elem_kind)))
            return items
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, go_type)
            return current
        tag, resolved = scalar_tag(node)
        if tag == "null":
            return current
        if kind == "string":
            return node.value
        if kind == "bool":
            if tag == "bool":
                return resolved
            if node.value in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"):
                return True
            if node.value in ("n", "N", "no", "No", "NO", "off", "Off", "OFF"):
                return False
            self.error(node, go_type)
            return current
        lo, hi = _INT_RANGES["int32" if kind.startswith("enum:") else kind]
        if tag == "int" and lo <= resolved <= hi:
            return resolved
        if tag == "float" and not math.isnan(resolved) and not math.isinf(resolved) \
                and resolved == int(resolved) and lo <= int(resolved) <= hi:
            return int(resolved)
        self.error(node, go_type)
        return current


def zero_value(kind: str) -> Any:
    if kind == "string":
        return ""
    if kind == "bool":
        return False
    if kind.startswith("list:"):
        return []
    if kind.startswith("msg:"):
        return None
    return 0


def zero_message(name: str) -> dict:
    return {f: zero_value(kind) for f, kind, _ in SPEC_MESSAGES[name]}


def normalize_message(value: Any, name: str) -> dict:
    """Re-type a stored (plain Python) spec against the schema, filling zero values."""
    out = zero_message(name)
    if not isinstance(value, dict):
        return out
    for f, kind, _ in SPEC_MESSAGES[name]:
        if f in value:
            out[f] = _normalize_value(value[f], kind)
    return out


def _normalize_value(v: Any, kind: str) -> Any:
    if v is None:
        return zero_value(kind)
    if kind.startswith("msg:"):
        return normalize_message(v, kind[4:])
    if kind.startswith("list:"):
        return [_normalize_value(x, kind[5:]) if not kind[5:].startswith("msg:")
                else normalize_message(x, kind[9:]) for x in (v if isinstance(v, list) else [])]
    if kind == "string":
        return v if isinstance(v, str) else str(v)
    if kind == "bool":
        return bool(v)
    return int(v)


def spec_to_node(value: Any, name: str) -> dict:
    """The spec as go-yaml marshals the Go struct: every field, struct order."""
    out: dict = {}
    for f, kind, _ in SPEC_MESSAGES[name]:
        out[f] = _value_to_node(value[f], kind)
    return out


def _value_to_node(v: Any, kind: str) -> Any:
    if kind.startswith("msg:"):
        return Scalar("null") if v is None else spec_to_node(v, kind[4:])
    if kind.startswith("list:"):
        return [_value_to_node(x, kind[5:]) for x in v]
    if kind == "string":
        return go_string(v)
    if kind == "bool":
        return Scalar("true" if v else "false")
    return Scalar(str(v))


def spec_to_json_value(value: Any, name: str) -> dict:
    return {f: _value_to_json(value[f], kind) for f, kind, _ in SPEC_MESSAGES[name]}


def _value_to_json(v: Any, kind: str) -> Any:
    if kind.startswith("msg:"):
        return None if v is None else spec_to_json_value(v, kind[4:])
    if kind.startswith("list:"):
        return [_value_to_json(x, kind[5:]) for x in v]
    return v


# ---- resources ----

RFC3339_ZERO = "0001-01-01T00:00:00Z"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_resource(rtype: str, ns: str, rid: str, spec: dict) -> dict:
    return {"namespace": ns, "type": rtype, "id": rid, "version": None, "owner": "", "phase": "running",
            "created": RFC3339_ZERO, "updated": RFC3339_ZERO, "labels": {}, "annotations": {},
            "finalizers": [], "spec": spec}


def metadata_node(res: dict) -> dict:
    md: dict = {
        "namespace": untagged(res["namespace"]),
        "type": untagged(res["type"]),
        "id": untagged(res["id"]),
        "version": untagged("undefined" if res["version"] is None else str(res["version"])),
        "owner": untagged(res["owner"]),
        "phase": untagged(res["phase"]),
        "created": untagged(res["created"]),
        "updated": untagged(res["updated"]),
    }
    for kv in ("labels", "annotations"):
        if res[kv]:
            md[kv] = {untagged(k): untagged(res[kv][k]) for k in sorted(res[kv])}
    if res["finalizers"]:
        md["finalizers"] = [untagged(f) for f in res["finalizers"]]
    return md


def resource_yaml(res: dict, indent: int = 4) -> str:
    """resource.MarshalYAML + yaml.Marshal / yaml.NewEncoder(...).Encode (SetIndent(2) for templates)."""
    spec_name = SUPPORTED_TYPES[res["type"]]
    return emit_yaml({"metadata": metadata_node(res), "spec": spec_to_node(res["spec"], spec_name)}, indent)


def _json_of_untagged(text: str) -> Any:
    """What yaml.Unmarshal(into any) reads back from an untagged scalar omnictl printed."""
    s = untagged(text)
    if _final_style(s, False) != "plain":
        return text
    tag, value = go_resolve(text)
    if tag in ("timestamp", "merge"):
        return text
    return value


def resource_json_value(res: dict) -> dict:
    for kv in ("labels", "annotations"):
        for k in res[kv]:
            if not isinstance(_json_of_untagged(k), str):
                # yaml.Unmarshal makes that a map[any]any, which encoding/json refuses
                raise CmdError("json: unsupported type: map[interface {}]interface {}")
    md: dict = {k: _json_of_untagged(res[k] if k != "version" else
                                     ("undefined" if res["version"] is None else str(res["version"])))
                for k in ("namespace", "type", "id", "version", "owner", "phase", "created", "updated")}
    for kv in ("labels", "annotations"):
        if res[kv]:
            md[kv] = {k: _json_of_untagged(v) for k, v in res[kv].items()}
    if res["finalizers"]:
        md["finalizers"] = [_json_of_untagged(f) for f in res["finalizers"]]
    return {"metadata": md, "spec": spec_to_json_value(res["spec"], SUPPORTED_TYPES[res["type"]])}


# ---- reading resources from an apply file (protobuf.YAMLResource.UnmarshalYAML) ----

def _expect_scalar(node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise CmdError(f"{node_line(node)}:{node_col(node)} expected scalar node, got {node_kind(node)}")
    return node.value


def _parse_rfc3339(node: yaml.Node) -> str:
    text = _expect_scalar(node)
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})", text)
    if not m:
        raise CmdError(f'{node_line(node)}:{node_col(node)} failed to parse time.Time parsing time "{text}" '
                       f'as "2006-01-02T15:04:05Z07:00": cannot parse "{text}" as "2006"')
    return text[:19] + (m.group(8))


def parse_metadata(node: yaml.MappingNode) -> dict:
    md = {"namespace": "", "type": "", "id": "", "version": None, "owner": "", "phase": "running",
          "created": RFC3339_ZERO, "updated": RFC3339_ZERO, "labels": {}, "annotations": {}, "finalizers": []}
    for k, v in node.value:
        key = _expect_scalar(k)
        if key in ("namespace", "type", "id", "owner"):
            md[key] = _expect_scalar(v)
        elif key == "version":
            text = _expect_scalar(v)
            if text == "undefined":
                md["version"] = None
            else:
                why = None
                if not re.fullmatch(r"[+-]?[0-9]+", text):
                    why = "invalid syntax"
                elif not INT64_MIN <= int(text) <= INT64_MAX:
                    why = "value out of range"
                if why:
                    raise CmdError(f'{node_line(v)}:{node_col(v)} failed to parse resource.Version error parsing '
                                   f'version: strconv.ParseInt: parsing "{text}": {why}')
                md["version"] = int(text) % 2**64
        elif key == "phase":
            text = _expect_scalar(v)
            if text not in ("running", "tearingDown"):
                raise CmdError(f"{node_line(v)}:{node_col(v)} failed to parse resource.Phase unknown phase: {text}")
            md["phase"] = text
        elif key in ("created", "updated"):
            md[key] = _parse_rfc3339(v)
        elif key == "finalizers":
            if not isinstance(v, yaml.SequenceNode):
                raise CmdError(f"{node_line(v)}:{node_col(v)} expected sequence node, got {node_kind(v)}")
            md["finalizers"] = [_expect_scalar(x) for x in v.value]
        elif key in ("labels", "annotations"):
            if not isinstance(v, yaml.MappingNode):
                raise CmdError(f"{node_line(v)}:{node_col(v)} expected mapping node, got {node_kind(v)}")
            md[key] = {_expect_scalar(a): _expect_scalar(b) for a, b in v.value}
    return md


def parse_resource_document(doc: yaml.Node) -> dict:
    """One YAML document -> resource dict, or CmdError with omnictl's (go-yaml) text."""
    def fail(msg: str) -> CmdError:
        return CmdError(f"yaml: construct errors:\n  line {node_line(doc)}: {msg}")

    if not isinstance(doc, yaml.MappingNode):
        raise fail(f"expected mapping node, got {node_kind(doc)}")
    if len(doc.value) * 2 != 4:
        raise fail(f"expected 4 elements node, got {len(doc.value) * 2}")
    md_node = spec_node = None
    for k, v in doc.value:
        if not isinstance(k, yaml.ScalarNode):
            raise fail(f"expected scalar node, got {node_kind(k)}")
        if not isinstance(v, yaml.MappingNode):
            raise fail(f"expected mapping node, got {node_kind(v)}")
        if k.value == "metadata":
            md_node = v
        elif k.value == "spec":
            spec_node = v
        else:
            raise fail(f"unexpected key &{{8 0 !!str  {k.value}}}")
    if md_node is None or spec_node is None:
        raise fail("metadata or spec node is missing")
    try:
        res = parse_metadata(md_node)
    except CmdError as e:
        raise fail(f"failed to unmarshal metadata: {e.text}") from None
    if res["type"] not in registered_types():
        raise fail(f"failed to create resource: no resource is registered for the resource type {res['type']}")
    spec_name = _require_supported(res["type"])
    c = _Construct()
    res["spec"] = c.message(spec_node, spec_name) or zero_message(spec_name)
    if c.errors:
        raise fail("failed to unmarshal spec: yaml: construct errors:\n  " + "\n  ".join(c.errors))
    return res


# --------------------------------------------------------------------------------------
# Omni's server-side validations (internal/backend/runtime/omni/state_validation.go)
# --------------------------------------------------------------------------------------

LABEL_NO_MANUAL_ALLOCATION = "omni.sidero.dev/no-manual-allocation"
LABEL_IS_STATIC_INFRA_PROVIDER = "omni.sidero.dev/is-static-infra-provider"


def validate_machine_class(store: "Store", old: dict | None, res: dict) -> list[str]:
    spec = res["spec"]
    auto = spec["autoprovision"]
    # MatchLabels != nil: an empty list does not survive the protobuf round trip.
    if auto is not None and spec["matchlabels"]:
        return ["can't set both auto provision and match labels at the same time"]
    if auto is not None:
        if auto["providerid"] == "":
            return ["providerID can not be empty"]
        old_auto = old["spec"]["autoprovision"] if old else None
        if old is None or old_auto is None or old_auto["providerdata"] != auto["providerdata"]:
            err = validate_provider_data(store, auto["providerid"], auto["providerdata"])
            if err:
                return [err]
        return []
    queries = []
    for selector in spec["matchlabels"]:
        try:
            queries.append(parse_label_query(selector))
        except CmdError as e:
            return [f"failed to parse matchLabels: rpc error: code = InvalidArgument desc = {e.text}"]
    if not queries:
        return ["machine class should either have auto provision or match labels set"]
    if any(term["key"] == LABEL_NO_MANUAL_ALLOCATION for q in queries for term in q):
        return [f"selectors using label {LABEL_NO_MANUAL_ALLOCATION} are not allowed"]
    return []


def validate_provider_data(store: "Store", provider_id: str, provider_data: str) -> str | None:
    rd = resolve_type(INFRA_PROVIDER_STATUS_TYPE)
    status = store.get(INFRA_PROVIDER_STATUS_TYPE, rd.default_ns, provider_id)
    if status is None:
        return "failed to get provider: resource " \
               f"{INFRA_PROVIDER_STATUS_TYPE}({rd.default_ns}/{provider_id}@undefined) doesn't exist"
    if LABEL_IS_STATIC_INFRA_PROVIDER in status["labels"]:
        return "cannot use static provider in the auto-provisioned machine class"
    schema_text = status["spec"]["schema"]
    if not schema_text:
        return None
    try:
        schema = json.loads(schema_text)
    except ValueError as e:
        return f"failed to load json schema for provider {json.dumps(provider_id)}: {e}"
    try:
        data = yaml_text_to_any(re.sub(r"(?i)\.nan", "null", provider_data))
    except YamlInputError as e:
        return f"failed to unmarshal YAML {e}"
    if data is None:
        data = {}
    messages = JsonSchemaSubset(schema).validate(data)
    return "\n".join(f"- {m}" for m in messages) if messages else None


VALIDATORS = {MACHINE_CLASS_TYPE: validate_machine_class}


class JsonSchemaSubset:
    """The JSON-schema keywords provider schemas use, reported like Omni's
    internal/pkg/jsonschema humanized messages. Not a full JSON-schema implementation."""

    def __init__(self, schema: dict):
        self.root = schema

    def _resolve(self, s: dict) -> dict:
        seen = 0
        while isinstance(s, dict) and "$ref" in s and seen < 32:
            ref = s["$ref"]
            node: Any = self.root
            if ref.startswith("#/"):
                for part in ref[2:].split("/"):
                    node = node.get(part, {}) if isinstance(node, dict) else {}
            s = node
            seen += 1
        return s if isinstance(s, dict) else {}

    @staticmethod
    def _type_of(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "boolean"
        if isinstance(v, int):
            return "integer"
        if isinstance(v, float):
            return "integer" if v == int(v) else "number"
        if isinstance(v, str):
            return "string"
        if isinstance(v, list):
            return "array"
        return "object"

    @staticmethod
    def _num(v: Any) -> str:
        f = float(v)
        return str(int(f)) if f == int(f) and abs(f) < 1e21 else repr(f)

    def validate(self, data: Any) -> list[str]:
        out: list[str] = []
        self._check(self.root, data, [], out)
        return out

    def _field(self, path: list[str], msg: str) -> str:
        return f'config value {json.dumps("." + ".".join(path))}: {msg}'

    def _check(self, schema: Any, v: Any, path: list[str], out: list[str]) -> None:
        schema = self._resolve(schema)
        if not schema:
            return
        want = schema.get("type")
        if want is not None:
            wants = want if isinstance(want, list) else [want]
            got = self._type_of(v)
            ok = got in wants or (got == "integer" and "number" in wants)
            if not ok:
                out.append(self._field(path, "is required but was not set" if got == "null" else
                                       f"must be of type {' or '.join(wants)}, but got {got}"))
                return
        if "enum" in schema and v not in schema["enum"]:
            out.append(self._field(path, "must be one of " + ", ".join(f"'{x}'" for x in schema["enum"])))
        if "const" in schema and v != schema["const"]:
            out.append(self._field(path, f"must be {schema['const']}"))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if "minimum" in schema and v < schema["minimum"]:
                out.append(self._field(path, f"must be at least {self._num(schema['minimum'])}"))
            if "maximum" in schema and v > schema["maximum"]:
                out.append(self._field(path, f"must be at most {self._num(schema['maximum'])}"))
            if "exclusiveMinimum" in schema and v <= schema["exclusiveMinimum"]:
                out.append(self._field(path, f"must be greater than {self._num(schema['exclusiveMinimum'])}"))
            if "exclusiveMaximum" in schema and v >= schema["exclusiveMaximum"]:
                out.append(self._field(path, f"must be less than {self._num(schema['exclusiveMaximum'])}"))
        if isinstance(v, str):
            if "minLength" in schema and len(v) < schema["minLength"]:
                n = schema["minLength"]
                out.append(self._field(path, "must not be empty" if n == 1 else f"must have at least {n} characters"))
            if "maxLength" in schema and len(v) > schema["maxLength"]:
                out.append(self._field(path, f"must have at most {schema['maxLength']} characters"))
            if "pattern" in schema and not re.search(schema["pattern"], v):
                out.append(self._field(path, f"does not match the expected pattern '{schema['pattern']}'"))
        if isinstance(v, dict):
            missing = [r for r in schema.get("required", []) if r not in v]
            if missing:
                out.append("; ".join(self._field(path + [m], "is required") for m in missing))
            props = schema.get("properties", {})
            extra = [k for k in v if k not in props]
            if schema.get("additionalProperties") is False and extra:
                out.append(self._field(path, "has unknown properties: " + ", ".join(sorted(extra))))
            for k in sorted(v):
                if k in props:
                    self._check(props[k], v[k], path + [k], out)
                elif isinstance(schema.get("additionalProperties"), dict):
                    self._check(schema["additionalProperties"], v[k], path + [k], out)
        if isinstance(v, list):
            if "minItems" in schema and len(v) < schema["minItems"]:
                out.append(self._field(path, f"must have at least {schema['minItems']} items"))
            if "maxItems" in schema and len(v) > schema["maxItems"]:
                out.append(self._field(path, f"must have at most {schema['maxItems']} items"))
            if isinstance(schema.get("items"), dict):
                for i, item in enumerate(v):
                    self._check(schema["items"], item, path + [str(i)], out)


# ---- Omni label selectors (client/pkg/cosi/labels lexer + parser) ----

_SPECIAL = set("=!(),><")
_TOKENS = {")": "closedPar", "(": "openPar", ",": "comma", "!": "doesNotExist", "!=": "neq", "==": "doubleEQ",
           "=": "eq", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "notin": "notin", "in": "in"}
_OPERATORS = {"doesNotExist", "doubleEQ", "eq", "gt", "gte", "in", "lt", "lte", "neq", "notin"}


class _Lexer:
    def __init__(self, s: str):
        self.s, self.pos, self.has_operator, self.parsing_list = s, 0, False, False

    def _read(self) -> str:
        if self.pos >= len(self.s):
            return ""
        ch = self.s[self.pos]
        self.pos += 1
        return ch

    def lex(self) -> tuple[str, str]:
        ch = self._read()
        while ch and ch in " \t\r\n":
            ch = self._read()
        if ch == "":
            return "eos", ""
        if ch == '"':
            buf = []
            while True:
                c = self._read()
                if c == "":
                    return "error", "unterminated quoted string"
                if c == '"':
                    return "ident", "".join(buf)
                if c == "\\":
                    c = self._read()
                    if c == "":
                        return "error", "unterminated escape sequence in quoted string"
                buf.append(c)
        self.pos -= 1
        if ch in _SPECIAL:
            buf, tok, lit = "", None, ""
            while True:
                c = self._read()
                if c == "":
                    break
                if c in _SPECIAL:
                    buf += c
                    if buf in _TOKENS:
                        tok, lit = _TOKENS[buf], buf
                    elif tok is not None:
                        self.pos -= 1
                        break
                else:
                    self.pos -= 1
                    break
            if tok is None:
                tok, lit = "error", f"error expected: keyword found '{buf}'"
        else:
            buf = ""
            while True:
                c = self._read()
                if c == "":
                    break
                if c in _SPECIAL or (c in " \t\r\n" and not self.has_operator):
                    self.pos -= 1
                    break
                buf += c
            tok, lit = (_TOKENS[buf], buf) if buf in ("in", "notin") else ("ident", buf)
        if tok in _OPERATORS:
            self.has_operator = True
        elif tok == "openPar":
            self.parsing_list = True
        elif tok == "closedPar":
            self.parsing_list = False
        elif tok == "comma" and not self.parsing_list:
            self.has_operator = False
        return tok, lit


def parse_label_query(selector: str) -> list[dict]:
    """labels.ParseQuery: a list of terms {key, op, values, invert}; CmdError on syntax errors."""
    lx = _Lexer(selector)
    cur: list = [None]

    def look(values_ctx: bool = True) -> tuple[str, str]:
        if cur[0] is None:
            cur[0] = lx.lex()
        tok, lit = cur[0]
        if values_ctx and tok in ("in", "notin"):
            tok = "ident"
        return tok, lit

    def consume(values_ctx: bool = True) -> tuple[str, str]:
        r = look(values_ctx)
        cur[0] = None
        return r

    def parse_term() -> dict:
        tok, key = consume()
        invert = False
        if tok == "doesNotExist":
            tok, key = consume()
            invert = True
        term = {"key": key, "op": "exists", "values": [], "invert": invert}
        if tok != "ident":
            raise CmdError(f"found '{key}', expected: identifier")
        t, _ = look()
        if t in ("eos", "comma"):
            return term
        if invert:
            raise CmdError("expected EOF or ',', found ")
        tok, lit = consume(values_ctx=False)
        ops = {"notin": ("in", True), "in": ("in", False), "neq": ("equal", True), "eq": ("equal", False),
               "doubleEQ": ("equal", False), "gte": ("lt", True), "lt": ("lt", False),
               "gt": ("lte", True), "lte": ("lte", False)}
        if tok not in ops:
            raise CmdError(f"found '{lit}', expected: ==, =, !=, >=, >, in, notin, <=, <")
        term["op"], extra_invert = ops[tok]
        term["invert"] = term["invert"] or extra_invert
        if term["op"] == "in":
            tok, lit = consume()
            if tok != "openPar":
                raise CmdError(f"found '{lit}' expected: '('")
            tok, lit = look()
            if tok in ("ident", "comma"):
                values: set[str] = set()
                while True:
                    t2, l2 = consume()
                    if t2 == "ident":
                        values.add(l2)
                        t3, l3 = look()
                        if t3 == "comma":
                            continue
                        if t3 == "closedPar":
                            break
                        raise CmdError(f"found '{l3}', expected: ',' or ')'")
                    elif t2 == "comma":
                        if not values:
                            values.add("")
                        t3, _ = look()
                        if t3 == "closedPar":
                            values.add("")
                            break
                        if t3 == "comma":
                            consume()
                            values.add("")
                    else:
                        raise CmdError(f"found '{l2}', expected: ',', or identifier")
                t4, _ = consume()
                if t4 != "closedPar":
                    raise CmdError(f"found '{lit}', expected: ')'")
                term["values"] = sorted(values)
            elif tok == "closedPar":
                consume()
                term["values"] = [""]
            else:
                raise CmdError(f"found '{lit}', expected: ',', ')' or identifier")
            return term
        t, _ = look()
        if t in ("eos", "comma"):
            term["values"] = [""]
            return term
        t, lit = consume()
        if t != "ident":
            raise CmdError(f"found '{lit}', expected: identifier")
        term["values"] = [lit]
        return term

    terms: list[dict] = []
    while True:
        tok, lit = look()
        if tok in ("ident", "doesNotExist"):
            try:
                terms.append(parse_term())
            except CmdError as e:
                raise CmdError(f"unable to parse term: {e.text}") from None
            t, lit2 = consume()
            if t == "eos":
                return terms
            if t == "comma":
                t2, l2 = look()
                if t2 not in ("ident", "doesNotExist"):
                    raise CmdError(f"found '{l2}', expected: identifier after ','")
            else:
                raise CmdError(f"found '{lit2}', expected: ',' or 'end of string'")
        elif tok == "eos":
            return terms
        else:
            raise CmdError(f"found '{lit}', expected: !, identifier, or 'end of string'")


def label_query_matches(terms: list[dict], labels: dict) -> bool:
    for t in terms:
        present = t["key"] in labels
        value = labels.get(t["key"], "")
        if t["op"] == "exists":
            ok = present
        elif t["op"] == "equal":
            ok = present and value == t["values"][0]
        elif t["op"] == "in":
            ok = present and value in t["values"]
        else:
            a, b = _go_parse_int(value), _go_parse_int(t["values"][0]) if t["values"] else None
            ok = present and a is not None and b is not None and (a < b if t["op"] == "lt" else a <= b)
        if t["invert"]:
            ok = not ok
        if not ok:
            return False
    return True

# ---- generated data (see lab/OMNI_STANDIN.md, 'Regenerating the data tables') ----
# Help texts captured verbatim from the real omnictl v1.8.0 binary.
HELP_TEXTS = {
    'root': (
        'A CLI for accessing Omni API.\n'
        '\n'
        'Usage:\n'
        '  omnictl [command]\n'
        '\n'
        'Available Commands:\n'
        '  apply          Create or update resource using YAML file or directory as an input\n'
        '  audit-log      Read audit log from Omni\n'
        '  cluster        Cluster-related subcommands.\n'
        '  completion     Generate the autocompletion script for the specified shell\n'
        '  config         Manage the client configuration file (omniconfig)\n'
        '  configure      Configuration subcommands.\n'
        '  delete         Delete a specific resource by ID or all resources of the type.\n'
        '  edit           Edit Omni resources with the default editor.\n'
        '  get            Get a specific resource or list of resources.\n'
        '  help           Help about any command\n'
        '  infraprovider  Manage infra providers\n'
        '  jointoken      Manage join tokens\n'
        '  kubeconfig     Download the admin kubeconfig of a cluster\n'
        '  machine        Machine related commands.\n'
        '  machine-logs   Get logs for a machine\n'
        '  media          Manage installation media presets.\n'
        '  serviceaccount Manage service accounts\n'
        '  support        Download the support bundle for a cluster\n'
        '  talosconfig    Download an admin talosconfig.\n'
        '  user           User-related subcommands.\n'
        '\n'
        'Flags:\n'
        '      --context string             The context to be used. Defaults to the selected context in the omniconfig file.\n'
        '  -h, --help                       help for omnictl\n'
        '      --insecure-skip-tls-verify   Skip TLS verification for the Omni GRPC and HTTP API endpoints.\n'
        "      --omniconfig string          The path to the omni configuration file. Defaults to 'OMNICONFIG' env variable if set, otherwise '$HOME/.talos/omni/config'. '$XDG_CONFIG_HOME/omni/config' is Deprecated and only used as a last resort for reading existing configuration file.\n"
        "      --siderov1-keys-dir string   The path to the SideroV1 auth PGP keys directory. Defaults to 'SIDEROV1_KEYS_DIR' env variable if set, otherwise '$HOME/.talos/keys'.\n"
        '  -v, --version                    version for omnictl\n'
        '\n'
        'Use "omnictl [command] --help" for more information about a command.\n'
    ),
    'apply': (
        'Create or update resources using YAML file(s) as input.\n'
        '\n'
        '\tIf a file is specified, only that file will be processed.\n'
        '\tIf a directory is specified, all YAML files (*.yaml, *.yml) in the directory\n'
        '\tand its subdirectories will be processed recursively. Each file is processed\n'
        '\tindependently, similar to kubectl behavior.\n'
        '\n'
        'Usage:\n'
        '  omnictl apply [flags]\n'
        '\n'
        'Flags:\n'
        '  -d, --dry-run       Dry run, implies verbose\n'
        '  -f, --file string   Resource file or directory to load and apply\n'
        '  -h, --help          help for apply\n'
        '  -v, --verbose       Verbose output\n'
        '\n'
        'Global Flags:\n'
        '      --context string             The context to be used. Defaults to the selected context in the omniconfig file.\n'
        '      --insecure-skip-tls-verify   Skip TLS verification for the Omni GRPC and HTTP API endpoints.\n'
        "      --omniconfig string          The path to the omni configuration file. Defaults to 'OMNICONFIG' env variable if set, otherwise '$HOME/.talos/omni/config'. '$XDG_CONFIG_HOME/omni/config' is Deprecated and only used as a last resort for reading existing configuration file.\n"
        "      --siderov1-keys-dir string   The path to the SideroV1 auth PGP keys directory. Defaults to 'SIDEROV1_KEYS_DIR' env variable if set, otherwise '$HOME/.talos/keys'.\n"
    ),
    'get': (
        "Similar to 'kubectl get', 'omnictl get' returns a set of resources from the OS.\n"
        "To get a list of all available resource definitions, issue 'omnictl get rd'\n"
        '\n'
        'Usage:\n'
        '  omnictl get <type> [<id>] [flags]\n'
        '\n'
        'Aliases:\n'
        '  get, g\n'
        '\n'
        'Flags:\n'
        '  -h, --help                     help for get\n'
        '      --id-match-regexp string   Match resource ID against a regular expression.\n'
        '  -n, --namespace string         The resource namespace.\n'
        '  -o, --output string            Output format (json, table, yaml, jsonpath). (default "table")\n'
        "  -l, --selector string          Selector (label query) to filter on, supports '=' and '==' (e.g. -l key1=value1,key2=value2)\n"
        '  -w, --watch                    Watch the resource state.\n'
        '\n'
        'Global Flags:\n'
        '      --context string             The context to be used. Defaults to the selected context in the omniconfig file.\n'
        '      --insecure-skip-tls-verify   Skip TLS verification for the Omni GRPC and HTTP API endpoints.\n'
        "      --omniconfig string          The path to the omni configuration file. Defaults to 'OMNICONFIG' env variable if set, otherwise '$HOME/.talos/omni/config'. '$XDG_CONFIG_HOME/omni/config' is Deprecated and only used as a last resort for reading existing configuration file.\n"
        "      --siderov1-keys-dir string   The path to the SideroV1 auth PGP keys directory. Defaults to 'SIDEROV1_KEYS_DIR' env variable if set, otherwise '$HOME/.talos/keys'.\n"
    ),
    'delete': (
        "Similar to 'kubectl delete', 'omnictl delete' initiates resource deletion and waits for the operation to complete.\n"
        '\n'
        'Usage:\n'
        '  omnictl delete <type> [<id>] [flags]\n'
        '\n'
        'Aliases:\n'
        '  delete, d\n'
        '\n'
        'Flags:\n'
        '      --all                Delete all resources of the type.\n'
        '  -h, --help               help for delete\n'
        '  -n, --namespace string   The resource namespace. (default "default")\n'
        "  -l, --selector string    Selector (label query) to filter on, supports '=' and '==' (e.g. -l key1=value1,key2=value2)\n"
        '\n'
        'Global Flags:\n'
        '      --context string             The context to be used. Defaults to the selected context in the omniconfig file.\n'
        '      --insecure-skip-tls-verify   Skip TLS verification for the Omni GRPC and HTTP API endpoints.\n'
        "      --omniconfig string          The path to the omni configuration file. Defaults to 'OMNICONFIG' env variable if set, otherwise '$HOME/.talos/omni/config'. '$XDG_CONFIG_HOME/omni/config' is Deprecated and only used as a last resort for reading existing configuration file.\n"
        "      --siderov1-keys-dir string   The path to the SideroV1 auth PGP keys directory. Defaults to 'SIDEROV1_KEYS_DIR' env variable if set, otherwise '$HOME/.talos/keys'.\n"
    ),
}

# Every resource definition the real Omni v1.8.0 client registers (plus the two COSI
# meta types): (type, display type, default namespace, all aliases, print columns).
RESOURCE_DEFINITIONS = [
    ('AccessPolicies.omni.sidero.dev', 'AccessPolicy', 'default', ('accesspolicies', 'accesspolicies.omni', 'accesspolicies.omni.sidero', 'accesspolicy', 'ap', 'aps'), ()),
    ('AdvertisedEndpoints.omni.sidero.dev', 'AdvertisedEndpoint', 'virtual', ('advertisedendpoints', 'advertisedendpoints.omni', 'advertisedendpoints.omni.sidero', 'advertisedendpoint', 'ae', 'aes'), (('gRPC API URL', '{.grpcapiurl}'),)),
    ('AuthConfigs.omni.sidero.dev', 'AuthConfig', 'default', ('authconfigs', 'authconfigs.omni', 'authconfigs.omni.sidero', 'authconfig', 'ac', 'acs'), ()),
    ('BMCConfigs.omni.sidero.dev', 'BMCConfig', 'infra-provider', ('bmcconfigs', 'bmcconfigs.omni', 'bmcconfigs.omni.sidero', 'bmcconfig', 'bmcc', 'bmccs'), ()),
    ('BackupDatas.omni.sidero.dev', 'BackupData', 'default', ('backupdatas', 'backupdatas.omni', 'backupdatas.omni.sidero', 'backupdata', 'bd', 'bds'), ()),
    ('CertRefreshTicks.system.sidero.dev', 'CertRefreshTick', 'ephemeral', ('certrefreshticks', 'certrefreshticks.system', 'certrefreshticks.system.sidero', 'certrefreshtick', 'crt', 'crts'), ()),
    ('CloudPlatformConfigs.omni.sidero.dev', 'CloudPlatformConfig', 'virtual', ('cloudplatformconfigs', 'cloudplatformconfigs.omni', 'cloudplatformconfigs.omni.sidero', 'cloudplatformconfig', 'cpc', 'cpcs'), ()),
    ('ClusterBootstrapStatuses.omni.sidero.dev', 'ClusterBootstrapStatus', 'default', ('clusterbootstrapstatuses', 'clusterbootstrapstatuses.omni', 'clusterbootstrapstatuses.omni.sidero', 'clusterbootstrapstatus', 'cbs'), (('Bootstrapped', '{.bootstrapped}'),)),
    ('ClusterConfigVersions.omni.sidero.dev', 'ClusterConfigVersion', 'default', ('clusterconfigversions', 'clusterconfigversions.omni', 'clusterconfigversions.omni.sidero', 'clusterconfigversion', 'ccv', 'ccvs'), ()),
    ('ClusterDestroyStatuses.omni.sidero.dev', 'ClusterDestroyStatus', 'default', ('clusterdestroystatuses', 'clusterdestroystatuses.omni', 'clusterdestroystatuses.omni.sidero', 'clusterdestroystatus', 'cds'), (('Phase', '{.phase}'),)),
    ('ClusterDiagnostics.omni.sidero.dev', 'ClusterDiagnostic', 'default', ('clusterdiagnostics', 'clusterdiagnostics.omni', 'clusterdiagnostics.omni.sidero', 'clusterdiagnostic', 'cd', 'cds'), ()),
    ('ClusterEndpoints.omni.sidero.dev', 'ClusterEndpoint', 'default', ('clusterendpoints', 'clusterendpoints.omni', 'clusterendpoints.omni.sidero', 'clusterendpoint', 'ce', 'ces'), (('Endpoints', '{.managementaddresses}'),)),
    ('ClusterKubernetesManifestsStatuses.omni.sidero.dev', 'ClusterKubernetesManifestsStatus', 'default', ('clusterkubernetesmanifestsstatuses', 'clusterkubernetesmanifestsstatuses.omni', 'clusterkubernetesmanifestsstatuses.omni.sidero', 'clusterkubernetesmanifestsstatus', 'ckms'), (('Out Of Sync', '{.outofsync}'), ('Total Manifests', '{.total}'))),
    ('ClusterKubernetesNodes.omni.sidero.dev', 'ClusterKubernetesNode', 'default', ('clusterkubernetesnodes', 'clusterkubernetesnodes.omni', 'clusterkubernetesnodes.omni.sidero', 'clusterkubernetesnode', 'ckn', 'ckns'), (('Nodes', '{.nodes}'),)),
    ('ClusterMachineConfigPatches.omni.sidero.dev', 'ClusterMachineConfigPatch', 'default', ('clustermachineconfigpatches', 'clustermachineconfigpatches.omni', 'clustermachineconfigpatches.omni.sidero', 'clustermachineconfigpatch', 'cmcp', 'cmcps'), ()),
    ('ClusterMachineConfigStatuses.omni.sidero.dev', 'ClusterMachineConfigStatus', 'default', ('clustermachineconfigstatuses', 'clustermachineconfigstatuses.omni', 'clustermachineconfigstatuses.omni.sidero', 'clustermachineconfigstatus', 'cmcs'), ()),
    ('ClusterMachineConfigs.omni.sidero.dev', 'ClusterMachineConfig', 'default', ('clustermachineconfigs', 'clustermachineconfigs.omni', 'clustermachineconfigs.omni.sidero', 'clustermachineconfig', 'cmc', 'cmcs'), ()),
    ('ClusterMachineEncryptionKeys.omni.sidero.dev', 'ClusterMachineEncryptionKey', 'default', ('clustermachineencryptionkeys', 'clustermachineencryptionkeys.omni', 'clustermachineencryptionkeys.omni.sidero', 'clustermachineencryptionkey', 'cmek', 'cmeks'), ()),
    ('ClusterMachineIdentities.omni.sidero.dev', 'ClusterMachineIdentity', 'default', ('clustermachineidentities', 'clustermachineidentities.omni', 'clustermachineidentities.omni.sidero', 'clustermachineidentity', 'cmi', 'cmis'), (('Node Identity', '{.nodeidentity}'), ('Etcd Member ID', '{.etcdmemberid}'), ('Node Name', '{.nodename}'), ('Node IPs', '{.nodeips}'), ('Discovery Service Endpoint', '{.discoveryserviceendpoint}'))),
    ('ClusterMachineRequestStatuses.omni.sidero.dev', 'ClusterMachineRequestStatus', 'default', ('clustermachinerequeststatuses', 'clustermachinerequeststatuses.omni', 'clustermachinerequeststatuses.omni.sidero', 'clustermachinerequeststatus', 'cmrs'), (('Ready', '{.ready}'), ('Stage', '{.stage}'), ('apid', '{.apidavailable}'))),
    ('ClusterMachineSecrets.omni.sidero.dev', 'ClusterMachineSecret', 'default', ('clustermachinesecrets', 'clustermachinesecrets.omni', 'clustermachinesecrets.omni.sidero', 'clustermachinesecret', 'cms'), ()),
    ('ClusterMachineStatuses.omni.sidero.dev', 'ClusterMachineStatus', 'default', ('clustermachinestatuses', 'clustermachinestatuses.omni', 'clustermachinestatuses.omni.sidero', 'clustermachinestatus', 'cms'), (('Ready', '{.ready}'), ('Stage', '{.stage}'), ('apid', '{.apidavailable}'))),
    ('ClusterMachineTalosVersions.omni.sidero.dev', 'ClusterMachineTalosVersion', 'default', ('clustermachinetalosversions', 'clustermachinetalosversions.omni', 'clustermachinetalosversions.omni.sidero', 'clustermachinetalosversion', 'cmtv', 'cmtvs'), ()),
    ('ClusterMachines.omni.sidero.dev', 'ClusterMachine', 'default', ('clustermachines', 'clustermachines.omni', 'clustermachines.omni.sidero', 'clustermachine', 'cm', 'cms'), ()),
    ('ClusterMetrics.omni.sidero.dev', 'ClusterMetric', 'ephemeral', ('clustermetrics', 'clustermetrics.omni', 'clustermetrics.omni.sidero', 'clustermetric', 'cm', 'cms'), ()),
    ('ClusterPermissions.omni.sidero.dev', 'ClusterPermission', 'virtual', ('clusterpermissions', 'clusterpermissions.omni', 'clusterpermissions.omni.sidero', 'clusterpermission', 'cp', 'cps'), ()),
    ('ClusterSecrets.omni.sidero.dev', 'ClusterSecret', 'default', ('clustersecrets', 'clustersecrets.omni', 'clustersecrets.omni.sidero', 'clustersecret', 'cs'), ()),
    ('ClusterSecretsRotationStatuses.omni.sidero.dev', 'ClusterSecretsRotationStatus', 'default', ('clustersecretsrotationstatuses', 'clustersecretsrotationstatuses.omni', 'clustersecretsrotationstatuses.omni.sidero', 'clustersecretsrotationstatus', 'csrs'), ()),
    ('ClusterStatusMetrics.omni.sidero.dev', 'ClusterStatusMetric', 'ephemeral', ('clusterstatusmetrics', 'clusterstatusmetrics.omni', 'clusterstatusmetrics.omni.sidero', 'clusterstatusmetric', 'csm', 'csms'), ()),
    ('ClusterStatuses.omni.sidero.dev', 'ClusterStatus', 'default', ('clusterstatuses', 'clusterstatuses.omni', 'clusterstatuses.omni.sidero', 'clusterstatus', 'cs'), (('Available', '{.available}'), ('Phase', '{.phase}'), ('Machines', '{.machines.total}'), ('Healthy', '{.machines.healthy}'))),
    ('ClusterTaints.omni.sidero.dev', 'ClusterTaint', 'default', ('clustertaints', 'clustertaints.omni', 'clustertaints.omni.sidero', 'clustertaint', 'ct', 'cts'), ()),
    ('ClusterUUIDs.omni.sidero.dev', 'ClusterUUID', 'default', ('clusteruuids', 'clusteruuids.omni', 'clusteruuids.omni.sidero', 'clusteruuid', 'cuuid', 'cuuids'), (('UUID', '{.uuid}'),)),
    ('ClusterWorkloadProxyStatuses.omni.sidero.dev', 'ClusterWorkloadProxyStatus', 'default', ('clusterworkloadproxystatuses', 'clusterworkloadproxystatuses.omni', 'clusterworkloadproxystatuses.omni.sidero', 'clusterworkloadproxystatus', 'cwps'), (('Num Exposed Services', '{.numexposedservices}'),)),
    ('Clusters.omni.sidero.dev', 'Cluster', 'default', ('clusters', 'clusters.omni', 'clusters.omni.sidero', 'cluster'), (('Talos Version', '{.talosversion}'), ('Kubernetes Version', '{.kubernetesversion}'))),
    ('ConfigPatchRequests.omni.sidero.dev', 'ConfigPatchRequest', 'infra-provider', ('configpatchrequests', 'configpatchrequests.omni', 'configpatchrequests.omni.sidero', 'configpatchrequest', 'cpr', 'cprs'), ()),
    ('ConfigPatches.omni.sidero.dev', 'ConfigPatch', 'default', ('configpatches', 'configpatches.omni', 'configpatches.omni.sidero', 'configpatch', 'cp', 'cps'), ()),
    ('Configs.omni.sidero.dev', 'Config', 'default', ('configs', 'configs.omni', 'configs.omni.sidero', 'config'), ()),
    ('ConnectionParams.omni.sidero.dev', 'ConnectionParam', 'default', ('connectionparams', 'connectionparams.omni', 'connectionparams.omni.sidero', 'connectionparam', 'cp', 'cps'), (('JoinToken', '{.jointoken}'), ('API', '{.apiendpoint}'), ('Wireguard', '{.wireguardendpoint}'), ('GRPC Tunnel', '{.usegrpctunnel}'))),
    ('ControlPlaneStatuses.omni.sidero.dev', 'ControlPlaneStatus', 'default', ('controlplanestatuses', 'controlplanestatuses.omni', 'controlplanestatuses.omni.sidero', 'controlplanestatus', 'cps'), ()),
    ('CurrentUsers.omni.sidero.dev', 'CurrentUser', 'virtual', ('currentusers', 'currentusers.omni', 'currentusers.omni.sidero', 'currentuser', 'cu', 'cus'), (('Identity', '{.identity}'), ('Role', '{.role}'))),
    ('DBVersions.system.sidero.dev', 'DBVersion', 'default', ('dbversions', 'dbversions.system', 'dbversions.system.sidero', 'dbversion', 'dbv', 'dbvs'), ()),
    ('DefaultJoinTokens.omni.sidero.dev', 'DefaultJoinToken', 'default', ('defaultjointokens', 'defaultjointokens.omni', 'defaultjointokens.omni.sidero', 'defaultjointoken', 'djt', 'djts'), ()),
    ('DiscoveryAffiliateDeleteTasks.omni.sidero.dev', 'DiscoveryAffiliateDeleteTask', 'default', ('discoveryaffiliatedeletetasks', 'discoveryaffiliatedeletetasks.omni', 'discoveryaffiliatedeletetasks.omni.sidero', 'discoveryaffiliatedeletetask', 'dadt', 'dadts'), (('Cluster ID', '{.clusterid}'), ('Discovery Service Endpoint', '{.discoveryserviceendpoint}'))),
    ('EtcdAuditResults.omni.sidero.dev', 'EtcdAuditResult', 'default', ('etcdauditresults', 'etcdauditresults.omni', 'etcdauditresults.omni.sidero', 'etcdauditresult', 'ear', 'ears'), ()),
    ('EtcdBackupEncryptions.omni.sidero.dev', 'EtcdBackupEncryption', 'default', ('etcdbackupencryptions', 'etcdbackupencryptions.omni', 'etcdbackupencryptions.omni.sidero', 'etcdbackupencryption', 'ebe', 'ebes'), ()),
    ('EtcdBackupOverallStatuses.omni.sidero.dev', 'EtcdBackupOverallStatus', 'metrics', ('etcdbackupoverallstatuses', 'etcdbackupoverallstatuses.omni', 'etcdbackupoverallstatuses.omni.sidero', 'etcdbackupoverallstatus', 'ebos'), (('Configuration Name', '{.configurationname}'), ('Configuration Error', '{.configurationerror}'), ('Last Backup Status', '{.lastbackupstatus.status}'), ('Last Backup Error', '{.lastbackupstatus.error}'), ('Last Backup Time', '{.lastbackupstatus.lastbackuptime}'), ('Configuration Attempt', '{.lastbackupstatus.lastbackupattempt}'))),
    ('EtcdBackupS3Configs.omni.sidero.dev', 'EtcdBackupS3Config', 'default', ('etcdbackups3configs', 'etcdbackups3configs.omni', 'etcdbackups3configs.omni.sidero', 'etcdbackups3config', 'ebsc', 'ebscs'), (('Bucket', '{.bucket}'), ('Region', '{.region}'), ('Endpoint', '{.endpoint}'), ('Access Key ID', '{.accesskeyid}'), ('Session Token', '{.sessiontoken}'))),
    ('EtcdBackupStatuses.omni.sidero.dev', 'EtcdBackupStatus', 'metrics', ('etcdbackupstatuses', 'etcdbackupstatuses.omni', 'etcdbackupstatuses.omni.sidero', 'etcdbackupstatus', 'ebs'), (('Status', '{.status}'), ('Error', '{.error}'), ('Last Backup', '{.lastbackuptime}'), ('Last Backup Attempt', '{.lastbackupattempt}'))),
    ('EtcdBackupStoreStatuses.omni.sidero.dev', 'EtcdBackupStoreStatus', 'ephemeral', ('etcdbackupstorestatuses', 'etcdbackupstorestatuses.omni', 'etcdbackupstorestatuses.omni.sidero', 'etcdbackupstorestatus', 'ebss'), (('Configuration Name', '{.configurationname}'), ('Configuration Error', '{.configurationerror}'))),
    ('EtcdBackups.omni.sidero.dev', 'EtcdBackup', 'external', ('etcdbackups', 'etcdbackups.omni', 'etcdbackups.omni.sidero', 'etcdbackup', 'eb', 'ebs'), (('Created At', '{.createdat}'), ('Snapshot', '{.snapshot}'))),
    ('EtcdManualBackups.omni.sidero.dev', 'EtcdManualBackup', 'ephemeral', ('etcdmanualbackups', 'etcdmanualbackups.omni', 'etcdmanualbackups.omni.sidero', 'etcdmanualbackup', 'emb', 'embs'), (('Backup At', '{.backupat}'),)),
    ('EulaAcceptances.omni.sidero.dev', 'EulaAcceptance', 'default', ('eulaacceptances', 'eulaacceptances.omni', 'eulaacceptances.omni.sidero', 'eulaacceptance', 'ea', 'eas'), (('Name', '{.acceptedbyname}'), ('Email', '{.acceptedbyemail}'))),
    ('ExposedServices.omni.sidero.dev', 'ExposedService', 'default', ('exposedservices', 'exposedservices.omni', 'exposedservices.omni.sidero', 'exposedservice', 'es'), (('Port', '{.port}'), ('Label', '{.label}'), ('URL', '{.url}'), ('Error', '{.error}'), ('Has Explicit Alias', '{.hasexplicitalias}'))),
    ('ExtensionsConfigurations.omni.sidero.dev', 'ExtensionsConfiguration', 'default', ('extensionsconfigurations', 'extensionsconfigurations.omni', 'extensionsconfigurations.omni.sidero', 'extensionsconfiguration', 'ec', 'ecs'), ()),
    ('FeaturesConfigs.omni.sidero.dev', 'FeaturesConfig', 'default', ('featuresconfigs', 'featuresconfigs.omni', 'featuresconfigs.omni.sidero', 'featuresconfig', 'fc', 'fcs'), (('Workload Proxying', '{.enableworkloadproxying}'),)),
    ('GRPCTunnelConfigs.omni.sidero.dev', 'GRPCTunnelConfig', 'default', ('grpctunnelconfigs', 'grpctunnelconfigs.omni', 'grpctunnelconfigs.omni.sidero', 'grpctunnelconfig', 'grpctc', 'grpctcs'), ()),
    ('Identities.omni.sidero.dev', 'Identity', 'default', ('identities', 'identities.omni', 'identities.omni.sidero', 'identity'), ()),
    ('IdentityLastActives.omni.sidero.dev', 'IdentityLastActive', 'metrics', ('identitylastactives', 'identitylastactives.omni', 'identitylastactives.omni.sidero', 'identitylastactive', 'ila', 'ilas'), ()),
    ('IdentityStatuses.omni.sidero.dev', 'IdentityStatus', 'ephemeral', ('identitystatuses', 'identitystatuses.omni', 'identitystatuses.omni.sidero', 'identitystatus', 'is'), (('Role', '{.role}'), ('Last Active', '{.lastactive}'))),
    ('ImagePullRequests.omni.sidero.dev', 'ImagePullRequest', 'default', ('imagepullrequests', 'imagepullrequests.omni', 'imagepullrequests.omni.sidero', 'imagepullrequest', 'ipr', 'iprs'), ()),
    ('ImagePullStatuses.omni.sidero.dev', 'ImagePullStatus', 'default', ('imagepullstatuses', 'imagepullstatuses.omni', 'imagepullstatuses.omni.sidero', 'imagepullstatus', 'ips'), (('Processed', '{.processedcount}'), ('Total', '{.totalcount}'), ('Last Node', '{.lastprocessednode}'), ('Last Image', '{.lastprocessedimage}'), ('Last Error', '{.lastprocessederror}'), ('Request Version', '{.requestversion}'))),
    ('ImportedClusterSecrets.omni.sidero.dev', 'ImportedClusterSecret', 'default', ('importedclustersecrets', 'importedclustersecrets.omni', 'importedclustersecrets.omni.sidero', 'importedclustersecret', 'ics'), ()),
    ('InfraMachineBMCConfigs.omni.sidero.dev', 'InfraMachineBMCConfig', 'default', ('inframachinebmcconfigs', 'inframachinebmcconfigs.omni', 'inframachinebmcconfigs.omni.sidero', 'inframachinebmcconfig', 'imbmcc', 'imbmccs'), (('IPMI Address', '{.ipmi.address}'), ('IPMI Username', '{.ipmi.username}'))),
    ('InfraMachineConfigs.omni.sidero.dev', 'InfraMachineConfig', 'default', ('inframachineconfigs', 'inframachineconfigs.omni', 'inframachineconfigs.omni.sidero', 'inframachineconfig', 'imc', 'imcs'), (('Power State', '{.powerstate}'), ('Acceptance', '{.acceptancestatus}'), ('Extra Kernel Args', '{.extrakernelargs}'), ('Requested Reboot ID', '{.requestedrebootid}'), ('Cordoned', '{.cordoned}'))),
    ('InfraMachineRegistrations.omni.sidero.dev', 'InfraMachineRegistration', 'infra-provider', ('inframachineregistrations', 'inframachineregistrations.omni', 'inframachineregistrations.omni.sidero', 'inframachineregistration', 'imr', 'imrs'), ()),
    ('InfraMachineStatuses.omni.sidero.dev', 'InfraMachineStatus', 'infra-provider', ('inframachinestatuses', 'inframachinestatuses.omni', 'inframachinestatuses.omni.sidero', 'inframachinestatus', 'ims'), (('Power State', '{.powerstate}'), ('Ready to Use', '{.readytouse}'), ('Last Reboot ID', '{.lastrebootid}'), ('Last Reboot At', '{.lastreboottimestamp}'), ('Installed', '{.installed}'))),
    ('InfraMachines.omni.sidero.dev', 'InfraMachine', 'infra-provider', ('inframachines', 'inframachines.omni', 'inframachines.omni.sidero', 'inframachine', 'im', 'ims'), (('Preferred Power State', '{.preferredpowerstate}'), ('Acceptance', '{.acceptancestatus}'), ('Cluster Talos Version', '{.clustertalosversion}'), ('Extensions', '{.extensions}'), ('Wipe ID', '{.wipeid}'), ('Extra Kernel Args', '{.extrakernelargs}'), ('Requested Reboot ID', '{.requestedrebootid}'), ('Cordoned', '{.cordoned}'), ('Install Event ID', '{.installeventid}'))),
    ('InfraProviderCombinedStatuses.omni.sidero.dev', 'InfraProviderCombinedStatus', 'ephemeral', ('infraprovidercombinedstatuses', 'infraprovidercombinedstatuses.omni', 'infraprovidercombinedstatuses.omni.sidero', 'infraprovidercombinedstatus', 'ipcs'), (('Name', '{.name}'), ('Description', '{.description}'))),
    ('InfraProviderHealthStatuses.omni.sidero.dev', 'InfraProviderHealthStatus', 'infra-provider-ephemeral', ('infraproviderhealthstatuses', 'infraproviderhealthstatuses.omni', 'infraproviderhealthstatuses.omni.sidero', 'infraproviderhealthstatus', 'iphs'), (('Last Heartbeat Timestamp', '{.lastheartbeattimestamp}'), ('Error', '{.error}'))),
    ('InfraProviderStatuses.omni.sidero.dev', 'InfraProviderStatus', 'infra-provider', ('infraproviderstatuses', 'infraproviderstatuses.omni', 'infraproviderstatuses.omni.sidero', 'infraproviderstatus', 'ips'), (('Name', '{.name}'), ('Description', '{.description}'))),
    ('InfraProviders.omni.sidero.dev', 'InfraProvider', 'infra-provider', ('infraproviders', 'infraproviders.omni', 'infraproviders.omni.sidero', 'infraprovider', 'ip', 'ips'), ()),
    ('InstallationMediaConfigs.omni.sidero.dev', 'InstallationMediaConfig', 'default', ('installationmediaconfigs', 'installationmediaconfigs.omni', 'installationmediaconfigs.omni.sidero', 'installationmediaconfig', 'imc', 'imcs'), ()),
    ('InstallationMedias.omni.sidero.dev', 'InstallationMedia', 'ephemeral', ('installationmedias', 'installationmedias.omni', 'installationmedias.omni.sidero', 'installationmedia', 'im', 'ims'), ()),
    ('JWTPublicKeys.system.sidero.dev', 'JWTPublicKey', 'oidc', ('jwtpublickeys', 'jwtpublickeys.system', 'jwtpublickeys.system.sidero', 'jwtpublickey', 'jwtpk', 'jwtpks'), ()),
    ('JoinTokenStatuses.omni.sidero.dev', 'JoinTokenStatus', 'default', ('jointokenstatuses', 'jointokenstatuses.omni', 'jointokenstatuses.omni.sidero', 'jointokenstatus', 'jts'), ()),
    ('JoinTokenUsages.omni.sidero.dev', 'JoinTokenUsage', 'default', ('jointokenusages', 'jointokenusages.omni', 'jointokenusages.omni.sidero', 'jointokenusage', 'jtu', 'jtus'), ()),
    ('JoinTokens.omni.sidero.dev', 'JoinToken', 'default', ('jointokens', 'jointokens.omni', 'jointokens.omni.sidero', 'jointoken', 'jt', 'jts'), ()),
    ('KernelArgs.omni.sidero.dev', 'KernelArg', 'default', ('kernelargs', 'kernelargs.omni', 'kernelargs.omni.sidero', 'kernelarg', 'ka', 'kas'), (('Args', '{.args}'),)),
    ('KernelArgsStatuses.omni.sidero.dev', 'KernelArgsStatus', 'default', ('kernelargsstatuses', 'kernelargsstatuses.omni', 'kernelargsstatuses.omni.sidero', 'kernelargsstatus', 'kas'), (('Args', '{.args}'), ('Current Args', '{.currentargs}'), ('Unmet Conditions', '{.unmetconditions}'), ('Current Cmdline', '{.currentcmdline}'))),
    ('Kubeconfigs.omni.sidero.dev', 'Kubeconfig', 'default', ('kubeconfigs', 'kubeconfigs.omni', 'kubeconfigs.omni.sidero', 'kubeconfig'), ()),
    ('KubernetesManifestGroups.omni.sidero.dev', 'KubernetesManifestGroup', 'default', ('kubernetesmanifestgroups', 'kubernetesmanifestgroups.omni', 'kubernetesmanifestgroups.omni.sidero', 'kubernetesmanifestgroup', 'kmg', 'kmgs'), ()),
    ('KubernetesNodeAuditResults.omni.sidero.dev', 'KubernetesNodeAuditResult', 'default', ('kubernetesnodeauditresults', 'kubernetesnodeauditresults.omni', 'kubernetesnodeauditresults.omni.sidero', 'kubernetesnodeauditresult', 'knar', 'knars'), (('Nodes', '{.nodes}'),)),
    ('KubernetesResources.omni.sidero.dev', 'KubernetesResource', 'default', ('kubernetesresources', 'kubernetesresources.omni', 'kubernetesresources.omni.sidero', 'kubernetesresource', 'kr', 'krs'), ()),
    ('KubernetesStatuses.omni.sidero.dev', 'KubernetesStatus', 'default', ('kubernetesstatuses', 'kubernetesstatuses.omni', 'kubernetesstatuses.omni.sidero', 'kubernetesstatus', 'ks'), ()),
    ('KubernetesUpgradeManifestStatuses.omni.sidero.dev', 'KubernetesUpgradeManifestStatus', 'default', ('kubernetesupgrademanifeststatuses', 'kubernetesupgrademanifeststatuses.omni', 'kubernetesupgrademanifeststatuses.omni.sidero', 'kubernetesupgrademanifeststatus', 'kums'), ()),
    ('KubernetesUpgradeStatuses.omni.sidero.dev', 'KubernetesUpgradeStatus', 'default', ('kubernetesupgradestatuses', 'kubernetesupgradestatuses.omni', 'kubernetesupgradestatuses.omni.sidero', 'kubernetesupgradestatus', 'kus'), ()),
    ('KubernetesUsages.omni.sidero.dev', 'KubernetesUsage', 'virtual', ('kubernetesusages', 'kubernetesusages.omni', 'kubernetesusages.omni.sidero', 'kubernetesusage', 'ku', 'kus'), ()),
    ('KubernetesVersions.omni.sidero.dev', 'KubernetesVersion', 'default', ('kubernetesversions', 'kubernetesversions.omni', 'kubernetesversions.omni.sidero', 'kubernetesversion', 'kv', 'kvs'), ()),
    ('LabelsCompletions.omni.sidero.dev', 'LabelsCompletion', 'virtual', ('labelscompletions', 'labelscompletions.omni', 'labelscompletions.omni.sidero', 'labelscompletion', 'lc', 'lcs'), ()),
    ('LinkStatuses.omni.sidero.dev', 'LinkStatus', 'ephemeral', ('linkstatuses', 'linkstatuses.omni', 'linkstatuses.omni.sidero', 'linkstatus', 'ls'), ()),
    ('Links.omni.sidero.dev', 'Link', 'default', ('links', 'links.omni', 'links.omni.sidero', 'link'), (('Connected', '{.connected}'), ('LastEndpoint', '{.lastendpoint}'))),
    ('LoadBalancerConfigs.omni.sidero.dev', 'LoadBalancerConfig', 'default', ('loadbalancerconfigs', 'loadbalancerconfigs.omni', 'loadbalancerconfigs.omni.sidero', 'loadbalancerconfig', 'lbc', 'lbcs'), ()),
    ('LoadBalancerStatuses.omni.sidero.dev', 'LoadBalancerStatus', 'default', ('loadbalancerstatuses', 'loadbalancerstatuses.omni', 'loadbalancerstatuses.omni.sidero', 'loadbalancerstatus', 'lbs'), (('Healthy', '{.healthy}'),)),
    ('MachineClasses.omni.sidero.dev', 'MachineClass', 'default', ('machineclasses', 'machineclasses.omni', 'machineclasses.omni.sidero', 'machineclass', 'mc', 'mcs'), ()),
    ('MachineConfigDiffs.omni.sidero.dev', 'MachineConfigDiff', 'default', ('machineconfigdiffs', 'machineconfigdiffs.omni', 'machineconfigdiffs.omni.sidero', 'machineconfigdiff', 'mcd', 'mcds'), ()),
    ('MachineConfigGenOptions.omni.sidero.dev', 'MachineConfigGenOption', 'default', ('machineconfiggenoptions', 'machineconfiggenoptions.omni', 'machineconfiggenoptions.omni.sidero', 'machineconfiggenoption', 'mcgo', 'mcgos'), ()),
    ('MachineExtensions.omni.sidero.dev', 'MachineExtension', 'default', ('machineextensions', 'machineextensions.omni', 'machineextensions.omni.sidero', 'machineextension', 'me', 'mes'), (('Extensions', '{.extensions}'),)),
    ('MachineExtensionsStatuses.omni.sidero.dev', 'MachineExtensionsStatus', 'default', ('machineextensionsstatuses', 'machineextensionsstatuses.omni', 'machineextensionsstatuses.omni.sidero', 'machineextensionsstatus', 'mes'), (('Extensions', '{.extensions}'),)),
    ('MachineJoinConfigs.omni.sidero.dev', 'MachineJoinConfig', 'default', ('machinejoinconfigs', 'machinejoinconfigs.omni', 'machinejoinconfigs.omni.sidero', 'machinejoinconfig', 'mjc', 'mjcs'), ()),
    ('MachineLabels.omni.sidero.dev', 'MachineLabel', 'default', ('machinelabels', 'machinelabels.omni', 'machinelabels.omni.sidero', 'machinelabel', 'ml', 'mls'), ()),
    ('MachinePendingUpdates.omni.sidero.dev', 'MachinePendingUpdate', 'default', ('machinependingupdates', 'machinependingupdates.omni', 'machinependingupdates.omni.sidero', 'machinependingupdate', 'mpu', 'mpus'), ()),
    ('MachineRequestSetStatuses.omni.sidero.dev', 'MachineRequestSetStatus', 'default', ('machinerequestsetstatuses', 'machinerequestsetstatuses.omni', 'machinerequestsetstatuses.omni.sidero', 'machinerequestsetstatus', 'mrss'), ()),
    ('MachineRequestSets.omni.sidero.dev', 'MachineRequestSet', 'default', ('machinerequestsets', 'machinerequestsets.omni', 'machinerequestsets.omni.sidero', 'machinerequestset', 'mrs'), (('ProviderID', '{.providerid}'), ('MachineCount', '{.machinecount}'))),
    ('MachineRequestStatuses.omni.sidero.dev', 'MachineRequestStatus', 'infra-provider', ('machinerequeststatuses', 'machinerequeststatuses.omni', 'machinerequeststatuses.omni.sidero', 'machinerequeststatus', 'mrs'), ()),
    ('MachineRequests.omni.sidero.dev', 'MachineRequest', 'infra-provider', ('machinerequests', 'machinerequests.omni', 'machinerequests.omni.sidero', 'machinerequest', 'mr', 'mrs'), (('Talos Version', '{.talosversion}'), ('Schematic ID', '{.schematicid}'))),
    ('MachineSetConfigStatuses.omni.sidero.dev', 'MachineSetConfigStatus', 'default', ('machinesetconfigstatuses', 'machinesetconfigstatuses.omni', 'machinesetconfigstatuses.omni.sidero', 'machinesetconfigstatus', 'mscs'), ()),
    ('MachineSetDestroyStatuses.omni.sidero.dev', 'MachineSetDestroyStatus', 'ephemeral', ('machinesetdestroystatuses', 'machinesetdestroystatuses.omni', 'machinesetdestroystatuses.omni.sidero', 'machinesetdestroystatus', 'msds'), (('Phase', '{.phase}'),)),
    ('MachineSetNodes.omni.sidero.dev', 'MachineSetNode', 'default', ('machinesetnodes', 'machinesetnodes.omni', 'machinesetnodes.omni.sidero', 'machinesetnode', 'msn', 'msns'), ()),
    ('MachineSetStatuses.omni.sidero.dev', 'MachineSetStatus', 'default', ('machinesetstatuses', 'machinesetstatuses.omni', 'machinesetstatuses.omni.sidero', 'machinesetstatus', 'mss'), ()),
    ('MachineSets.omni.sidero.dev', 'MachineSet', 'default', ('machinesets', 'machinesets.omni', 'machinesets.omni.sidero', 'machineset', 'ms'), ()),
    ('MachineStatusLabels.omni.sidero.dev', 'MachineStatusLabel', 'default', ('machinestatuslabels', 'machinestatuslabels.omni', 'machinestatuslabels.omni.sidero', 'machinestatuslabel', 'msl', 'msls'), ()),
    ('MachineStatusLinks.omni.sidero.dev', 'MachineStatusLink', 'metrics', ('machinestatuslinks', 'machinestatuslinks.omni', 'machinestatuslinks.omni.sidero', 'machinestatuslink', 'msl', 'msls'), (('Bytes Received', '{.siderolinkcounter.bytesreceived}'), ('Bytes Sent', '{.siderolinkcounter.bytessent}'), ('Last Alive', '{.siderolinkcounter.lastalive}'))),
    ('MachineStatusMetrics.omni.sidero.dev', 'MachineStatusMetric', 'ephemeral', ('machinestatusmetrics', 'machinestatusmetrics.omni', 'machinestatusmetrics.omni.sidero', 'machinestatusmetric', 'msm', 'msms'), ()),
    ('MachineStatusSnapshots.omni.sidero.dev', 'MachineStatusSnapshot', 'default', ('machinestatussnapshots', 'machinestatussnapshots.omni', 'machinestatussnapshots.omni.sidero', 'machinestatussnapshot', 'mss'), ()),
    ('MachineStatuses.omni.sidero.dev', 'MachineStatus', 'default', ('machinestatuses', 'machinestatuses.omni', 'machinestatuses.omni.sidero', 'machinestatus', 'ms'), ()),
    ('MachineUpgradeStatuses.omni.sidero.dev', 'MachineUpgradeStatus', 'default', ('machineupgradestatuses', 'machineupgradestatuses.omni', 'machineupgradestatuses.omni.sidero', 'machineupgradestatus', 'mus'), (('Schematic ID', '{.schematicid}'), ('Talos Version', '{.talosversion}'), ('Phase', '{.phase}'), ('Status', '{.status}'), ('Error', '{.error}'))),
    ('Machines.omni.sidero.dev', 'Machine', 'default', ('machines', 'machines.omni', 'machines.omni.sidero', 'machine'), (('Address', '{.managementaddress}'), ('Connected', '{.connected}'), ('Reboots', '{.rebootcount}'))),
    ('MaintenanceConfigStatuses.omni.sidero.dev', 'MaintenanceConfigStatus', 'default', ('maintenanceconfigstatuses', 'maintenanceconfigstatuses.omni', 'maintenanceconfigstatuses.omni.sidero', 'maintenanceconfigstatus', 'mcs'), (('Public Key At Last Apply', '{.publickeyatlastapply}'),)),
    ('MetalPlatformConfigs.omni.sidero.dev', 'MetalPlatformConfig', 'virtual', ('metalplatformconfigs', 'metalplatformconfigs.omni', 'metalplatformconfigs.omni.sidero', 'metalplatformconfig', 'mpc', 'mpcs'), ()),
    ('Namespaces.meta.cosi.dev', 'Namespace', 'meta', ('namespaces', 'namespaces.meta', 'namespaces.meta.cosi', 'ns', 'namespace'), ()),
    ('NodeForceDestroyRequests.omni.sidero.dev', 'NodeForceDestroyRequest', 'default', ('nodeforcedestroyrequests', 'nodeforcedestroyrequests.omni', 'nodeforcedestroyrequests.omni.sidero', 'nodeforcedestroyrequest', 'nfdr', 'nfdrs'), ()),
    ('NodeUniqueTokenStatuses.omni.sidero.dev', 'NodeUniqueTokenStatus', 'default', ('nodeuniquetokenstatuses', 'nodeuniquetokenstatuses.omni', 'nodeuniquetokenstatuses.omni.sidero', 'nodeuniquetokenstatus', 'nuts'), ()),
    ('NodeUniqueTokens.omni.sidero.dev', 'NodeUniqueToken', 'default', ('nodeuniquetokens', 'nodeuniquetokens.omni', 'nodeuniquetokens.omni.sidero', 'nodeuniquetoken', 'nut', 'nuts'), ()),
    ('Notifications.omni.sidero.dev', 'Notification', 'ephemeral', ('notifications', 'notifications.omni', 'notifications.omni.sidero', 'notification'), ()),
    ('OngoingTasks.omni.sidero.dev', 'OngoingTask', 'ephemeral', ('ongoingtasks', 'ongoingtasks.omni', 'ongoingtasks.omni.sidero', 'ongoingtask', 'ot', 'ots'), (('Title', '{.title}'),)),
    ('PendingMachineStatuses.omni.sidero.dev', 'PendingMachineStatus', 'ephemeral', ('pendingmachinestatuses', 'pendingmachinestatuses.omni', 'pendingmachinestatuses.omni.sidero', 'pendingmachinestatus', 'pms'), ()),
    ('PendingMachines.omni.sidero.dev', 'PendingMachine', 'ephemeral', ('pendingmachines', 'pendingmachines.omni', 'pendingmachines.omni.sidero', 'pendingmachine', 'pm', 'pms'), ()),
    ('Permissions.omni.sidero.dev', 'Permission', 'virtual', ('permissions', 'permissions.omni', 'permissions.omni.sidero', 'permission'), ()),
    ('ProviderJoinConfigs.omni.sidero.dev', 'ProviderJoinConfig', 'infra-provider', ('providerjoinconfigs', 'providerjoinconfigs.omni', 'providerjoinconfigs.omni.sidero', 'providerjoinconfig', 'pjc', 'pjcs'), ()),
    ('PublicKeyLastActives.omni.sidero.dev', 'PublicKeyLastActive', 'metrics', ('publickeylastactives', 'publickeylastactives.omni', 'publickeylastactives.omni.sidero', 'publickeylastactive', 'pkla', 'pklas'), ()),
    ('PublicKeys.omni.sidero.dev', 'PublicKey', 'default', ('publickeys', 'publickeys.omni', 'publickeys.omni.sidero', 'publickey', 'pk', 'pks'), ()),
    ('Quirks.omni.sidero.dev', 'Quirk', 'virtual', ('quirks', 'quirks.omni', 'quirks.omni.sidero', 'quirk'), ()),
    ('RedactedClusterMachineConfigs.omni.sidero.dev', 'RedactedClusterMachineConfig', 'default', ('redactedclustermachineconfigs', 'redactedclustermachineconfigs.omni', 'redactedclustermachineconfigs.omni.sidero', 'redactedclustermachineconfig', 'rcmc', 'rcmcs'), ()),
    ('ResourceDefinitions.meta.cosi.dev', 'ResourceDefinition', 'meta', ('resourcedefinitions', 'resourcedefinitions.meta', 'resourcedefinitions.meta.cosi', 'api-resources', 'resourcedefinition', 'rd', 'rds'), (('Aliases', '{.aliases[:]}'),)),
    ('RotateKubernetesCAs.omni.sidero.dev', 'RotateKubernetesCA', 'default', ('rotatekubernetescas', 'rotatekubernetescas.omni', 'rotatekubernetescas.omni.sidero', 'rotatekubernetesca', 'rkca', 'rkcas'), ()),
    ('RotateTalosCAs.omni.sidero.dev', 'RotateTalosCA', 'default', ('rotatetaloscas', 'rotatetaloscas.omni', 'rotatetaloscas.omni.sidero', 'rotatetalosca', 'rtca', 'rtcas'), ()),
    ('SAMLAssertions.omni.sidero.dev', 'SAMLAssertion', 'default', ('samlassertions', 'samlassertions.omni', 'samlassertions.omni.sidero', 'samlassertion', 'samla', 'samlas'), ()),
    ('SAMLLabelRules.omni.sidero.dev', 'SAMLLabelRule', 'default', ('samllabelrules', 'samllabelrules.omni', 'samllabelrules.omni.sidero', 'samllabelrule', 'samllr', 'samllrs'), (('Role On Registration', '{.assignroleonregistration}'), ('Match Labels', '{.matchlabels}'))),
    ('SBCConfigs.omni.sidero.dev', 'SBCConfig', 'virtual', ('sbcconfigs', 'sbcconfigs.omni', 'sbcconfigs.omni.sidero', 'sbcconfig', 'sbcc', 'sbccs'), ()),
    ('SchematicConfigurations.omni.sidero.dev', 'SchematicConfiguration', 'default', ('schematicconfigurations', 'schematicconfigurations.omni', 'schematicconfigurations.omni.sidero', 'schematicconfiguration', 'sc', 'scs'), (('Schematic ID', '{.schematicid}'), ('Talos Version', '{.talosversion}'))),
    ('Schematics.omni.sidero.dev', 'Schematic', 'ephemeral', ('schematics', 'schematics.omni', 'schematics.omni.sidero', 'schematic'), ()),
    ('SecretRotations.omni.sidero.dev', 'SecretRotation', 'default', ('secretrotations', 'secretrotations.omni', 'secretrotations.omni.sidero', 'secretrotation', 'sr', 'srs'), ()),
    ('ServiceAccountStatuses.omni.sidero.dev', 'ServiceAccountStatus', 'ephemeral', ('serviceaccountstatuses', 'serviceaccountstatuses.omni', 'serviceaccountstatuses.omni.sidero', 'serviceaccountstatus', 'sas'), ()),
    ('SiderolinkAPIConfigs.omni.sidero.dev', 'SiderolinkAPIConfig', 'default', ('siderolinkapiconfigs', 'siderolinkapiconfigs.omni', 'siderolinkapiconfigs.omni.sidero', 'siderolinkapiconfig', 'sapic', 'sapics'), ()),
    ('Supports.omni.sidero.dev', 'Support', 'virtual', ('supports', 'supports.omni', 'supports.omni.sidero', 'support'), (('SupportEnabled', '{.supportenabled}'),)),
    ('SysVersions.system.sidero.dev', 'SysVersion', 'ephemeral', ('sysversions', 'sysversions.system', 'sysversions.system.sidero', 'sysversion', 'sv', 'svs'), ()),
    ('TalosConfigs.omni.sidero.dev', 'TalosConfig', 'default', ('talosconfigs', 'talosconfigs.omni', 'talosconfigs.omni.sidero', 'talosconfig', 'tc', 'tcs'), ()),
    ('TalosExtensions.omni.sidero.dev', 'TalosExtension', 'default', ('talosextensions', 'talosextensions.omni', 'talosextensions.omni.sidero', 'talosextension', 'te', 'tes'), ()),
    ('TalosUpgradeStatuses.omni.sidero.dev', 'TalosUpgradeStatus', 'default', ('talosupgradestatuses', 'talosupgradestatuses.omni', 'talosupgradestatuses.omni.sidero', 'talosupgradestatus', 'tus'), ()),
    ('TalosVersions.omni.sidero.dev', 'TalosVersion', 'default', ('talosversions', 'talosversions.omni', 'talosversions.omni.sidero', 'talosversion', 'tv', 'tvs'), (('Kubernetes Versions', '{.compatiblekubernetesversions}'),)),
    ('UpgradeRollouts.omni.sidero.dev', 'UpgradeRollout', 'ephemeral', ('upgraderollouts', 'upgraderollouts.omni', 'upgraderollouts.omni.sidero', 'upgraderollout', 'ur', 'urs'), ()),
    ('Users.omni.sidero.dev', 'User', 'default', ('users', 'users.omni', 'users.omni.sidero', 'user'), ()),
]


# --------------------------------------------------------------------------------------
# State directory, server record, resource store
# --------------------------------------------------------------------------------------

def default_state_dir() -> Path:
    base = os.environ.get("OMNI_SCALE_LAB_DIR")
    return (Path(base) if base else PROJECT_ROOT / ".lab") / "omni"


@contextlib.contextmanager
def locked(state_dir: Path, exclusive: bool = True) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _atomic_write(path: Path, data: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _path_component(s: str) -> str:
    """Names are used as-is when they are safe file names; anything else is %-escaped
    (and marked by a leading '%'), so every namespace/id round-trips."""
    if re.fullmatch(r"[A-Za-z0-9_@+=,~-][A-Za-z0-9._@+=,~:-]*", s) and not s.endswith(".tmp"):
        return s
    return "%" + urllib.parse.quote(s, safe="")


class Store:
    def __init__(self, state_dir: Path):
        self.root = state_dir / "resources"

    def _dir(self, rtype: str, ns: str) -> Path:
        return self.root / rtype / _path_component(ns)

    def path(self, rtype: str, ns: str, rid: str) -> Path:
        return self._dir(rtype, ns) / (_path_component(rid) + ".yaml")

    def _load(self, path: Path) -> dict:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        md = doc.get("metadata") or {}
        rtype = md.get("type", "")
        res = new_resource(rtype, str(md.get("namespace", "")), str(md.get("id", "")),
                           normalize_message(doc.get("spec"), SUPPORTED_TYPES[rtype]))
        res["version"] = md.get("version")
        for k in ("owner", "phase", "created", "updated"):
            if md.get(k) is not None:
                res[k] = str(md[k])
        for k in ("labels", "annotations"):
            res[k] = {str(a): "" if b is None else str(b) for a, b in (md.get(k) or {}).items()}
        res["finalizers"] = [str(f) for f in md.get("finalizers") or []]
        return res

    def _load_checked(self, path: Path) -> dict:
        try:
            return self._load(path)
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
            raise CmdError(f"lab stand-in: cannot read the stored resource {path}: {e}") from None

    def get(self, rtype: str, ns: str, rid: str) -> dict | None:
        path = self.path(rtype, ns, rid)
        return self._load_checked(path) if path.is_file() else None

    def list(self, rtype: str, ns: str) -> list[dict]:
        d = self._dir(rtype, ns)
        if not d.is_dir():
            return []
        items = [self._load_checked(p) for p in d.iterdir() if p.suffix == ".yaml" and not p.name.startswith(".")]
        return sorted(items, key=lambda r: r["id"].encode("utf-8"))

    def put(self, res: dict) -> None:
        md = {k: res[k] for k in ("namespace", "type", "id", "version", "owner", "phase", "created", "updated")}
        for k in ("labels", "annotations", "finalizers"):
            if res[k]:
                md[k] = res[k]
        text = ("# omni-scale lab stand-in resource (written by lab/omni_standin.py; `omnictl get` shows it\n"
                "# exactly as Omni would). Edit with omnictl apply, not by hand.\n")
        text += yaml.safe_dump({"metadata": md, "spec": res["spec"]}, sort_keys=False, allow_unicode=True,
                               default_flow_style=False, width=1 << 30)
        _atomic_write(self.path(res["type"], res["namespace"], res["id"]), text)

    def delete(self, rtype: str, ns: str, rid: str) -> None:
        self.path(rtype, ns, rid).unlink()


def _normalize_endpoint(endpoint: str) -> tuple[str, str]:
    """(scheme class, host:port target) the way client.New turns OMNI_ENDPOINT into a dial target."""
    if "://" not in endpoint:
        first = endpoint.split("/", 1)[0]
        if ":" in first and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", first):
            raise CmdError(f'parse "{endpoint}": first path segment in URL cannot contain colon')
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", endpoint):
            return endpoint.split(":", 1)[0].lower(), ""
        return "", ""
    u = urllib.parse.urlsplit(endpoint)
    scheme = u.scheme.lower()
    host = u.netloc.rsplit("@", 1)[-1]
    hostname, port = host, ""
    m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(\d*))?", host)
    if m:
        hostname, port = m.group(1), m.group(2) or ""
    if scheme == "http":
        scheme = "grpc"
    if not port and scheme == "https":
        port = "443"
    elif not port and scheme == "grpc":
        port = "80"
    if hostname.lower() == "localhost":
        hostname = "127.0.0.1"
    target = f"{hostname}:{port}" if port else hostname
    return ("https" if scheme == "https" else scheme), target


def _read_server(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "server.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def init_server(state_dir: str | os.PathLike, endpoint: str) -> str:
    """Start ("bring up") the lab Omni: record its endpoint and a fresh service-account key
    in <state_dir>/server.json (mode 0600). Resources already stored are kept. Returns the key."""
    state = Path(state_dir)
    _normalize_endpoint(endpoint)
    key = generate_service_account_key()
    with locked(state):
        _atomic_write(state / "server.json", json.dumps({"endpoint": endpoint, "service_account_key": key},
                                                       indent=2) + "\n", mode=0o600)
    return key


def stop_server(state_dir: str | os.PathLike) -> None:
    """Mark the lab Omni down (omnictl then fails as if unreachable); resources are kept."""
    state = Path(state_dir)
    if not state.exists():
        return
    with locked(state):
        with contextlib.suppress(FileNotFoundError):
            (state / "server.json").unlink()


def register_provider(state_dir: str | os.PathLike, provider_id: str, *, name: str = "",
                      description: str = "", schema: str = "", icon: str = "") -> None:
    """What a real infra provider does when it starts: (re)write its InfraProviderStatus
    (namespace infra-provider, id = provider id). Omni refuses auto-provisioned
    MachineClasses whose provider is not registered, and validates providerdata against
    `schema` (a JSON schema, as a JSON string) when it is set."""
    state = Path(state_dir)
    rd = resolve_type(INFRA_PROVIDER_STATUS_TYPE)
    with locked(state):
        store = Store(state)
        old = store.get(INFRA_PROVIDER_STATUS_TYPE, rd.default_ns, provider_id)
        res = new_resource(INFRA_PROVIDER_STATUS_TYPE, rd.default_ns, provider_id,
                           {"schema": schema, "name": name, "description": description, "icon": icon})
        res["version"] = (old["version"] + 1) if old else 1
        res["created"] = old["created"] if old else now_rfc3339()
        res["updated"] = now_rfc3339() if old else RFC3339_ZERO
        store.put(res)


# --------------------------------------------------------------------------------------
# access.WithClient: key decoding, endpoint, reachability, authentication
# --------------------------------------------------------------------------------------

def connect(state_dir: Path) -> None:
    env_key: str | None = None
    for alias in ("SIDERO_SERVICE_ACCOUNT_KEY", "OMNI_SERVICE_ACCOUNT_KEY"):
        if alias in os.environ:
            env_key = os.environ[alias]
            break
    decoded = decode_service_account_key(env_key) if env_key is not None else None
    endpoint = os.environ.get("OMNI_ENDPOINT", "")
    if not endpoint:
        # without a key the (default) omniconfig context URL is used
        endpoint = "" if decoded is not None else "grpc://127.0.0.1:8080"
    scheme, target = _normalize_endpoint(endpoint) if endpoint else ("", "")
    server = _read_server(state_dir)
    if server is None or not target:
        raise CmdError(unreachable_error(target))
    try:
        if _normalize_endpoint(server["endpoint"]) != (scheme, target):
            raise CmdError(unreachable_error(target))
    except CmdError:
        raise CmdError(unreachable_error(target)) from None
    if decoded is None:
        raise CmdError(MISSING_SIGNATURE_ERROR)
    try:
        lab = decode_service_account_key(server["service_account_key"])
    except CmdError:
        lab = None
    if lab is None or lab["raw"] != decoded["raw"]:
        raise CmdError(INVALID_SIGNATURE_ERROR)


# --------------------------------------------------------------------------------------
# Verbs
# --------------------------------------------------------------------------------------

def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _os_error_text(op: str, path: str, e: OSError) -> str:
    msg = os.strerror(e.errno) if e.errno else str(e)
    return f"{op} {path}: {msg[:1].lower()}{msg[1:]}"


def _discover_files(path: str) -> list[str]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise CmdError(_os_error_text("stat", path, e)) from None
    if not os.path.isdir(path) or not (st.st_mode & 0o040000):
        return [path]
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in (".yaml", ".yml"):
                files.append(os.path.normpath(os.path.join(root, name)))
    files.sort(key=lambda p: p.split(os.sep))
    if not files:
        raise CmdError(f"no YAML files found in directory {_go_quote(path)}")
    return files


def _apply_document(store: Store, res: dict, verbose: bool, dry_run: bool) -> None:
    rid, rtype = res["id"], res["type"]
    got = store.get(rtype, res["namespace"], rid)
    validator = VALIDATORS.get(rtype)
    if got is None:
        if verbose:
            sys.stdout.write(f"Creating resource '{rid}'\n\n{resource_yaml(res)}\n\n")
        if dry_run:
            return
        errs = validator(store, None, res) if validator else []
        if errs:
            raise CmdError(f"failed to create resource '{rid}' '{rtype}': {validation_error(errs)}")
        res = dict(res, version=1, owner="", created=now_rfc3339())
        store.put(res)
        return
    if verbose:
        diffs = diff_main(resource_yaml(got), resource_yaml(res))
        sys.stdout.write(f"Updating resource '{rid}'\n\n{diff_pretty_text(diffs)}\n\n")
    if dry_run:
        return
    errs = validator(store, got, res) if validator else []
    if errs:
        raise CmdError(f"failed to update resource '{rid}' '{rtype}': {validation_error(errs)}")
    res = dict(res, version=(got["version"] or 0) + 1, owner=got["owner"], created=got["created"],
               updated=now_rfc3339())
    store.put(res)


def cmd_apply(state_dir: Path, opts: dict) -> None:
    dry_run = opts["dry-run"]
    verbose = opts["verbose"] or dry_run
    connect(state_dir)
    with locked(state_dir):
        try:
            files = _discover_files(opts["file"])
        except CmdError as e:
            raise CmdError(f"failed to discover yaml files from {_go_quote(opts['file'])}: {e.text}") from None
        if verbose:
            sys.stdout.write(f"Processing {len(files)} resource file(s)\n")
        store = Store(state_dir)
        for path in files:
            if verbose:
                sys.stdout.write(f"Applying resources from: {path}\n")
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError as e:
                raise CmdError(f"failed to read resource yaml file {_go_quote(path)}: "
                               f"{_os_error_text('read', path, e)}") from None
            try:
                try:
                    docs = [d for d in compose_documents(text) if d is not None]
                except YamlInputError as e:
                    raise CmdError(str(e)) from None
                resources = []
                for doc in docs:
                    if isinstance(doc, yaml.ScalarNode) and scalar_tag(doc)[0] == "null":
                        raise GoPanic("resource is not set")
                    resources.append(parse_resource_document(doc))
                for res in resources:
                    _apply_document(store, res, verbose, dry_run)
            except CmdError as e:
                if isinstance(e, NotSupported):
                    raise
                raise CmdError(f"failed to apply resources from file {_go_quote(path)}: {e.text}") from None


def _column_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return go_json(value, indent=None)


def _jsonpath_field(data: Any, path: str) -> Any:
    m = re.fullmatch(r"\{((?:\.[A-Za-z0-9_-]+)+)\}", path)
    if not m:
        return ""
    for part in m.group(1).split(".")[1:]:
        if not isinstance(data, dict) or part not in data:
            return ""
        data = data[part]
    return data


class _Writer:
    """pkg/omnictl/output: table | yaml | json."""

    def __init__(self, fmt: str, rd: RD):
        self.fmt, self.rd = fmt, rd
        self.table: list[str] = []
        self.need_dashes = False
        if fmt == "table":
            self.table.append("\t".join(["NAMESPACE", "TYPE", "ID", "VERSION"]
                                        + [c[0].upper() for c in rd.columns]))

    def write(self, res: dict) -> None:
        if self.fmt == "table":
            spec = resource_json_value(res)["spec"]
            values = [res["namespace"], self.rd.display, res["id"],
                      "undefined" if res["version"] is None else str(res["version"])]
            values += [_column_text(_jsonpath_field(spec, c[1])) for c in self.rd.columns]
            self.table.append("\t".join(values))
        elif self.fmt == "yaml":
            if self.need_dashes:
                sys.stdout.write("---\n")
            self.need_dashes = True
            sys.stdout.write(resource_yaml(res))
        else:
            sys.stdout.write(go_json(resource_json_value(res)) + "\n")

    def flush(self) -> None:
        if self.fmt == "table":
            sys.stdout.write(tabwrite("\n".join(self.table) + "\n"))
            self.table = []


def _output_format(fmt: str) -> str:
    if fmt in ("table", "yaml", "json"):
        return fmt
    if fmt.startswith("jsonpath="):
        raise NotSupported("-o jsonpath")
    raise CmdError(f'output format "{fmt}" is not supported')


def _id_regexp(expr: str) -> re.Pattern:
    try:
        return re.compile(expr)
    except re.error as e:
        raise CmdError(f"invalid ID regexp: error parsing regexp: {e.msg}: `{expr}`") from None


def cmd_get(state_dir: Path, args: list[str], opts: dict) -> None:
    if opts["watch"]:
        raise NotSupported("get --watch")
    connect(state_dir)
    rid = args[1] if len(args) > 1 else ""
    rd = resolve_type(args[0])
    ns = opts["namespace"] or rd.default_ns
    terms = None
    if opts["selector"]:
        if rid:
            raise CmdError("cannot specify both resource ID and selector")
        terms = parse_label_query(opts["selector"])
    id_re = None
    if opts["id-match-regexp"]:
        if rid:
            raise CmdError("cannot specify both resource ID and ID regexp")
        id_re = _id_regexp(opts["id-match-regexp"])
    fmt = _output_format(opts["output"])
    _require_supported(rd.type)
    writer = _Writer(fmt, rd)
    try:
        with locked(state_dir, exclusive=False):
            store = Store(state_dir)
            if rid:
                res = store.get(rd.type, ns, rid)
                if res is None:
                    raise CmdError(not_found_error(rd.type, ns, rid))
                writer.write(res)
            else:
                for res in store.list(rd.type, ns):
                    if terms is not None and not label_query_matches(terms, res["labels"]):
                        continue
                    if id_re is not None and not id_re.search(res["id"]):
                        continue
                    writer.write(res)
    finally:
        writer.flush()


def cmd_delete(state_dir: Path, args: list[str], opts: dict, ns_changed: bool) -> None:
    connect(state_dir)
    ids = args[1:]
    if not ids and not opts["all"] and not opts["selector"]:
        raise CmdError("either resource ID or one of --all or --selector flags must be specified")
    rd = resolve_type(args[0])
    ns = (opts["namespace"] if ns_changed else "") or rd.default_ns
    _require_supported(rd.type)
    with locked(state_dir):
        store = Store(state_dir)
        if not ids:
            terms = parse_label_query(opts["selector"]) if opts["selector"] else None
            ids = [r["id"] for r in store.list(rd.type, ns)
                   if terms is None or label_query_matches(terms, r["labels"])]
        for rid in ids:
            if store.get(rd.type, ns, rid) is None:
                raise CmdError(not_found_error(rd.type, ns, rid))
            sys.stderr.write(f"torn down {rd.type} {rid}\n")
            sys.stderr.flush()
            users = [ms["id"] for ms in store.list(MACHINE_SET_TYPE, DEFAULT_NS)
                     if (_allocation(ms) or {}).get("name") == rid] if rd.type == MACHINE_CLASS_TYPE else []
            if users:  # Omni's destroy validation; the real class stays in phase tearingDown
                raise CmdError(validation_error(["can not delete the machine class as it is still in use by "
                                                 "machine sets: " + ", ".join(users)]))
            destroy_resource(store, store.get(rd.type, ns, rid))
            sys.stderr.write(f"destroyed {rd.type} {rid}\n")


# --------------------------------------------------------------------------------------
# Cluster templates: omnictl cluster template validate|render|sync|diff|delete|status|export,
# cluster status|delete, kubeconfig. Ports of pkg/template (Sync/Delete/actualResources),
# pkg/template/operations (sync, diff, delete, status, export) and internal/utils (RenderDiff).
# Offline verbs (validate, render) and template loading run the real omnictl binary.
# --------------------------------------------------------------------------------------

REAL_OMNICTL = PROJECT_ROOT / ".tools" / "bin" / "omnictl"
DEFAULT_NS = "default"
SYSTEM_PREFIX = "omni.sidero.dev/"
LABEL_CLUSTER = SYSTEM_PREFIX + "cluster"
LABEL_MACHINE_SET = SYSTEM_PREFIX + "machine-set"
LABEL_CLUSTER_MACHINE = SYSTEM_PREFIX + "cluster-machine"
LABEL_CP_ROLE = SYSTEM_PREFIX + "role-controlplane"
LABEL_WORKER_ROLE = SYSTEM_PREFIX + "role-worker"
LABEL_MSN_CONTROLLER = SYSTEM_PREFIX + "managed-by-machine-set-node-controller"
ANNOTATION_TEMPLATES = SYSTEM_PREFIX + "managed-by-cluster-templates"
ANNOTATION_LOCKED = SYSTEM_PREFIX + "locked"
ANNOTATION_CLUSTER_LOCKED = SYSTEM_PREFIX + "cluster-locked"
ANNOTATION_IMPORTING = SYSTEM_PREFIX + "cluster-import-is-in-progress"
# pkg/template/order.go
CANONICAL_ORDER = {CLUSTER_TYPE: 1, EXTENSIONS_CONFIGURATION_TYPE: 2, CONFIG_PATCH_TYPE: 3,
                   KUBERNETES_MANIFEST_GROUP_TYPE: 4, MACHINE_SET_TYPE: 5, MACHINE_SET_NODE_TYPE: 6,
                   KERNEL_ARGS_TYPE: 7}
UPDATE_STRATEGIES = {0: "Unset", 1: "Rolling"}
ALLOCATION_TYPES = {0: "Static", 1: "Unlimited"}
LAB_ACCOUNT = "lab"  # Omni's account name (kubeconfig context names are <account>-<cluster>-<user>)
LAB_KUBE_API = "https://127.0.0.1:6443"
SERVICE_ACCOUNT_TOKEN_MAX_NS = 10 * 365 * 24 * 3600 * 10**9  # external.ServiceAccountTokenLifetime


def _color(code: str, text: str, reset: str = "0") -> str:
    """fatih/color: escape codes only when stdout is a terminal, TERM != dumb and NO_COLOR unset
    (Sprintf-style wrapping resets bold with 22, Fprintf-style output with 0)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb" or not sys.stdout.isatty():
        return text
    return f"\x1b[{code}m{text}\x1b[{reset}m"


def _rkey(r: dict) -> tuple:
    return (r["namespace"], r["type"], r["id"])


def _rstring(r: dict) -> str:
    """resource.String."""
    return f"{r['type']}({r['namespace']}/{r['id']})"


def _describe(r: dict) -> str:
    """internal/utils.Describe."""
    return f"{r['type']}({r['id']})"


def _canonical_sort(items: list, res=lambda x: x) -> list:
    return sorted(items, key=lambda x: CANONICAL_ORDER[res(x)["type"]])


def _allocation(ms: dict) -> dict | None:
    """omni.GetMachineAllocation: the deprecated machineclass field wins."""
    return ms["spec"]["machineclass"] or ms["spec"]["machineallocation"]


# ---- the real binary, for what the real omnictl does offline ----

def _real_omnictl() -> str:
    if not os.access(REAL_OMNICTL, os.X_OK):
        raise CmdError(f"lab stand-in: the cluster template commands run the real omnictl v1.8.0 offline "
                       f"(validate/render), but {REAL_OMNICTL} is missing: run `make setup` (tools/bootstrap.sh)")
    return str(REAL_OMNICTL)


def run_real_omnictl(args: list[str], capture: bool = True) -> Any:
    """The real omnictl, offline: private HOME, no OMNI_*/SIDERO_* environment."""
    import subprocess

    binary = _real_omnictl()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMNI", "SIDERO")) and k != "XDG_CONFIG_HOME"}
    with tempfile.TemporaryDirectory(prefix="omnictl-home.") as home:
        env["HOME"] = home
        sys.stdout.flush()
        sys.stderr.flush()
        return subprocess.run([binary, *args], env=env, stdin=subprocess.DEVNULL,
                              capture_output=capture, timeout=120)


def _real_error(p: Any) -> str:
    text = p.stderr.decode("utf-8", "replace")
    text = text[len("Error: "):] if text.startswith("Error: ") else text
    return text[:-1] if text.endswith("\n") else text


def _render_template(path: str, allowed_dir: str) -> list[dict]:
    """template.Load + Validate + Translate, done by `omnictl cluster template render`."""
    p = run_real_omnictl(["cluster", "template", "render", "-f", path, "--allowed-dir", allowed_dir])
    if p.returncode != 0:
        raise CmdError(_real_error(p).replace("error rendering template: ", "error syncing template: ", 1))
    return [parse_resource_document(d) for d in compose_documents(p.stdout.decode("utf-8"))
            if d is not None]


def _validated_cluster_name(path: str, allowed_dir: str) -> str:
    """template.Load + Validate (the real `validate`), then models.List.ClusterName."""
    p = run_real_omnictl(["cluster", "template", "validate", "-f", path, "--allowed-dir", allowed_dir])
    if p.returncode != 0:
        raise CmdError(_real_error(p))
    with open(path, encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if isinstance(doc, dict) and doc.get("kind") == "Cluster":
                return str(doc.get("name") or "")
    raise CmdError("cluster model not found")


def _open_root(template_path: str, allowed_dir: str) -> str:
    """The template command's PersistentPreRunE: os.OpenRoot(allowed dir, relative to the -f path's dir).
    Returns it as an absolute path (what the real binary is given as --allowed-dir for each template file)."""
    root = allowed_dir if os.path.isabs(allowed_dir) else \
        os.path.join(os.path.dirname(template_path) or ".", allowed_dir)
    root = os.path.normpath(root)
    try:
        if not os.path.isdir(root):
            os.stat(root)
            raise NotADirectoryError(20, os.strerror(20))
        os.listdir(root)
    except OSError as e:
        raise CmdError(_os_error_text("open", root, e)) from None
    return os.path.abspath(root)


# ---- github.com/neticdk/go-stdlib/diff/myers (linear space) + unified formatter, as omni's pkg/diff ----

def _lcs_edits(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    n, m = len(a), len(b)
    matches: list[tuple[int, int]] = []
    if n and m:
        dp = [[0] * (m + 1) for _ in range(n + 1)]
        for i in range(1, n + 1):
            row, prev, ai = dp[i], dp[i - 1], a[i - 1]
            for j in range(1, m + 1):
                row[j] = prev[j - 1] + 1 if ai == b[j - 1] else max(prev[j], row[j - 1])
        i, j = n, m
        while i > 0 and j > 0:
            if a[i - 1] == b[j - 1]:
                matches.append((i - 1, j - 1))
                i, j = i - 1, j - 1
            elif dp[i - 1][j] > dp[i][j - 1]:
                i -= 1
            else:
                j -= 1
        matches.reverse()
    edits: list[tuple[str, str]] = []
    ai = bi = 0
    for x, y in matches:
        edits += [("-", t) for t in a[ai:x]] + [("+", t) for t in b[bi:y]] + [(" ", a[x])]
        ai, bi = x + 1, y + 1
    return edits + [("-", t) for t in a[ai:]] + [("+", t) for t in b[bi:]]


def _middle_snake(a: list[str], b: list[str], a0: int, a1: int, b0: int, b1: int) -> tuple:
    n, m = a1 - a0, b1 - b0
    none = (a0, b0, a0, b0, 0)
    if n <= 0 or m <= 0:
        return none
    if n == 1 or m == 1:
        for i in range(n):
            for j in range(m):
                if a[a0 + i] == b[b0 + j]:
                    return (a0 + i, b0 + j, a0 + i + 1, b0 + j + 1, 1)
        return none
    max_diff, delta = (n + m + 1) // 2, n - m
    size, off = 2 * max_diff + 1, max_diff
    if delta > 0:
        size += delta
    elif delta < 0:
        size, off = size - delta, off - delta
    vf, vr = [-1] * size, [-1] * size
    vf[off] = 0
    if not 0 <= off + delta < size:
        return none
    vr[off + delta] = n

    def follow(x: int, y: int) -> bool:
        return 0 <= x < n and 0 <= y < m and a[a0 + x] == b[b0 + y]

    for d in range(max_diff + 1):
        for k in range(-d, d + 1, 2):
            idx = off + k
            if not 0 <= idx < size:
                continue
            right = k > -d and idx - 1 >= 0 and vf[idx - 1] != -1
            down = k < d and idx + 1 < size and vf[idx + 1] != -1
            if down and not right:
                x = vf[idx + 1]
            elif right and not down:
                x = vf[idx - 1] + 1
            elif right and down:
                x = max(vf[idx - 1] + 1, vf[idx + 1])
            elif idx == off and d == 0:
                x = vf[idx]
            else:
                continue
            x = min(x, n)
            y = x - k
            if y < 0 or y > m:
                continue
            sx, sy = x, y
            while follow(x, y):
                x, y = x + 1, y + 1
            vf[idx] = x
            if delta % 2 != 0 and delta - (d - 1) <= k <= delta + (d - 1) and 0 <= vr[idx] <= x:
                return (a0 + sx, b0 + sy, a0 + x, b0 + y, x - sx)
        for kr in range(-d, d + 1, 2):
            k = kr + delta
            idx = off + k
            if not 0 <= idx < size:
                continue
            left = k > -d + delta and idx - 1 >= 0 and vr[idx - 1] != -1
            up = k < d + delta and idx + 1 < size and vr[idx + 1] != -1
            if up and not left:
                x = vr[idx + 1] - 1
            elif left and not up:
                x = vr[idx - 1]
            elif left and up:
                x = min(vr[idx - 1], vr[idx + 1] - 1)
            else:
                continue
            x = max(x, 0)
            y = x - k
            if y < 0 or y > m:
                continue
            ex, ey = x, y
            while x > 0 and y > 0 and follow(x - 1, y - 1):
                x, y = x - 1, y - 1
            vr[idx] = x
            if delta % 2 == 0 and -d <= k <= d and vf[idx] >= 0 and vf[idx] >= x:
                return (a0 + x, b0 + y, a0 + ex, b0 + ey, ex - x)
    return none


def _myers(a: list[str], b: list[str], a0: int, a1: int, b0: int, b1: int, depth: int = 0) -> list:
    n, m = a1 - a0, b1 - b0
    if n < 0 or m < 0:
        return []
    if n == 0:
        return [("+", t) for t in b[b0:b1]]
    if m == 0:
        return [("-", t) for t in a[a0:a1]]
    if depth >= 30 or (n < 10 and m < 10):
        return _lcs_edits(a[a0:a1], b[b0:b1])
    p = 0
    while p < n and p < m and a[a0 + p] == b[b0 + p]:
        p += 1
    s = 0
    while s < n - p and s < m - p and a[a1 - 1 - s] == b[b1 - 1 - s]:
        s += 1
    if p or s:
        return ([(" ", t) for t in a[a0:a0 + p]] + _myers(a, b, a0 + p, a1 - s, b0 + p, b1 - s, depth + 1)
                + [(" ", t) for t in a[a1 - s:a1]])
    sx, sy, ex, ey, length = _middle_snake(a, b, a0, a1, b0, b1)
    return (_myers(a, b, a0, sx, b0, sy, depth + 1) + [(" ", t) for t in a[sx:sx + length]]
            + _myers(a, b, ex, a1, ey, b1, depth + 1))


def unified_diff(old: str, new: str, context: int = 3) -> str:
    """omni pkg/diff.Compute: hunks without the ---/+++ header ("" when equal)."""
    if old == new:
        return ""
    if old.count("\n") + new.count("\n") > 75_000:
        return f"@@ -1,{old.count(chr(10))} +1,{new.count(chr(10))} @@ diff too large to display\n"
    split = lambda s: s[:-1].split("\n") if s.endswith("\n") else (s.split("\n") if s else [])  # noqa: E731
    a, b = split(old), split(new)
    edits = _myers(a, b, 0, len(a), 0, len(b))
    changes = [i for i, e in enumerate(edits) if e[0] != " "]
    ranges: list[list[int]] = []
    if edits and not changes:
        ranges = [[0, len(edits)]]
    groups: list[list[int]] = []
    for i in changes:
        if groups and i - groups[-1][-1] <= 2 * context:
            groups[-1].append(i)
        else:
            groups.append([i])
    for g in groups:
        start, end = max(0, g[0] - context), min(len(edits), g[-1] + context + 1)
        if ranges and start < ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], end)
        else:
            ranges.append([start, end])
    out = []
    for start, end in ranges:
        a_start = 1 + sum(1 for op, _ in edits[:start] if op != "+")
        b_start = 1 + sum(1 for op, _ in edits[:start] if op != "-")
        a_len = sum(1 for op, _ in edits[start:end] if op != "+")
        b_len = sum(1 for op, _ in edits[start:end] if op != "-")
        out.append(f"@@ -{a_start - 1 if a_len == 0 else a_start},{a_len} "
                   f"+{b_start - 1 if b_len == 0 else b_start},{b_len} @@\n")
        out += [op + text + "\n" for op, text in edits[start:end]]
    return "".join(out)


def render_diff(old: dict | None, new: dict | None) -> str:
    """internal/utils.RenderDiff (resources marshaled with indent 2)."""
    diff = unified_diff(resource_yaml(old, 2) if old else "", resource_yaml(new, 2) if new else "")
    if not diff:
        return ""
    out = [_color("1", f"--- {_rstring(old) if old else '/dev/null'}\n"),
           _color("1", f"+++ {_rstring(new) if new else '/dev/null'}\n")]
    for line in diff.split("\n"):
        if line.startswith("@@"):
            out.append(_color("36", line) + "\n")
        elif line.startswith("-"):
            out.append(_color("31", line) + "\n")
        elif line.startswith("+"):
            out.append(_color("32", line) + "\n")
        elif line:
            out.append(line + "\n")
    return "".join(out)


# ---- server side: Omni's validations for the template resource types and its cleanup controllers ----

def _relation_label_errors(old: dict | None, res: dict, keys: tuple[str, ...]) -> list[str]:
    """relationLabelsValidationOptions (state_validation.go)."""
    errs = []
    for key in keys:
        val = res["labels"].get(key)
        if val is None:
            errs.append(f"label {_go_quote(key)} does not exist")
        elif val == "":
            errs.append(f"label {_go_quote(key)} has empty value")
    for key in keys if old is not None else ():
        was, now = old["labels"].get(key, ""), res["labels"].get(key, "")
        if was and was != now:
            errs.append(f"changing value of label {_go_quote(key)} from {_go_quote(was)} to {_go_quote(now)}")
    return errs


def validate_machine_set(store: Store, old: dict | None, res: dict) -> list[str]:
    """machineSetValidationOptions of Omni v1.8.0 (no ClusterBootstrapStatus/ClusterUUID in the lab)."""
    errs = _relation_label_errors(old, res, (LABEL_CLUSTER,))
    err = _machine_set_error(store, old, res)
    return errs + ([err] if err else [])


def _machine_set_error(store: Store, old: dict | None, res: dict) -> str | None:
    q, rid, labels = _go_quote, res["id"], res["labels"]
    name = labels.get(LABEL_CLUSTER, "")
    cluster = store.get(CLUSTER_TYPE, DEFAULT_NS, name)
    if cluster is None:
        return None if res["phase"] == "tearingDown" else f"the cluster {q(name)} does not exist"
    locked = ANNOTATION_CLUSTER_LOCKED in cluster["annotations"] and \
        ANNOTATION_IMPORTING not in cluster["annotations"]
    if old is None and cluster["phase"] == "tearingDown":
        return f"the cluster {q(name)} is tearing down"
    if old is None and locked:
        return f"adding machine set {q(rid)} to the cluster {q(name)} is not allowed: the cluster is locked"
    if locked and res["phase"] == "running":
        return f"updating machine set {q(rid)} on the cluster {q(name)} is not allowed: the cluster is locked"
    is_cp, is_worker = LABEL_CP_ROLE in labels, LABEL_WORKER_ROLE in labels
    if not is_cp and not is_worker:
        return f"machine set must have either {q(LABEL_CP_ROLE)} or {q(LABEL_WORKER_ROLE)} label"
    bootstrap = res["spec"]["bootstrapspec"]
    if not is_cp and bootstrap is not None:
        return "bootstrap spec is not allowed for worker machine sets"
    if old is not None and bootstrap != old["spec"]["bootstrapspec"]:
        return "bootstrap spec is immutable after creation"
    if old is None and bootstrap is not None:  # the lab has no ClusterUUID resources to restore from
        return f"invalid cluster UUID {q(bootstrap['clusteruuid'])}"
    alloc = _allocation(res)
    if alloc is not None:
        if alloc["name"] == "":
            return "machine allocation source name is not set"
        if alloc["machinecount"] != 0 and alloc["allocationtype"] != 0:
            return "machine count can be set only if static allocation type is used"
        old_alloc = _allocation(old) if old is not None else None
        if old is None or (old_alloc is not None and old_alloc["name"] != alloc["name"]):
            mc = store.get(MACHINE_CLASS_TYPE, DEFAULT_NS, alloc["name"])
            if mc is None:
                return f"machine class with name {q(alloc['name'])} doesn't exist"
            if mc["spec"]["autoprovision"] is not None and alloc["allocationtype"] == 1:
                return (f"machine class {q(alloc['name'])} is using autoprovision, "
                        "so unlimited machine set allocation is not supported")
    if old is not None:
        old_alloc = _allocation(old)
        if (old_alloc is None) != (alloc is None) and any(
                n["labels"].get(LABEL_MACHINE_SET) == rid for n in store.list(MACHINE_SET_NODE_TYPE, DEFAULT_NS)):
            return ("machine set is not empty and is using manual nodes management, updating to machine class mode "
                    "is not allowed" if old_alloc is None else "machine set is not empty and is using machine class "
                    "based node management, updating to manual mode is not allowed")
        return None
    prefix, cp_id = name + "-", f"{name}-control-planes"
    if not rid.startswith(prefix):
        return f"machine set of cluster {q(name)} ID must have {q(prefix)} as prefix"
    if is_cp and rid != cp_id:
        return f"control plane machine set must have ID {q(cp_id)}"
    if not is_cp and rid == cp_id:
        return f"worker machine set must not have ID {q(cp_id)}"
    return None


def validate_machine_set_node(store: Store, old: dict | None, res: dict) -> list[str]:
    """relationLabels + machineSetNodeValidationOptions (create; machine-level checks need machines)."""
    errs = _relation_label_errors(old, res, (LABEL_CLUSTER, LABEL_MACHINE_SET))
    if old is not None or errs:
        return errs
    ms_id = res["labels"][LABEL_MACHINE_SET]
    ms = store.get(MACHINE_SET_TYPE, DEFAULT_NS, ms_id)
    prefix = f"adding machine set node to the machine set {_go_quote(ms_id)} is not allowed: "
    if ms is None:
        return [prefix + "the machine set does not exist"]
    if ms["phase"] == "tearingDown":
        return [prefix + "the machine set is tearing down"]
    if _allocation(ms) is not None:
        return [prefix + "the machine set is using automated machine allocation"]
    cluster = store.get(CLUSTER_TYPE, DEFAULT_NS, res["labels"][LABEL_CLUSTER])
    if cluster is None:
        return [prefix + f"the cluster {_go_quote(res['labels'][LABEL_CLUSTER])} does not exist"]
    if cluster["phase"] == "tearingDown":
        return [prefix + f"the cluster {_go_quote(cluster['id'])} is tearing down"]
    if LABEL_CP_ROLE in ms["labels"] and ANNOTATION_LOCKED in res["annotations"]:
        return ["locking controlplanes is not allowed"]
    return []


VALIDATORS[MACHINE_SET_TYPE] = validate_machine_set
VALIDATORS[MACHINE_SET_NODE_TYPE] = validate_machine_set_node

# Omni's cleanup controllers (ClusterController, MachineSetController): what goes with a destroyed resource.
_CLEANUP = {
    CLUSTER_TYPE: (LABEL_CLUSTER, (MACHINE_SET_TYPE, CONFIG_PATCH_TYPE, KUBERNETES_MANIFEST_GROUP_TYPE,
                                   EXTENSIONS_CONFIGURATION_TYPE)),
    MACHINE_SET_TYPE: (LABEL_MACHINE_SET, (MACHINE_SET_NODE_TYPE, EXTENSIONS_CONFIGURATION_TYPE, CONFIG_PATCH_TYPE)),
}


def destroy_resource(store: Store, res: dict) -> None:
    """Destroy a resource and, like Omni's controllers before they release its finalizer, its outputs."""
    label, types = _CLEANUP.get(res["type"], ("", ()))
    for rtype in types:
        for child in store.list(rtype, DEFAULT_NS):
            if child["labels"].get(label) == res["id"] and store.get(rtype, DEFAULT_NS, child["id"]):
                destroy_resource(store, child)
    store.delete(res["type"], res["namespace"], res["id"])


# ---- pkg/template: Sync / Delete plans ----

def _of_cluster(store: Store, rtype: str, cluster: str) -> list[dict]:
    return [r for r in store.list(rtype, DEFAULT_NS) if r["labels"].get(LABEL_CLUSTER) == cluster]


def _actual_resources(store: Store, cluster: str, expected: list[dict]) -> list[dict]:
    actual = [r for r in [store.get(CLUSTER_TYPE, DEFAULT_NS, cluster)] if r]
    for rtype in (MACHINE_SET_TYPE, MACHINE_SET_NODE_TYPE, CONFIG_PATCH_TYPE, EXTENSIONS_CONFIGURATION_TYPE,
                  KUBERNETES_MANIFEST_GROUP_TYPE):
        items = [r for r in _of_cluster(store, rtype, cluster)
                 if LABEL_MSN_CONTROLLER not in r["labels"] and r["owner"] == ""]
        actual += items
        if rtype == MACHINE_SET_NODE_TYPE:
            actual += [ka for ka in (store.get(KERNEL_ARGS_TYPE, DEFAULT_NS, n["id"]) for n in items) if ka]
    seen = {_rkey(r) for r in actual}
    for e in expected:
        if _rkey(e) not in seen:
            got = store.get(e["type"], e["namespace"], e["id"])
            if got is not None and got["owner"] == "":
                actual.append(got)
                seen.add(_rkey(got))
    return actual


def _no_longer_expected(res: dict, cluster: str) -> tuple[tuple | None, dict | None]:
    if res["type"] == KERNEL_ARGS_TYPE:
        if ANNOTATION_TEMPLATES not in res["annotations"]:
            return None, None
        new = dict(res, annotations={k: v for k, v in res["annotations"].items() if k != ANNOTATION_TEMPLATES})
        return (res, new), None
    if res["type"] != CLUSTER_TYPE and res["labels"].get(LABEL_CLUSTER, "") != cluster:
        raise CmdError(f"resource {_rstring(res)} belongs to cluster {_go_quote(res['labels'].get(LABEL_CLUSTER, ''))}"
                       f", but template is for cluster {_go_quote(cluster)}")
    return None, res


def _split_destroy(to_delete: list[dict]) -> list[list[dict]]:
    keys = {_rkey(r) for r in to_delete}
    phases: list[list[dict]] = [[], []]
    for r in to_delete:
        if r["type"] == MACHINE_SET_NODE_TYPE:
            owner_key = (DEFAULT_NS, MACHINE_SET_TYPE, r["labels"].get(LABEL_MACHINE_SET))
        elif r["type"] != CLUSTER_TYPE:
            owner_key = (DEFAULT_NS, CLUSTER_TYPE, r["labels"].get(LABEL_CLUSTER))
        else:
            owner_key = None
        if owner_key and owner_key[2] is not None and owner_key in keys:
            continue  # removed by Omni together with its cluster / machine set
        phases[0 if r["type"] in (MACHINE_SET_NODE_TYPE, MACHINE_SET_TYPE) else 1].append(r)
    return [_canonical_sort(p) for p in phases]


def plan_sync(store: Store, cluster: str, expected: list[dict]) -> tuple[list, list, list]:
    """template.Sync: (create, update pairs, destroy phases)."""
    remaining = {_rkey(e): e for e in expected}
    create, update, to_delete = [], [], []
    for actual in _actual_resources(store, cluster, expected):
        exp = remaining.pop(_rkey(actual), None)
        if exp is not None:
            exp = dict(exp, version=actual["version"], updated=actual["updated"], created=actual["created"],
                       finalizers=actual["finalizers"])
            if any(actual[k] != exp[k] for k in ("owner", "phase", "labels", "annotations", "spec")):
                update.append((actual, exp))
            continue
        upd, gone = _no_longer_expected(actual, cluster)
        if upd:
            update.append(upd)
        elif gone:
            to_delete.append(gone)
    for exp in remaining.values():
        got = store.get(exp["type"], exp["namespace"], exp["id"]) if exp["type"] != KERNEL_ARGS_TYPE else None
        if got is not None:
            raise CmdError(f"resource {_rstring(got)} already exists for cluster "
                           f"{_go_quote(got['labels'].get(LABEL_CLUSTER, ''))}, cannot create a conflicting "
                           "resource for a different cluster")
        create.append(exp)
    return _canonical_sort(create), _canonical_sort(update, lambda u: u[1]), _split_destroy(to_delete)


def plan_delete(store: Store, cluster: str) -> tuple[list, list, list]:
    """template.Delete."""
    update, to_delete = [], []
    for actual in _actual_resources(store, cluster, []):
        upd, gone = _no_longer_expected(actual, cluster)
        if upd:
            update.append(upd)
        elif gone:
            to_delete.append(gone)
    return [], update, _split_destroy(to_delete)


def execute_plan(store: Store, plan: tuple, verbose: bool, dry_run: bool) -> None:
    """operations.sync: create, then update, then tear down phase by phase."""
    create, update, phases = plan
    dry = " (dry run)" if dry_run else ""
    say = lambda verb, r: sys.stdout.write(  # noqa: E731
        _color("33", f"* {verb}{dry} {_color('1', _describe(r), '22')}\n"))
    for old, new in [(None, r) for r in create] + list(update):
        say("creating" if old is None else "updating", new)
        if verbose:
            sys.stdout.write(render_diff(old, new))
        if dry_run:
            continue
        validator = VALIDATORS.get(new["type"])
        errs = validator(store, old, new) if validator else []
        if errs:
            raise CmdError(validation_error(errs))
        if old is None:
            store.put(dict(new, version=1, owner="", created=now_rfc3339()))
        else:
            store.put(dict(new, version=(old["version"] or 0) + 1, created=old["created"], updated=now_rfc3339()))
    for phase in phases:
        for r in phase:
            say("tearing down", r)
            if verbose:
                sys.stdout.write(render_diff(r, None))
        if dry_run:
            continue
        for r in phase:
            if store.get(r["type"], r["namespace"], r["id"]) is not None:
                destroy_resource(store, r)
            say("destroyed", r)
        sys.stdout.flush()


# ---- status (operations.StatusTemplate/StatusCluster; the lab's readiness knob) ----

def _knob_path(state_dir: Path, cluster: str) -> Path:
    return state_dir / "lab-knobs" / "cluster-not-ready" / _path_component(cluster)


def set_cluster_ready(state_dir: str | os.PathLike, name: str, ready: bool) -> None:
    """Lab knob: whether `omnictl cluster status` reports cluster NAME healthy and ready (default: ready).
    The lab has no machines; this stands for them being up (or not)."""
    state = Path(state_dir)
    with locked(state):
        path = _knob_path(state, name)
        if ready:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            _atomic_write(path, "not ready\n")


def _tree(root: str, children: list[tuple[str, list]]) -> str:
    """xlab/treeprint Bytes()."""
    out = [root]

    def walk(nodes: list, prefix: str) -> None:
        for i, (value, kids) in enumerate(nodes):
            last = i == len(nodes) - 1
            out.append(prefix + ("└── " if last else "├── ") + value)
            walk(kids, prefix + ("    " if last else "│   "))

    walk(children, "")
    return "\n".join(out) + "\n"


def status_tree(store: Store, cluster: str, ready: bool) -> str:
    """statustree.NodeWrapper rendering of the status resources a machine-backed Omni would have."""
    import uuid

    y, g, r, hy = (lambda s: _color("33", s)), (lambda s: _color("32", s)), (lambda s: _color("31", s)), \
        (lambda s: _color("93", s))
    ready_s = g("Ready") if ready else r("Not Ready")
    nodes = store.list(MACHINE_SET_NODE_TYPE, DEFAULT_NS)
    sets = []
    for ms in _of_cluster(store, MACHINE_SET_TYPE, cluster):
        alloc = _allocation(ms)
        if alloc is None:
            machines = [n["id"] for n in nodes if n["labels"].get(LABEL_MACHINE_SET) == ms["id"]]
        else:
            count = alloc["machinecount"] if alloc["allocationtype"] == 0 else 0
            machines = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"omni-scale-lab:{ms['id']}:{i}")) for i in range(count)]
        sets.append((ms, sorted(machines)))
    sets.sort(key=lambda s: (LABEL_CP_ROLE not in s[0]["labels"], s[0]["id"] != f"{cluster}-workers", s[0]["id"]))
    total = sum(len(m) for _, m in sets)
    healthy = total if ready else 0
    children: list[tuple[str, list]] = [(f"{y('Kubernetes Upgrade')} {g('Done')} ", []),
                                        (f"{y('Talos Upgrade')} {g('Done')} ", [])]
    for ms, machines in sets:
        is_cp = LABEL_CP_ROLE in ms["labels"]
        title = "Control Plane" if is_cp else "Workers" if ms["id"] == f"{cluster}-workers" else "Additional Workers"
        kids = [(f"{y('Load Balancer')} {ready_s}", []),
                (f"{y('Status Checks')} {g('OK') if ready else r('Failing: [Etcd]')}", [])] if is_cp else []
        kids += [(f"{y('Machine')} {_go_quote(m)} {g('RUNNING') + ' ' + ready_s if ready else hy('BOOTING')}", [])
                 for m in machines]
        phase = g("Running") if ready else hy("ScalingUp")
        count = len(machines) if ready else 0
        children.append((f"{y(title)} {_go_quote(ms['id'])} {phase} {ready_s} ({count}/{len(machines)})", kids))
    root = (f"{y('Cluster')} {_go_quote(cluster)} {g('RUNNING') if ready else hy('SCALING_UP')} {ready_s} "
            f"({healthy}/{total}) (healthy/total)")
    return _tree(root, children)


def cluster_status(state_dir: Path, cluster: str, wait: float, quiet: bool) -> None:
    deadline = time.monotonic() + wait
    shown = None
    while True:
        with locked(state_dir, exclusive=False):
            store = Store(state_dir)
            exists = store.get(CLUSTER_TYPE, DEFAULT_NS, cluster) is not None
            ready = not _knob_path(state_dir, cluster).exists()
            tree = status_tree(store, cluster, ready) if exists else None
        if tree is not None:
            if tree != shown and not quiet:
                if shown is not None and sys.stdout.isatty():  # printStatus: redraw over the previous tree
                    try:
                        width = os.get_terminal_size(sys.stdout.fileno()).columns or 80
                    except OSError:
                        width = 80
                    sys.stdout.write("".join("\x1b[A\x1b[K" * ((len(line) + width - 1) // width)
                                             for line in shown.split("\n")))
                sys.stdout.write(tree)
                sys.stdout.flush()
            shown = tree
            if ready:
                return
            if wait <= 0:
                raise CmdError("cluster is not healthy")
        elif wait <= 0:
            raise CmdError(f"lab stand-in: cluster {_go_quote(cluster)} does not exist; the real omnictl v1.8.0 "
                           "waits for it forever with --wait 0 (no deadline)")
        left = deadline - time.monotonic()
        if left <= 0:
            raise CmdError("context deadline exceeded")
        time.sleep(min(0.1, left))


# ---- export (operations.ExportTemplate) ----

def _go_duration(ns: int) -> str:
    """time.Duration.String."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 10**6:
        return f"{sign}{_trim_frac(ns, 1000)}µs"
    if ns < 10**9:
        return f"{sign}{_trim_frac(ns, 10**6)}ms"
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    secs = _trim_frac(rest, 10**9) + "s"
    return sign + (f"{h}h{m}m{secs}" if h else f"{m}m{secs}" if m else secs)


def _trim_frac(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _user_descriptors(node: dict, res: dict, drop: tuple = ()) -> dict:
    for kv in ("labels", "annotations"):
        items = {k: v for k, v in res[kv].items() if not k.startswith(SYSTEM_PREFIX) and k not in drop}
        if items:
            node[kv] = {go_string(k): go_string(items[k]) for k in sorted(items)}
    return node


def _patches_node(patches: list[dict]) -> list:
    return [_user_descriptors({"idOverride": go_string(p["id"])}, p) | {"inline": Scalar(p["spec"]["data"], "literal")}
            for p in sorted(patches, key=lambda p: p["id"])]


def _with_tail(node: dict, patches: list[dict], kernel_args: list[str] | None = None) -> dict:
    if patches:
        node["patches"] = _patches_node(patches)
    if kernel_args is not None:
        node["kernelArgs"] = [go_string(a) for a in kernel_args]
    return node


def _head(kind: str, exts: list[dict]) -> dict:
    node = {"kind": go_string(kind)}
    if exts and exts[0]["spec"]["extensions"]:
        node["systemExtensions"] = [go_string(e) for e in exts[0]["spec"]["extensions"]]
    return node


def _strategy_node(spec: dict, which: str, default: int) -> dict | None:
    cfg = spec[f"{which}strategyconfig"]
    if cfg is None:
        return None
    node: dict = {}
    if spec[f"{which}strategy"] != default:
        node["type"] = go_string(UPDATE_STRATEGIES.get(spec[f"{which}strategy"], ""))
    if cfg["rolling"] is not None:
        mp = cfg["rolling"]["maxparallelism"]
        node["rolling"] = {"maxParallelism": Scalar(str(mp))} if mp else {}
    return node


def export_template(store: Store, cluster_id: str, include_kernel_args: bool) -> str:
    cluster = store.get(CLUSTER_TYPE, DEFAULT_NS, cluster_id)
    if cluster is None:
        raise CmdError(f"error getting cluster {_go_quote(cluster_id)}: "
                       + not_found_error(CLUSTER_TYPE, DEFAULT_NS, cluster_id))
    sets = _of_cluster(store, MACHINE_SET_TYPE, cluster_id)
    by_id = {ms["id"]: ms for ms in sets}
    nodes: dict[str, list[dict]] = {}
    kernel_args: dict[str, dict] = {}
    for n in _of_cluster(store, MACHINE_SET_NODE_TYPE, cluster_id):
        ms_id = n["labels"].get(LABEL_MACHINE_SET)
        if ms_id is None:
            raise CmdError(f"machine set node {_go_quote(n['id'])} has no machine set label")
        if ms_id not in by_id:
            raise CmdError(f"unexpected machine set label {_go_quote(ms_id)}")
        if _allocation(by_id[ms_id]) is not None:
            continue
        nodes.setdefault(ms_id, []).append(n)
        ka = store.get(KERNEL_ARGS_TYPE, DEFAULT_NS, n["id"]) if include_kernel_args else None
        if ka:
            kernel_args[n["id"]] = ka
    install_disks: dict[str, str] = {}

    def install_disk(p: dict) -> bool:
        machine = p["labels"].get(LABEL_CLUSTER_MACHINE)
        if machine is None or p["id"] != f"000-cm-{machine}-install-disk":
            return False
        try:
            data = yaml.safe_load(p["spec"]["data"])
        except yaml.YAMLError:
            return False
        disk = None
        if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("machine"), dict) \
                and len(data["machine"]) == 1 and isinstance(data["machine"].get("install"), dict) \
                and len(data["machine"]["install"]) == 1:
            disk = data["machine"]["install"].get("disk")
        if isinstance(disk, str) and disk:
            install_disks[machine] = disk
            return True
        return False

    def layers(rtype: str, skip=lambda r: False) -> tuple[list, dict, dict]:
        top: list = []
        per_set: dict = {}
        per_machine: dict = {}
        for r in _of_cluster(store, rtype, cluster_id):
            if r["owner"] or LABEL_MSN_CONTROLLER in r["labels"] or skip(r):
                continue
            if LABEL_CLUSTER_MACHINE in r["labels"]:
                per_machine.setdefault(r["labels"][LABEL_CLUSTER_MACHINE], []).append(r)
            elif LABEL_MACHINE_SET in r["labels"]:
                per_set.setdefault(r["labels"][LABEL_MACHINE_SET], []).append(r)
            else:
                top.append(r)
        return top, per_set, per_machine

    patches, exts = layers(CONFIG_PATCH_TYPE, install_disk), layers(EXTENSIONS_CONFIGURATION_TYPE)
    spec = cluster["spec"]
    node = _user_descriptors(_head("Cluster", exts[0]) | {"name": go_string(cluster_id)}, cluster)
    kube: dict = {"version": go_string("v" + spec["kubernetesversion"])}
    manifests = []
    for m in sorted((r for r in _of_cluster(store, KUBERNETES_MANIFEST_GROUP_TYPE, cluster_id) if not r["owner"]),
                    key=lambda r: r["id"]):
        if "name" not in m["annotations"]:
            raise CmdError(f"manifest {_go_quote(m['id'])} has no name annotation")
        mode = {1: "full", 2: "one-time"}.get(m["spec"]["mode"])
        if mode is None:
            raise CmdError(f"error encoding model: unknown mode {m['spec']['mode']}")
        manifests.append(_user_descriptors({"inline": Scalar(m["spec"]["data"], "literal")}, m, ("name",))
                         | {"name": go_string(m["annotations"]["name"]), "mode": go_string(mode)})
    if manifests:
        kube["manifests"] = manifests
    node |= {"kubernetes": kube, "talos": {"version": go_string("v" + spec["talosversion"])}}
    feats = spec["features"] or {}
    features = {k: Scalar("true") for k, f in (("diskEncryption", "diskencryption"),
                                               ("enableWorkloadProxy", "enableworkloadproxy"),
                                               ("useEmbeddedDiscoveryService", "useembeddeddiscoveryservice"))
                if feats.get(f)}
    interval = ((spec["backupconfiguration"] or {}).get("interval") or {"seconds": 0, "nanos": 0})
    interval_ns = interval["seconds"] * 10**9 + interval["nanos"]
    if interval_ns:
        features["backupConfiguration"] = {"interval": go_string(_go_duration(interval_ns))}
    if features:
        node["features"] = features
    docs = [_with_tail(node, patches[0])]
    control_plane: dict = {"kind": go_string("")}
    workers = []
    for ms in sorted(sets, key=lambda r: r["id"]):
        is_cp, is_worker = LABEL_CP_ROLE in ms["labels"], LABEL_WORKER_ROLE in ms["labels"]
        if not is_cp and not is_worker:
            raise CmdError(f"machine set {_go_quote(ms['id'])} has no role label")
        ms_node = _head("Workers" if is_worker else "ControlPlane", exts[1].get(ms["id"], []))
        name = ""
        if is_worker and ms["id"] != f"{cluster_id}-workers":
            name = ms["id"].removeprefix(cluster_id + "-")
        if name:
            ms_node["name"] = go_string(name)
        _user_descriptors(ms_node, ms)
        ms_spec, alloc = ms["spec"], _allocation(ms)
        if ms_spec["bootstrapspec"] is not None:
            ms_node["bootstrapSpec"] = {"clusterUUID": go_string(ms_spec["bootstrapspec"]["clusteruuid"]),
                                        "snapshot": go_string(ms_spec["bootstrapspec"]["snapshot"])}
        if alloc is None and nodes.get(ms["id"]):
            ms_node["machines"] = [go_string(i) for i in sorted(n["id"] for n in nodes[ms["id"]])]
        if alloc is not None:
            size = Scalar(str(alloc["machinecount"])) if alloc["allocationtype"] == 0 else \
                go_string(ALLOCATION_TYPES.get(alloc["allocationtype"], ""))
            ms_node["machineClass"] = {"name": go_string(alloc["name"]), "size": size}
        for key, which, default in (("updateStrategy", "update", 1), ("deleteStrategy", "delete", 0),
                                    ("upgradeStrategy", "upgrade", 0)):
            strategy = _strategy_node(ms_spec, which, default)
            if strategy is not None:
                ms_node[key] = strategy
        _with_tail(ms_node, patches[1].get(ms["id"], []))
        if is_cp:
            control_plane = ms_node
        else:
            workers.append((name, ms_node))
    docs.append(control_plane)
    docs += [w for _, w in sorted(workers, key=lambda w: w[0])]
    for n in sorted((n for ns in nodes.values() for n in ns), key=lambda n: n["id"]):
        m_node = _user_descriptors(_head("Machine", exts[2].get(n["id"], [])) | {"name": go_string(n["id"])}, n)
        if ANNOTATION_LOCKED in n["annotations"]:
            m_node["locked"] = Scalar("true")
        if n["id"] in install_disks:
            m_node["install"] = {"disk": go_string(install_disks[n["id"]])}
        ka = kernel_args.get(n["id"])
        docs.append(_with_tail(m_node, patches[2].get(n["id"], []),
                               (ka["spec"]["args"] if ka else []) if include_kernel_args else None))
    return "---\n".join(emit_yaml(d, 2) for d in docs)


# ---- kubeconfig (service-account kubeconfigs only) ----

def _kube_yaml(config: dict) -> str:
    """clientcmd.Write layout: keys sorted, sequences not indented, named lists sorted by name."""
    for key in ("clusters", "contexts", "users"):
        config[key] = sorted(config.get(key) or [], key=lambda e: e.get("name", ""))
    config.setdefault("preferences", {})
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False, width=1 << 30)


def _merge_kubeconfig(existing: dict, new: dict, force: bool, out: list[str]) -> dict:
    """siderolabs/go-kubeconfig Merger.Merge (non-interactive: conflicts are renamed unless --force)."""
    sections = {"cluster": "clusters", "auth info": "users", "context": "contexts"}
    field = {"clusters": "cluster", "users": "user", "contexts": "context"}
    current = {s: {e["name"]: e.get(field[s]) for e in existing.get(s) or [] if isinstance(e, dict)}
               for s in sections.values()}
    mapped: dict[str, dict[str, str]] = {}
    previous: dict[str, str] = {}
    for what, section in sections.items():
        mapped[section] = {}
        for entry in new[section]:
            name = merged = entry["name"]
            for old, renamed in previous.items():
                merged = merged.replace(old, renamed)
            if merged in current[section] and current[section][merged] != entry[field[section]] and not force:
                i, base = 0, merged
                while merged in current[section]:
                    i += 1
                    merged = f"{base}-{i}"
            mapped[section][name] = merged
        previous = mapped[section]
    for what, section in sections.items():
        for entry in new[section]:
            merged = mapped[section][entry["name"]]
            if merged != entry["name"]:
                out.append(f"renamed {what} {_go_quote(entry['name'])} -> {_go_quote(merged)}\n")
            value = dict(entry[field[section]])
            if section == "contexts":
                value["user"] = mapped["users"].get(value["user"], value["user"])
                value["cluster"] = mapped["clusters"].get(value["cluster"], value["cluster"])
                existing["current-context"] = merged
            current[section][merged] = value
    for section in sections.values():
        existing[section] = [{"name": n, field[section]: v} for n, v in current[section].items()]
    return existing


def _lab_cluster_access(state_dir: Path) -> dict:
    try:
        return json.loads((Path(state_dir) / "kubernetes.json").read_text())
    except (OSError, ValueError):
        return {}


def cmd_kubeconfig(state_dir: Path, args: list[str], opts: dict, changed: set) -> None:
    connect(state_dir)
    merge, force = opts["merge"], opts["force"]
    if args:
        local = args[0]
    elif merge:
        local = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p),
                     os.path.join(os.path.expanduser("~"), ".kube", "config"))
    else:
        local = os.getcwd()
    local = os.path.normpath(local)
    if os.path.isdir(local):
        local = os.path.join(local, "kubeconfig")
    elif not os.path.exists(local):
        os.makedirs(os.path.dirname(local) or ".", 0o755, exist_ok=True)
    if os.path.exists(local) and not force and not merge:
        raise CmdError(f"kubeconfig file already exists, use --force to overwrite: {_go_quote(local)}")
    merge = merge and os.path.exists(local)
    cluster = opts["cluster"]
    with locked(state_dir, exclusive=False):
        if Store(state_dir).get(CLUSTER_TYPE, DEFAULT_NS, cluster) is None:
            raise CmdError(f"cluster not found: {_go_quote(cluster)}")
    if not opts["service-account"]:
        raise CmdError("the lab stand-in supports only --service-account kubeconfigs (OIDC needs a browser)")
    if not opts["user"]:
        raise CmdError("--user flag is required when --service-account is set to true")
    ttl = opts["ttl"]
    if ttl <= 0:
        raise CmdError("rpc error: code = InvalidArgument desc = service account ttl is must be positive")
    if ttl > SERVICE_ACCOUNT_TOKEN_MAX_NS:
        raise CmdError("rpc error: code = InvalidArgument desc = service account ttl is too long "
                       f"(max allowed: {_go_duration(SERVICE_ACCOUNT_TOKEN_MAX_NS)})")
    name = f"{LAB_ACCOUNT}-{cluster}-{opts['user']}"
    context = opts["force-context-name"] or name
    # The lab's real kube-apiserver when it runs (lab/kube_lab.py wrote how to reach it), else a placeholder.
    access = _lab_cluster_access(state_dir)
    cluster_entry = {"server": access.get("server", LAB_KUBE_API)}
    if access.get("certificate-authority-data"):
        cluster_entry["certificate-authority-data"] = access["certificate-authority-data"]
    new = {"apiVersion": "v1", "kind": "Config", "current-context": context,
           "clusters": [{"name": name, "cluster": cluster_entry}],
           "contexts": [{"name": context, "context": {"cluster": name, "namespace": "default", "user": name}}],
           "users": [{"name": name, "user": {"token": access.get("token") or secrets.token_urlsafe(32)}}]}
    messages: list[str] = []
    if merge:
        try:
            with open(local, encoding="utf-8") as f:
                existing = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CmdError(f"lab stand-in: cannot read the kubeconfig to merge into ({local}): {e}") from None
        new = _merge_kubeconfig(existing if isinstance(existing, dict) else {}, new, force, messages)
    sys.stdout.write("".join(messages))
    _atomic_write(Path(local), _kube_yaml(new), mode=0o600)


# ---- lab helpers: provider heartbeat ----

def heartbeat(state_dir: str | os.PathLike, provider_id: str, *, error: str = "",
              at: dt.datetime | float | None = None) -> None:
    """What a running infra provider does every few seconds (ProviderHealthStatusController): write its
    InfraProviderHealthStatus (namespace infra-provider-ephemeral, id = provider id, owned by the controller)
    with lastheartbeattimestamp = `at` (default now) and `error` ("" = healthy)."""
    state = Path(state_dir)
    when = at.timestamp() if isinstance(at, dt.datetime) else time.time() if at is None else float(at)
    seconds = math.floor(when)
    rd = resolve_type(INFRA_PROVIDER_HEALTH_STATUS_TYPE)
    with locked(state):
        store = Store(state)
        old = store.get(INFRA_PROVIDER_HEALTH_STATUS_TYPE, rd.default_ns, provider_id)
        res = new_resource(INFRA_PROVIDER_HEALTH_STATUS_TYPE, rd.default_ns, provider_id,
                           {"lastheartbeattimestamp": {"seconds": seconds,
                                                       "nanos": int(round((when - seconds) * 1e9)) % 10**9},
                            "error": error})
        res["owner"] = f"{provider_id}.ProviderHealthStatusController"
        res["version"] = (old["version"] + 1) if old else 1
        res["created"] = old["created"] if old else now_rfc3339()
        res["updated"] = now_rfc3339()
        store.put(res)


# ---- the verbs ----

def cmd_template(state_dir: Path, verb: str, opts: dict, allowed: str) -> int:
    """sync, diff, delete, status, export (validate and render are the real binary's)."""
    path = opts.get("file", "")
    connect(state_dir)
    if verb == "export":
        return cmd_export(state_dir, opts)
    if verb == "sync":
        try:
            files = _discover_files(path)
        except CmdError as e:
            raise CmdError(f"failed to discover template files from {_go_quote(path)}: {e.text}") from None
        if opts["verbose"]:
            sys.stdout.write(f"Processing {len(files)} template file(s)\n")
        for file in files:
            if opts["verbose"]:
                sys.stdout.write(f"Syncing template: {file}\n")
            try:
                _sync_file(state_dir, file, allowed, opts)
            except CmdError as e:
                raise CmdError(f"failed to sync template {_go_quote(file)}: {e.text}") from None
        return 0
    if verb == "diff":
        expected = _render_template(path, allowed)
        with locked(state_dir, exclusive=False):
            store = Store(state_dir)
            create, update, phases = plan_sync(store, _cluster_of(expected), expected)
            text = "".join([render_diff(o, n) for o, n in update] + [render_diff(None, r) for r in create]
                           + [render_diff(r, None) for p in phases for r in p])
        sys.stdout.write(text)
        return 0
    cluster = _validated_cluster_name(path, allowed)
    if verb == "status":
        cluster_status(state_dir, cluster, opts["wait"] / 1e9, opts["quiet"])
        return 0
    return delete_cluster(state_dir, cluster, opts)


def _cluster_of(expected: list[dict]) -> str:
    return next(r["id"] for r in expected if r["type"] == CLUSTER_TYPE)


def _sync_file(state_dir: Path, file: str, allowed: str, opts: dict) -> None:
    expected = _render_template(file, allowed)
    with locked(state_dir):
        store = Store(state_dir)
        plan = plan_sync(store, _cluster_of(expected), expected)
        execute_plan(store, plan, opts["verbose"], opts["dry-run"])


def delete_cluster(state_dir: Path, cluster: str, opts: dict) -> int:
    """operations.deleteTemplate (template delete and `cluster delete`)."""
    with locked(state_dir):
        store = Store(state_dir)
        create, update, phases = plan_delete(store, cluster)
        if opts["destroy-disconnected-machines"]:  # no machines in the lab: only the cluster's extensions
            phases = [store.list(EXTENSIONS_CONFIGURATION_TYPE, DEFAULT_NS)] + phases
            phases[0] = [r for r in phases[0] if r["labels"].get(LABEL_CLUSTER) == cluster]
        execute_plan(store, (create, update, phases), opts["verbose"], opts["dry-run"])
    return 0


def cmd_export(state_dir: Path, opts: dict) -> int:
    out = None
    if opts["output"]:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if opts["force"] else os.O_EXCL)
        try:
            out = os.open(opts["output"], flags, 0o644)
        except OSError as e:
            raise CmdError("failed to open output file: " + _os_error_text("open", opts["output"], e)) from None
    try:
        with locked(state_dir, exclusive=False):
            text = export_template(Store(state_dir), opts["cluster"], opts["include-kernel-args"])
        if out is None:
            sys.stdout.write(text)
        else:
            os.write(out, text.encode("utf-8"))
    finally:
        if out is not None:
            os.close(out)
    return 0


# --------------------------------------------------------------------------------------
# Command line (cobra/pflag behaviour of omnictl v1.8.0)
# --------------------------------------------------------------------------------------

class _Flag:
    def __init__(self, name: str, short: str, kind: str, default: Any):
        self.name, self.short, self.kind, self.default = name, short, kind, default


_GLOBAL_FLAGS = [
    _Flag("context", "", "string", ""),
    _Flag("insecure-skip-tls-verify", "", "bool", False),
    _Flag("omniconfig", "", "string", ""),
    _Flag("siderov1-keys-dir", "", "string", ""),
    _Flag("help", "h", "bool", False),
]
COMMAND_FLAGS: dict[str, list[_Flag]] = {
    "": [_Flag("version", "v", "bool", False)],
    "apply": [_Flag("file", "f", "string", ""), _Flag("verbose", "v", "bool", False),
              _Flag("dry-run", "d", "bool", False)],
    "get": [_Flag("namespace", "n", "string", ""), _Flag("watch", "w", "bool", False),
            _Flag("output", "o", "string", "table"), _Flag("selector", "l", "string", ""),
            _Flag("id-match-regexp", "", "string", "")],
    "delete": [_Flag("namespace", "n", "string", "default"), _Flag("all", "", "bool", False),
               _Flag("selector", "l", "string", "")],
}
_ALIASES = {"g": "get", "d": "delete", "c": "cluster"}
# every other omnictl v1.8.0 top-level command (the stand-in refuses them clearly)
_OTHER_COMMANDS = ["audit-log", "completion", "config", "configure", "edit", "infraprovider",
                   "jointoken", "machine", "machine-logs", "media", "serviceaccount", "support",
                   "talosconfig", "user"]
_ALL_COMMANDS = sorted(["apply", "cluster", "delete", "get", "help", "kubeconfig"] + _OTHER_COMMANDS)
_FILE_FLAG = _Flag("file", "f", "string", "")
_VERBOSE_FLAGS = [_Flag("verbose", "v", "bool", False), _Flag("dry-run", "d", "bool", False),
                  _Flag("destroy-disconnected-machines", "", "bool", False)]
_STATUS_FLAGS = [_Flag("quiet", "q", "bool", False), _Flag("wait", "w", "duration", 300 * 10**9)]
# omnictl cluster ... leaves the stand-in runs (flags as in pkg/omnictl/cluster/...)
CLUSTER_FLAGS: dict[tuple, list[_Flag]] = {
    ("template", "validate"): [_FILE_FLAG],
    ("template", "render"): [_FILE_FLAG],
    ("template", "diff"): [_FILE_FLAG],
    ("template", "sync"): [_FILE_FLAG] + _VERBOSE_FLAGS[:2],
    ("template", "delete"): [_FILE_FLAG] + _VERBOSE_FLAGS,
    ("template", "status"): [_FILE_FLAG] + _STATUS_FLAGS,
    ("template", "export"): [_Flag("cluster", "c", "string", ""), _Flag("output", "o", "string", ""),
                             _Flag("include-kernel-args", "", "bool", False), _Flag("force", "f", "bool", False)],
    ("status",): _STATUS_FLAGS,
    ("delete",): _VERBOSE_FLAGS,
}
_TEMPLATE_FLAGS = [_Flag("allowed-dir", "", "string", "./")]
_CLUSTER_UNSUPPORTED = ("import", "kubernetes", "k", "lock", "machine", "secret", "unlock")
COMMAND_FLAGS["kubeconfig"] = [
    _Flag("cluster", "c", "string", ""), _Flag("force", "f", "bool", False),
    _Flag("force-context-name", "", "string", ""), _Flag("merge", "m", "bool", True),
    _Flag("service-account", "", "bool", False), _Flag("ttl", "", "duration", 365 * 24 * 3600 * 10**9),
    _Flag("user", "", "string", ""), _Flag("groups", "", "strings", ["system:masters"]),
    _Flag("grant-type", "", "string", ""), _Flag("break-glass", "", "bool", False),
    _Flag("oidc-cache-base-dir", "", "string", ""), _Flag("oidc-cache-isolation", "", "bool", False)]
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9}


def go_parse_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds."""
    from fractions import Fraction

    s, total = text, Fraction(0)
    neg = s[:1] == "-"
    s = s[1:] if s[:1] in "+-" else s
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {_go_quote(text)}")
    while s:
        m = re.match(r"([0-9]*)(?:\.([0-9]*))?", s)
        if not (m.group(1) or m.group(2)):
            raise ValueError(f"time: invalid duration {_go_quote(text)}")
        s = s[m.end():]
        unit = re.match(r"[^0-9.]*", s).group(0)
        if not unit:
            raise ValueError(f"time: missing unit in duration {_go_quote(text)}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(text)}")
        s = s[len(unit):]
        total += Fraction(f"{m.group(1) or 0}.{m.group(2) or 0}") * _DURATION_UNITS[unit]
    return -int(total) if neg else int(total)


def _set_flag(f: _Flag, values: dict, changed: set, raw: str) -> None:
    if f.kind == "duration":
        try:
            values[f.name] = go_parse_duration(raw)
        except ValueError as e:
            label = f"-{f.short}, --{f.name}" if f.short else f"--{f.name}"
            raise CmdError(f'invalid argument "{raw}" for "{label}" flag: {e}') from None
    elif f.kind == "strings":
        items = [x for x in raw.split(",")] if raw else []
        values[f.name] = (values[f.name] if f.name in changed else []) + items
    else:
        values[f.name] = raw


def _parse_bool(flag: _Flag, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    label = f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"
    raise CmdError(f'invalid argument "{value}" for "{label}" flag: strconv.ParseBool: '
                   f'parsing "{value}": invalid syntax')


def parse_flags(args: list[str], flags: list[_Flag]) -> tuple[dict, set, list[str]]:
    """pflag: interspersed flags, --name[=v], -n v, -nv, -n=v, combined bool shorthands, '--'."""
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values = {f.name: list(f.default) if isinstance(f.default, list) else f.default for f in flags}
    changed: set[str] = set()
    positionals: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            positionals.extend(args[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            f = by_long.get(name)
            if f is None:
                raise CmdError(f"unknown flag: --{name}")
            if f.kind == "bool":
                values[name] = _parse_bool(f, val) if eq else True
            elif eq:
                _set_flag(f, values, changed, val)
            elif i < len(args):
                _set_flag(f, values, changed, args[i])
                i += 1
            else:
                raise CmdError(f"flag needs an argument: --{name}")
            changed.add(name)
        elif a.startswith("-") and len(a) > 1:
            shorts = a[1:]
            j = 0
            while j < len(shorts):
                c = shorts[j]
                f = by_short.get(c)
                if f is None:
                    raise CmdError(f"unknown shorthand flag: '{c}' in -{shorts}")
                if f.kind == "bool":
                    if j + 1 < len(shorts) and shorts[j + 1] == "=":
                        values[f.name] = _parse_bool(f, shorts[j + 2:])
                        j = len(shorts)
                    else:
                        values[f.name] = True
                        j += 1
                else:
                    if j + 1 < len(shorts):
                        rest = shorts[j + 1:]
                        _set_flag(f, values, changed, rest[1:] if rest.startswith("=") else rest)
                    elif i < len(args):
                        _set_flag(f, values, changed, args[i])
                        i += 1
                    else:
                        raise CmdError(f"flag needs an argument: '{c}' in -{shorts}")
                    j = len(shorts)
                changed.add(f.name)
        else:
            positionals.append(a)
    return values, changed, positionals


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _unknown_command(name: str, path: str = "omnictl") -> CmdError:
    suggestions = [c for c in _ALL_COMMANDS
                   if _levenshtein(name.lower(), c.lower()) <= 2 or c.lower().startswith(name.lower())]
    text = f'unknown command "{name}" for "{path}"'
    if suggestions:
        text += "\n\nDid you mean this?\n\t" + "\n\t".join(suggestions) + "\n"
    return CmdError(text, unknown_command=True)


def _find_command(args: list[str]) -> str | None:
    """cobra's stripFlags + Find over the root flags: the first non-flag argument."""
    return _first_positional(args, _GLOBAL_FLAGS + COMMAND_FLAGS[""])


def _usage_only() -> str:
    text = HELP_TEXTS["root"].split("\n\n", 1)[1]
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith(("  -h, --help", "  -v, --version")))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except CmdError as e:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {e.text}\n")
        if e.unknown_command:
            sys.stderr.write("Run 'omnictl --help' for usage.\n")
        return 1
    except GoPanic as e:
        sys.stdout.flush()
        sys.stderr.write(f"panic: {e}\n\ngoroutine 1 [running]:\n"
                         "(lab stand-in: omnictl v1.8.0 panics here too, e.g. on an empty YAML document "
                         "such as a trailing '---' in an apply file)\n")
        return 2
    except BrokenPipeError:
        return 1


def _run(argv: list[str]) -> int:
    name = _find_command(argv)
    cmd = _ALIASES.get(name, name) if name else None
    if cmd in _OTHER_COMMANDS:
        raise NotSupported(f"'omnictl {cmd}'")
    if cmd in ("cluster", "kubeconfig"):
        rest = list(argv)
        rest.remove(name)
        return _run_cluster(argv, rest) if cmd == "cluster" else _run_kubeconfig(argv, rest)
    if cmd not in ("apply", "get", "delete", "help"):
        values, _, positionals = parse_flags(argv, _GLOBAL_FLAGS + COMMAND_FLAGS[""])
        if values["help"]:
            sys.stdout.write(HELP_TEXTS["root"])
            return 0
        if values["version"]:
            sys.stdout.write(VERSION_LINE + "\n")
            return 0
        if positionals:
            raise _unknown_command(positionals[0])
        sys.stdout.write(HELP_TEXTS["root"])
        return 0
    rest = list(argv)
    rest.remove(name)
    if cmd == "help":
        _, _, topics = parse_flags(rest, _GLOBAL_FLAGS)
        if not topics:
            sys.stdout.write(HELP_TEXTS["root"])
            return 0
        topic = _ALIASES.get(topics[0], topics[0])
        if topic in HELP_TEXTS and topic != "root":
            sys.stdout.write(HELP_TEXTS[topic])
            return 0
        if topic in ("cluster", "kubeconfig"):
            return run_real_omnictl(argv, capture=False).returncode
        if topic in _OTHER_COMMANDS:
            raise NotSupported(f"'omnictl help {topic}'")
        sys.stderr.write(f"Unknown help topic [`{' '.join(topics)}`]\n" + _usage_only())
        return 0
    values, changed, positionals = parse_flags(rest, _GLOBAL_FLAGS + COMMAND_FLAGS[cmd])
    if values["help"]:
        sys.stdout.write(HELP_TEXTS[cmd])
        return 0
    state_dir = default_state_dir()
    if cmd == "apply":
        if positionals:
            raise CmdError(f'unknown command "{positionals[0]}" for "omnictl apply"')
        if "file" not in changed:
            raise CmdError('required flag(s) "file" not set')
        cmd_apply(state_dir, values)
    elif cmd == "get":
        if not 1 <= len(positionals) <= 2:
            raise CmdError(f"accepts between 1 and 2 arg(s), received {len(positionals)}")
        cmd_get(state_dir, positionals, values)
    else:
        if len(positionals) < 1:
            raise CmdError(f"requires at least 1 arg(s), only received {len(positionals)}")
        if "all" in changed and "selector" in changed:
            raise CmdError("if any flags in the group [all selector] are set none of the others can be; "
                           "[all selector] were all set")
        cmd_delete(state_dir, positionals, values, "namespace" in changed)
    return 0


def _first_positional(args: list[str], flags: list[_Flag]) -> str | None:
    """cobra's stripFlags: the first argument that is neither a flag nor a flag's value
    (a non-bool `--name` or `-n` without `=` takes the next argument as its value)."""
    long_bools = {f.name for f in flags if f.kind == "bool"}
    short_bools = {f.short for f in flags if f.kind == "bool" and f.short}
    i = 0
    while i < len(args):
        s = args[i]
        i += 1
        if s == "--":
            return None
        if s.startswith("--") and "=" not in s and s[2:] not in long_bools:
            i += 1
        elif s.startswith("-") and "=" not in s and len(s) == 2 and s[1:] not in short_bools:
            i += 1
        elif s and not s.startswith("-"):
            return s
    return None


def _help_requested(args: list[str]) -> bool:
    head = args[:args.index("--")] if "--" in args else args
    return any(a in ("-h", "--help") or a.startswith("--help=") for a in head)


def _run_cluster(argv: list[str], rest: list[str]) -> int:
    args = list(rest)
    sub = _first_positional(args, _GLOBAL_FLAGS)
    key = None
    if sub in ("template", "t"):
        args.remove(sub)
        verb = _first_positional(args, _GLOBAL_FLAGS + _TEMPLATE_FLAGS)
        if ("template", verb) in CLUSTER_FLAGS:
            args.remove(verb)
            key = ("template", verb)
    elif sub in ("status", "delete"):
        args.remove(sub)
        key = (sub,)
    elif sub in _CLUSTER_UNSUPPORTED:
        raise NotSupported(f"'omnictl cluster {sub}'")
    if key is None or _help_requested(args) or key[-1] in ("validate", "render"):
        # help texts and the offline verbs: exactly what the real omnictl prints
        return run_real_omnictl(argv, capture=False).returncode
    flags = _GLOBAL_FLAGS + (_TEMPLATE_FLAGS if key[0] == "template" else []) + CLUSTER_FLAGS[key]
    values, changed, positionals = parse_flags(args, flags)
    state_dir = default_state_dir()
    if key[0] == "template":
        if positionals:
            raise CmdError(f'unknown command "{positionals[0]}" for "omnictl cluster template {key[1]}"')
        root = _open_root(values.get("file", ""), values["allowed-dir"])
        required = "cluster" if key[1] == "export" else "file"
        if required not in changed:
            raise CmdError(f'required flag(s) "{required}" not set')
        return cmd_template(state_dir, key[1], values, root)
    if len(positionals) != 1:
        raise CmdError(f"accepts 1 arg(s), received {len(positionals)}")
    connect(state_dir)
    if key == ("status",):
        cluster_status(state_dir, positionals[0], values["wait"] / 1e9, values["quiet"])
        return 0
    return delete_cluster(state_dir, positionals[0], values)


def _run_kubeconfig(argv: list[str], rest: list[str]) -> int:
    if _help_requested(rest):
        return run_real_omnictl(argv, capture=False).returncode
    values, changed, positionals = parse_flags(rest, _GLOBAL_FLAGS + COMMAND_FLAGS["kubeconfig"])
    if len(positionals) > 1:
        raise CmdError(f"accepts at most 1 arg(s), received {len(positionals)}")
    if "cluster" not in changed:
        raise CmdError('required flag(s) "cluster" not set')
    cmd_kubeconfig(default_state_dir(), positionals, values, changed)
    return 0


def _admin(argv: list[str]) -> int:
    """python -m lab.omni_standin init|stop --state-dir D [--endpoint URL]"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lab.omni_standin",
                                     description="Bring the lab's Omni stand-in up (init) or down (stop).")
    sub = parser.add_subparsers(dest="action", required=True)
    p_init = sub.add_parser("init", help="write server.json with a fresh service-account key")
    p_init.add_argument("--state-dir", default=str(default_state_dir()))
    p_init.add_argument("--endpoint", required=True)
    p_stop = sub.add_parser("stop", help="remove server.json (Omni unreachable); resources are kept")
    p_stop.add_argument("--state-dir", default=str(default_state_dir()))
    ns = parser.parse_args(argv)
    try:
        if ns.action == "init":
            init_server(ns.state_dir, ns.endpoint)
        else:
            stop_server(ns.state_dir)
    except CmdError as e:
        sys.stderr.write(f"error: {e.text}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_admin(sys.argv[1:]))
