"""omni-scale: the Omni-managed Talos estate on the Matrix Proxmox cluster, as one Pulumi program.

specs/omni.yaml says what the estate is; Pulumi.<stack>.yaml says where it lives
(endpoints, secrets, the omnictl to use) and whether it is protected.
"""

import pulumi

from components.core.program import cluster_manifests, load_program_inputs
from components.kubernetes.tailscale_operator import TailscaleOperator
from components.omni.etcd_backups import EtcdBackupStore
from components.omni.machine_class import MachineClass
from components.omni.service_account_key import KEY_EXPIRY_MARK
from components.omni.service_accounts import (
    INFRA_PROVIDER_ROLE,
    OmniServiceAccount,
    provider_account,
    warn_when_due,
)
from components.omni.talos_cluster import TalosCluster
from components.proxmox.identity import ProviderProxmoxIdentity
from components.proxmox.lxc import ProviderLxc
from components.proxmox.placement import ControlPlanePlacement
from components.proxmox.storage_preflight import StoragePreflight

spec, settings = load_program_inputs()

# Keys expire silently (an expired provider key stalls provisioning mid-way): say so in every preview, and the drift
# job counts it as drift.
due_keys, unreadable_keys = settings.key_expiry_notices()
for notice in due_keys:
    pulumi.log.warn(KEY_EXPIRY_MARK + notice)
for notice in unreadable_keys:
    pulumi.log.warn(notice)

# Proxmox first: would the provider find nodes, storage, bridges, capacity and sane DNS?
# It stops `preview` with every problem before anything is applied.
preflight = StoragePreflight(spec.proxmox.cluster, spec)

# The provider LXC and its compose stack: the provider must run (and register its providerdata
# schema with Omni) before MachineClasses can be checked against it. Its Omni identity and key are the program's:
# made (or adopted from the stack config once), renewed when due, and written only into the stack's .env.
provider_lxc = None
if spec.provider_lxc is not None:
    registration = OmniServiceAccount(
        f"infra-provider-{spec.infra_provider.id}",
        account=provider_account(spec.infra_provider.id),
        role=INFRA_PROVIDER_ROLE,
        ttl_days=spec.infra_provider.key_ttl_days,
        infra_provider=spec.infra_provider.id,
        adoption_key=settings.adoption_key("providerOmniServiceAccountKey"),
        rotation=settings.key_rotation("providerKeyRotation"),
        opts=pulumi.ResourceOptions(protect=settings.protect),
    )
    warn_when_due(registration, provider_account(spec.infra_provider.id), settings.key_expiry_warning_days)
    # Its Proxmox user, role and token too, when the spec asks the program to make them.
    proxmox_identity: ProviderProxmoxIdentity | None = None
    proxmox_token: pulumi.Output | None = None
    if spec.infra_provider.proxmox_identity is not None:
        proxmox_identity = ProviderProxmoxIdentity(
            "omni-provider-proxmox-identity",
            spec.infra_provider.proxmox_identity,
            rotation=settings.key_rotation("providerTokenRotation"),
            adoption_token_id=settings.config.get("providerProxmoxTokenId"),
            adoption_token_secret=settings.adoption_key("providerProxmoxTokenSecret"),
            protect=settings.protect,
            opts=pulumi.ResourceOptions(depends_on=[preflight]),
        )
        proxmox_identity.warn_when_due(settings.key_expiry_warning_days)
        token = proxmox_identity.token
        proxmox_token = pulumi.Output.secret(
            pulumi.Output.all(token.token_id, token.token_secret).apply(lambda t: {"id": t[0], "secret": t[1]})
        )
    provider_lxc = ProviderLxc(
        spec.provider_lxc.hostname,
        spec.provider_lxc,
        spec.infra_provider.id,
        secrets=settings.provider_stack_secrets(registration.key, proxmox_token),
        ssh_public_key=settings.provider_lxc_ssh_public_key(),
        provider_key=registration.key,
        provider_proxmox_token=proxmox_token,
        protect=settings.protect,
        opts=pulumi.ResourceOptions(depends_on=[preflight]),
    )
    if proxmox_identity is not None:
        # A rotation's old token goes only once the provider runs on the new one (the deployment waits for that).
        proxmox_identity.retire_after(provider_lxc.deployment)

