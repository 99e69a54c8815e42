"""OmniServiceAccount: an Omni service account and the one key this program holds for it.

Two kinds, one provider: the infra provider's registration (`infra-provider:<id>`, role InfraProvider, with the
InfraProvider resource Omni lists it by) and accounts for automation (the drift job's Reader).

- create: `omnictl serviceaccount create NAME --use-user-role=false --role ROLE --ttl TTL`, which prints the key
  once. (Not `infraprovider create`: omnictl v1.8 gives that key a year whatever --ttl says, and it fails half-done
  when the InfraProvider resource exists.) The key is a secret output, never a stack output.
- adoption: Omni never gives a key back, so an account that exists is taken over with the key the stack config
  holds for it (providerOmniServiceAccountKey for the provider), once; from then on the program renews it.
- renewal (`update`): when less than a third of the key's life is left, `serviceaccount renew` adds a new key (a
  key inside keyExpiryWarningDays is warned about, and counted as drift, until `up` renews it). Omni has no call
  that revokes one key of an account (its PublicKeys are no role's to delete), so the old key lapses at its own
  expiry, which is near by then.
- rotation on purpose (the stack's providerKeyRotation / automationKeyRotation changes, e.g. after a leak): the
  account is destroyed, which revokes every key at once, and made again with a new key.
- read: the account still exists (its Identity), and, for the accounts Omni lists, that the key is still
  registered. What a key expires at is read from the key itself (service_account_key.key_facts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.core.console import progress
from components.core.credential_life import rotation_asked, running_out
from components.core.dynamic import OmniProvider, TypedResource, is_unknown
from components.omni.omnictl import NotFound, Unauthorized
from components.omni.service_account_key import KEY_EXPIRY_MARK, KeyFacts, KeyUnreadable, expiry_notice, key_facts

INFRA_PROVIDER_PREFIX = "infra-provider:"
INFRA_PROVIDER_ROLE = "InfraProvider"
IDENTITY_TYPE = "Identities.omni.sidero.dev"
PROVIDER_TYPE = "InfraProviders.omni.sidero.dev"
PROVIDER_NAMESPACE = "infra-provider"
# Where the provider's key is taken from when its account exists already (adoption).
PROVIDER_ADOPTION_KEY = "providerOmniServiceAccountKey"


def provider_account(infra_provider_id: str) -> str:
    """The service account Omni knows an infra provider by (the provider's identity is its key's account)."""
    return f"{INFRA_PROVIDER_PREFIX}{infra_provider_id}"


def identity_id(account: str) -> str:
    """The Identity Omni keeps for a service account (what `omnictl get identities` lists)."""
    if account.startswith(INFRA_PROVIDER_PREFIX):
        return f"{account[len(INFRA_PROVIDER_PREFIX) :]}@infra-provider.serviceaccount.omni.sidero.dev"
    return f"{account}@serviceaccount.omni.sidero.dev"


def printed_key(stdout: str) -> str:
    """The key `omnictl serviceaccount create|renew` prints once, as an environment assignment."""
    for line in stdout.splitlines():
        if line.startswith("OMNI_SERVICE_ACCOUNT_KEY="):
            return line.split("=", 1)[1].strip()
    raise KeyUnreadable("omnictl printed no OMNI_SERVICE_ACCOUNT_KEY line")


def renewal_due(expires_at: str | None, ttl_seconds: float, now: datetime) -> bool:
    """Whether `up` renews a key that expires at expires_at (ISO 8601; None: never): less than a third of the life
    the spec asks for is left."""
    if not expires_at:
        return False
    return running_out(datetime.fromisoformat(expires_at).timestamp(), ttl_seconds, now.timestamp())


def _key_outputs(props: dict, key: str) -> dict:
    facts = key_facts(key)
    if facts.account != props["account"]:
        raise KeyUnreadable(f"the key is service account {facts.account!r}'s, not {props['account']!r}'s")
    return {
        **props,
        "key": key,
        "key_id": facts.fingerprint,
        "expires_at": facts.expires_at.isoformat() if facts.expires_at else None,
        "rotated": props.get("rotation") or props.get("rotated") or "",
    }


def _ttl(props: dict) -> tuple[str, str]:
    """omnictl's --ttl for the life the spec asks for (a Go duration in seconds)."""
    return "--ttl", f"{int(float(props['ttl_seconds']))}s"


class ServiceAccountError(Exception):
    pass


