"""`tandem agent`: run an automation agent, and see the agents of a partition.

    tandem --username k8s-agent --password-file pw agent run --source kubernetes \\
        --device https://10.0.0.1:8443 --device https://10.0.0.2:8443 \\
        --partition k8s --environment prod --host-id node-a --address-pool traffic-group-1=10.9.0.10-10.9.0.99

Credentials come from the global --username and --password-file (or TANDEM_USERNAME and
TANDEM_PASSWORD), never from the command line; use a `manager` user limited to the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tandem import logs
from tandem.cli.connection import Settings, connect, read_password_file
from tandem.cli.errors import CliError
from tandem.cli.output import Column, format_epoch

app = typer.Typer(help="Automation agents: keep a partition equal to Kubernetes Services or a folder of files.",
                  no_args_is_help=True)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
EXIT_DUPLICATE = 3
STATUS_COLUMNS = [
    Column("host_id", "host id", no_wrap=True), Column("alive"), Column("leader"), Column("source"),
    Column("owned", "services owned"), Column("device"), Column("last_reconcile", "last reconcile"),
    Column("problem_count", "problems"), Column("error"),
    Column("source_errors", "source errors", lambda errors, _: "\n".join(f"{k}: {v}" for k, v in errors.items())),
]


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _label(value: str, option: str) -> str:
    if not DNS_LABEL.match(value):
        raise typer.BadParameter(f"{value!r}: lowercase letters, digits and '-', 1 to 32 characters", param_hint=option)
    return value


def _password(settings: Settings) -> str:
    if settings.password_file is not None:
        return read_password_file(settings.password_file)
    password = os.environ.get("TANDEM_PASSWORD")
    if not password:
        raise CliError("give the agent's password with the global --password-file or TANDEM_PASSWORD",
                       target="--password-file")
    return password


def _kubernetes(kubeconfig: Path | None) -> Any:
    """The Kubernetes API client: from `kubeconfig`, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config

    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig))
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
    except (config.ConfigException, OSError) as error:
        raise CliError(f"cannot load the Kubernetes configuration: {error}", target="--kubeconfig") from None
    return client.ApiClient()


@app.command("run")
def agent_run(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--source", help="kubernetes or file.")],
    device: Annotated[list[str], typer.Option("--device", show_default=False,
                                              help="A device of the group to write to; repeat, in order of use.")],
    partition: Annotated[str, typer.Option("--partition", show_default=False, help="The partition the agent owns.")],
    environment: Annotated[str, typer.Option("--environment", show_default=False,
                                             help="The agents sharing the work (and their leases).")],
    host_id: Annotated[str, typer.Option("--host-id", show_default=False, help="This agent's unique name.")],
    path: Annotated[Path | None, typer.Option("--path", file_okay=False, show_default=False,
                                              help="The folder of YAML/JSON files (source file).")] = None,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", dir_okay=False, show_default=False,
                                                    help="Kubeconfig file (default: in-cluster, ~/.kube/config).")
                          ] = None,
    lease_namespace: Annotated[str, typer.Option("--lease-namespace",
                                                 help="Namespace of the agents' Lease objects (source kubernetes).")
                               ] = "default",
    lease_ttl: Annotated[float, typer.Option("--lease-ttl", min=2.0, max=300.0,
                                             help="Seconds after which a silent agent's share moves to the others.")
                         ] = 15.0,
    address_pool: Annotated[list[str] | None, typer.Option(
        "--address-pool", show_default=False,
        help="TRAFFIC_GROUP=FIRST-LAST (or =CIDR): addresses for services that ask for none; repeat.")] = None,
    metrics_listen: Annotated[str | None, typer.Option("--metrics-listen", show_default=False,
                                                       help="Serve /metrics and /healthz on ADDR:PORT.")] = None,
    load_balancer_class: Annotated[str, typer.Option(
        "--load-balancer-class", help="Serve the LoadBalancer Services of this spec.loadBalancerClass.")
    ] = "tandem.io/lb",
    default_class: Annotated[bool, typer.Option(
        "--default-class", help="Serve LoadBalancer Services without a loadBalancerClass too.")] = False,
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", show_default=False, help="Only Services of this namespace; repeat (default: all).")] = None,
    selector: Annotated[str, typer.Option(
        "--selector", show_default=False, help="Only Services matching this label selector (a=b,c!=d).")] = "",
    lease_store: Annotated[str | None, typer.Option(
        "--lease-store", show_default=False,
        help="kubernetes (Lease objects; the default of source kubernetes), etcd (--etcd-endpoint; "
        "linearizable, for several file agents) or device (the device group; the default of source file).")
    ] = None,
    etcd_endpoint: Annotated[list[str] | None, typer.Option(
        "--etcd-endpoint", show_default=False, help="An etcd client URL (http://HOST:2379); repeat.")] = None,
    member_mode: Annotated[str, typer.Option(
        "--member-mode", help="endpoints (pod addresses, reachable from the devices) or nodeport (every ready "
        "node at the NodePort); a Service's tandem.io/member-mode overrides it.")] = "endpoints",
) -> None:
    """Run an agent until stopped: it keeps its share of the source's services written to the partition."""
    from tandem.agents.addresses import Addresses, parse_pool
    from tandem.agents.devices import Devices
    from tandem.agents.metrics import Metrics
    from tandem.agents.runtime import Agent, AgentError, DuplicateHost, Options
    from tandem.agents.sources.k8s_services import MEMBER_MODES, Selection
    from tandem.models.fields import parse_host_port
    from tandem.pauses import configure_collections

    settings = _settings(ctx)
    _label(environment, "--environment")
    _label(host_id, "--host-id")
    if source not in ("kubernetes", "file"):
        raise CliError(f"--source {source!r}: kubernetes or file", target="--source")
    store = lease_store or ("kubernetes" if source == "kubernetes" else "device")
    if store not in LEASE_STORES or (store == "kubernetes" and source != "kubernetes"):
        raise CliError(f"--lease-store {store!r}: kubernetes (source kubernetes only), etcd or device",
                       target="--lease-store")
    if (store == "etcd") != bool(etcd_endpoint):
        raise CliError("--lease-store etcd goes with --etcd-endpoint (and only it)", target="--etcd-endpoint")
    if member_mode not in MEMBER_MODES:
        raise CliError(f"--member-mode {member_mode!r}: {' or '.join(MEMBER_MODES)}", target="--member-mode")
    if source == "file" and (path is None or not path.is_dir()):
        raise CliError("--source file needs --path, an existing folder", target="--path")
    try:
        pools = dict(parse_pool(p) for p in address_pool or [])
        listen = parse_host_port(metrics_listen) if metrics_listen else None
        selection = Selection(load_balancer_class, default_class, tuple(namespace or ()), selector)
    except ValueError as error:
        raise CliError(str(error)) from None
    logs.setup(process="agent")
    configure_collections()
    verify = str(settings.ca_file) if settings.ca_file else not settings.insecure
    devices = Devices(device, settings.username or os.environ.get("TANDEM_USERNAME") or "admin", _password(settings),
                      verify=verify, fingerprint=settings.fingerprint, host_id=host_id)
    metrics = Metrics()
    api = _kubernetes(kubeconfig) if source == "kubernetes" else None
    agent_source = _source(api, path, selection, member_mode, metrics)
    leases = _leases(store, api, lease_namespace, environment, etcd_endpoint or [], devices, partition)
    agent = Agent(Options(environment, host_id, partition, lease_ttl), agent_source, leases, devices,
                  Addresses(pools, environment), metrics)
    if listen:
        metrics.serve(*listen)
    try:
        asyncio.run(_until_stopped(agent.run()))
    except DuplicateHost as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(EXIT_DUPLICATE) from None
    except AgentError as error:
        raise CliError(str(error)) from None
    finally:
        metrics.close()
        devices.close()