# Omni service accounts for automation (the drift job's Reader): `make service-account-key NAME=...` hands out a key.
for account_id, account_spec in spec.service_accounts.items():
    automation = OmniServiceAccount(
        f"service-account-{account_id}",
        account=account_id,
        role=account_spec.role,
        ttl_days=account_spec.key_ttl_days,
        rotation=settings.key_rotation("automationKeyRotation"),
    )
    warn_when_due(automation, account_id, settings.key_expiry_warning_days)

# Omni's one etcd backup store; Omni lists its bucket before it accepts it.
backup_store = None
if spec.backups is not None:
    s3 = spec.backups.s3
    backup_store = EtcdBackupStore(
        "etcd-backup-store",
        bucket=s3.bucket,
        region=s3.region,
        endpoint=settings.backup_s3_endpoint(s3.endpoint),
        credentials=settings.backup_s3_credentials(),
        opts=pulumi.ResourceOptions(protect=settings.protect),
    )

# MachineClasses: how the infra provider sizes each kind of VM.
classes = {
    class_id: MachineClass(
        class_id,
        class_spec,
        protect=settings.protect,
        depends_on=[preflight] + ([provider_lxc] if provider_lxc else []),
    )
    for class_id, class_spec in spec.machine_classes.items()
}

# Talos clusters, each after the classes it provisions from, with its CNI rendered into its manifests.
clusters = {
    name: TalosCluster(
        name,
        cluster,
        protect=settings.protect and cluster.production,
        kubeconfig_ttl_seconds=settings.omni.kubeconfig_ttl_seconds,
        manifests=cluster_manifests(spec, name, settings),
        machine_classes=[classes[pool.machine_class] for _, pool, _ in cluster.pools()],
        backup_store=backup_store,
        # A restore deletes the control planes: on a protected production cluster, only when the stack says so.
        restore_confirmed=not (settings.protect and cluster.production) or settings.restore_confirmed(name),
    )
    for name, cluster in spec.clusters.items()
}

# Where the clusters' VMs landed, read once they are ready (and on refresh): control planes per Proxmox node and
# what losing each node would leave.
placement = ControlPlanePlacement(
    "control-plane-placement",
    spec,
    {name: c.template for name, c in clusters.items()},
    clusters=[c.resource for c in clusters.values()],
)

# The Tailscale operator in the cluster the spec names, once that cluster is ready.
operator_spec = spec.tailscale_operator
if operator_spec is not None and operator_spec.enabled:
    target = clusters[operator_spec.cluster]
    operator = TailscaleOperator(
        "tailscale-operator",
        operator_spec,
        target.kubeconfig,
        oauth=settings.tailscale_oauth(operator_spec.oauth.audience),
        chart_repository=settings.tailscale_chart_repository or operator_spec.chart_repository,
        protect=settings.protect and spec.clusters[operator_spec.cluster].production,
        # The cluster resource, which is created only once the cluster is Ready; not the component, whose backup
        # watch (a read after the cluster) the release has no need to wait for.
        depends_on=[target.resource],
    )
    pulumi.export("tailscale_operator", {"cluster": operator_spec.cluster, "status": operator.status})
elif operator_spec is not None:
    pulumi.log.info("tailscale_operator.enabled is false in specs/omni.yaml: the operator release is not managed")

pulumi.export("preflight", {"judgement": preflight.judgement, "readings": preflight.readings})
if provider_lxc is not None:
    pulumi.export("provider_lxc", {"container": provider_lxc.container.id, "compose": provider_lxc.deployment.id})
pulumi.export("machine_classes", {cid: c.provider_data for cid, c in classes.items()})
pulumi.export("clusters", {name: c.shown_template for name, c in clusters.items()})
# When each cluster's kubeconfig expires (`up` renews it once a third of its life is left; the resource's
# kubeconfig_remaining_seconds says how long, as of the last up or refresh).
pulumi.export("kubeconfig_expiry", {name: c.kubeconfig_expires_at for name, c in clusters.items()})
# No kubeconfig among the outputs: the Pulumi SDK's verbose logs (-v=5 and up) print registered outputs,
# secrets included. It stays inside the program (for the Tailscale operator); `omnictl kubeconfig` gives one.
pulumi.export("placement", placement.placement)
pulumi.export(
    "totals",
    {name: spec.cluster_totals(name).model_dump() for name in spec.clusters} | {"all": spec.totals.model_dump()},
)