class ServiceAccountProvider(OmniProvider):
    """The admin key and omnictl come from the stack config; the key this makes is an output (a secret)."""

    def check(self, _olds: dict, news: dict) -> CheckResult:
        key = news.get("key")
        if key and not is_unknown(key):
            try:
                _key_outputs(news, key)
            except KeyUnreadable as exc:
                return CheckResult(news, [CheckFailure("key", f"{PROVIDER_ADOPTION_KEY}: {exc}")])
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        replaces = [k for k in ("account", "role") if olds.get(k) != news.get(k)]
        changed = list(replaces)
        if rotation_asked(olds, news):
            changed.append("rotation")
        if not olds.get("key_id") or renewal_due(olds.get("expires_at"), float(news["ttl_seconds"]), datetime.now(UTC)):
            changed.append("key_id")
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def _exists(self, account: str) -> bool:
        return self.client.get_or_none(IDENTITY_TYPE, identity_id(account), "default") is not None

    def _listed_key_ids(self, account: str) -> set[str] | None:
        """The key ids `serviceaccount list` shows for the account; None for an infra provider's (not listed)."""
        if account.startswith(INFRA_PROVIDER_PREFIX):
            return None
        rows = [line.split() for line in self.client.run("serviceaccount", "list").splitlines()[1:]]
        return {row[3].lower() for row in rows if len(row) > 3 and row[0] == account}

    def _mint(self, props: dict) -> dict:
        account, provider_id = props["account"], props.get("infra_provider")
        if provider_id and self.client.get_or_none(PROVIDER_TYPE, provider_id, PROVIDER_NAMESPACE) is None:
            # What `omnictl infraprovider create` makes first: Omni lists (and cleans up) the provider by it.
            self.client.apply(
                {"metadata": {"namespace": PROVIDER_NAMESPACE, "type": PROVIDER_TYPE, "id": provider_id}, "spec": {}}
            )
        progress(f"making Omni service account {account!r} (role {props['role']}) and its key")
        printed = self.client.run(
            "serviceaccount",
            "create",
            account,
            "--use-user-role=false",
            "--role",
            props["role"],
            *_ttl(props),
            idempotent=False,
        )
        return _key_outputs(props, printed_key(printed))

    def create(self, props: dict) -> CreateResult:
        account = props["account"]
        if not self._exists(account):
            return CreateResult(account, self._mint(props))
        key = props.get("key")
        if not key:
            raise ServiceAccountError(self._cannot_adopt(props))
        outs = _key_outputs(props, key)
        listed = self._listed_key_ids(account)
        if listed is not None and outs["key_id"] not in listed:
            raise ServiceAccountError(f"the key given for {account!r} is not one Omni holds for it (expired?)")
        progress(f"Omni service account {account!r} exists: taken over with the key the stack config holds")
        return CreateResult(account, outs)

    @staticmethod
    def _cannot_adopt(props: dict) -> str:
        account = props["account"]
        if props.get("infra_provider"):
            return (
                f"infra provider {props['infra_provider']!r} exists in Omni, and Omni never gives its key back: set "
                f"its key once with `pulumi config set --secret omni-scale:{PROVIDER_ADOPTION_KEY} KEY` (the program "
                f"renews it from then on), or `omnictl serviceaccount destroy {account}` to let the program make a "
                "new one"
            )
        return (
            f"service account {account!r} exists in Omni, and Omni never gives its key back: "
            f"`omnictl serviceaccount destroy {account}` lets the program make it again, with a key of its own"
        )

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        account = news["account"]
        news = {**news, "rotated": olds.get("rotated")}  # the last rotation's label, unless this is a new one
        if rotation_asked(olds, news) or not self._exists(account):
            progress(f"rotating {account!r}: the account is made again, so every key it had stops working now")
            self._destroy(account)
            return UpdateResult(self._mint(news))
        progress(f"renewing the key of Omni service account {account!r}")
        printed = self.client.run("serviceaccount", "renew", account, *_ttl(news), idempotent=False)
        return UpdateResult(_key_outputs(news, printed_key(printed)))

    def read(self, id_: str, props: dict) -> ReadResult:
        account = props.get("account") or id_
        try:
            exists = self._exists(account)
        except Unauthorized:
            # Identities are an Admin's to read: the drift job runs as a Reader (OMNI_SCALE_OMNI_KEY). The key's
            # expiry, from the key in the state, is still warned about; the account itself is not looked at.
            progress(
                f"the run's Omni key may not read identities: service account {account!r} taken as the state has it"
            )
            return ReadResult(id_, props)
        if not exists:
            return ReadResult(None, {})
        listed = self._listed_key_ids(account)
        if listed is not None and props.get("key_id") not in listed:
            # The account is there but not this key (expired and pruned, or removed): `up` gives it a new one.
            return ReadResult(id_, {**props, "key_id": None})
        return ReadResult(id_, props)

    def delete(self, _id: str, props: dict) -> None:
        # The account only: an infra provider's InfraProvider resource (and the machines it made) stay; Omni tears
        # those down only with `omnictl infraprovider delete`, which is not this program's to run.
        self._destroy(props["account"])

    def _destroy(self, account: str) -> None:
        """The account and every key of it; one already gone is no error."""
        try:
            self.client.run("serviceaccount", "destroy", account, idempotent=False)
        except NotFound:
            pass


class OmniServiceAccount(TypedResource, module="omni", name="ServiceAccount"):
    key: pulumi.Output[str]
    key_id: pulumi.Output[str]
    expires_at: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        account: str,
        role: str,
        ttl_days: float,
        infra_provider: str | None = None,
        adoption_key: pulumi.Input[str] | None = None,
        rotation: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "account": account,
            "role": role,
            "infra_provider": infra_provider,
            "ttl_seconds": ttl_days * 86400,
            "rotation": rotation,
            # The key the stack config holds for an account that exists already (adoption); else the one made.
            "key": adoption_key,
            "key_id": None,
            "expires_at": None,
            "rotated": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["key"])
        super().__init__(ServiceAccountProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret))


def warn_when_due(account: OmniServiceAccount, name: str, warn_days: float) -> None:
    """A warning in every preview and `up` (the drift job counts it as drift) while the key the state holds for the
    account expires within warn_days: `up` renews it."""

    def warn(facts: list) -> None:
        key_id, expires_at = facts
        if not expires_at:
            return
        known = KeyFacts(name, str(key_id or ""), datetime.fromisoformat(expires_at))
        line = expiry_notice(
            "the program's key", known, datetime.now(UTC), timedelta(days=warn_days), "`pulumi up` renews it"
        )
        if line:
            pulumi.log.warn(KEY_EXPIRY_MARK + line, resource=account)

    pulumi.Output.all(account.key_id, account.expires_at).apply(warn)