LEASE_STORES = ("kubernetes", "etcd", "device")


def _leases(store: str, api: Any, lease_namespace: str, environment: str, etcd_endpoints: list[str],
            devices: Any, partition: str) -> Any:
    """Where the agents' leases live: Lease objects of the Kubernetes API (`api`), etcd, or the device group."""
    from tandem.agents.leases import DeviceLeases, KubernetesLeases, epoch_lease

    if store == "kubernetes":
        from kubernetes.client import CoordinationV1Api

        return KubernetesLeases(CoordinationV1Api(api), lease_namespace, epoch_lease(environment))
    if store == "etcd":
        from tandem.agents.etcd_leases import EtcdLeases

        return EtcdLeases(etcd_endpoints)
    return DeviceLeases(devices, partition)


def _source(api: Any, path: Path | None, selection: Any, member_mode: str, metrics: Any) -> Any:
    """The agent's source of services: the Kubernetes API (`api`), or a folder of files."""
    if api is not None:
        from tandem.agents.sources.kubernetes import KubernetesSource

        return KubernetesSource(api, metrics, selection, member_mode)
    from tandem.agents.sources.files import FileSource

    assert path is not None
    return FileSource(path)


@app.command("status")
def agent_status(
    ctx: typer.Context,
    partition: Annotated[str, typer.Option("--partition", show_default=False,
                                           help="The agents' partition (their leases live there, source file).")],
    environment: Annotated[str | None, typer.Option("--environment", show_default=False,
                                                    help="Only this environment's agents.")] = None,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", dir_okay=False, show_default=False,
                                                    help="Read the Lease objects of Kubernetes agents instead.")
                          ] = None,
    lease_namespace: Annotated[str, typer.Option("--lease-namespace")] = "default",
) -> None:
    """The agents: host ids, alive, leader, what each owns, last reconcile, problems, errors, source errors."""
    if kubeconfig is not None:
        from kubernetes.client import CoordinationV1Api

        from tandem.agents.leases import KubernetesLeases

        leases = asyncio.run(KubernetesLeases(CoordinationV1Api(_kubernetes(kubeconfig)), lease_namespace).list(""))
        records = [{"name": lease.name, "holder": lease.holder, "expired": lease.expired, "data": lease.data}
                   for lease in leases]
    else:
        records = connect(_settings(ctx)).leases.all(partition)
    rows = []
    for lease in records:
        match = re.match(r"^tandem-(?P<env>[a-z0-9-]+?)-agent-(?P<host>[a-z0-9-]+)$", lease["name"])
        if match is None or (environment and match["env"] != environment):
            continue
        data = lease.get("data") or {}
        source_errors = data.get("source_errors")
        rows.append({"environment": match["env"], "host_id": match["host"], "alive": not lease["expired"],
                     "leader": bool(data.get("leader")), "source": data.get("source"), "owned": data.get("owned"),
                     "device": data.get("device"), "last_reconcile": format_epoch(data.get("last_reconcile")),
                     "problem_count": data.get("problem_count", 0), "error": data.get("error") or "",
                     "problems": data.get("problems") or {}, "instance": data.get("instance"),
                     "source_errors": source_errors if isinstance(source_errors, dict) else {}})
    _settings(ctx).output.records(rows, STATUS_COLUMNS, empty="no agents")


async def _until_stopped(work: Any) -> None:
    """Run `work` until it ends or SIGTERM/SIGINT cancels it (its cleanup, releasing the leases, runs); an
    event loop held long is logged meanwhile (the lease is renewed only when it turns)."""
    from tandem.pauses import watch_event_loop

    task = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(watch_event_loop())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        watching.cancel()


