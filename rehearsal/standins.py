"""Start the local stand-ins (Azurite for Table and Blob Storage, the simulated tenant) and the environment
that points the real SDK clients at them. Used by replay, the demo and the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key (not a secret of any real account).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StandInError(RuntimeError):
    """A stand-in could not be started; the message says what to run."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_binary() -> Path:
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise StandInError(f"{path} is missing: run `make setup` (npm ci) first")
    return path


# the Event Grid dead-letter container the local stack and the tests use (infra/ names the same)
DEADLETTER_CONTAINER = "eventgrid-deadletter"


@dataclass
class Azurite:
    """Azurite's table service (the ledger) and blob service (Event Grid dead letters) on free loopback
    ports, without telemetry: in memory, or keeping their data on disk in `location` when one is given.
    Its queue service takes a free port too (one process serves all three)."""

    port: int = 0
    blob_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    workdir: str = ""
    location: Path | None = None

    def start(self, timeout: float = 30.0) -> Azurite:
        self.port = self.port or free_port()
        self.blob_port = self.blob_port or free_port()
        if self.location is None:
            self.workdir = tempfile.mkdtemp(prefix="azurite-")
            persistence = ["--inMemoryPersistence"]
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            self.workdir = str(self.location)
            persistence = ["--location", str(self.location)]
        self.process = subprocess.Popen(  # noqa: S603 - our own pinned binary, fixed arguments
            [
                str(azurite_binary()),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.blob_port),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(free_port()),
                *persistence,
                "--disableTelemetry",
                "--silent",
                # azure-storage-blob sends an API version newer than Azurite 3.35 knows (the last
                # Azurite that runs on Node 20); the stand-in serves the subset the reader uses
                "--skipApiVersionCheck",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                raise StandInError(f"Azurite exited: {err[:500]}")
            try:
                for port in (self.port, self.blob_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pass
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise StandInError("Azurite did not start listening in time")

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    @property
    def blob_connection_string(self) -> str:
        """Azurite's blob service with its well-known development key: over plain http on loopback, where
        azure-core refuses a bearer token, as the ledger's table connection does."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{AZURITE_ACCOUNT};"
        )

    def create_container(self, name: str) -> None:
        """Make a blob container (e.g. the dead-letter one) if it is not there yet."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContainerClient

        client = ContainerClient.from_connection_string(self.blob_connection_string, name)
        with client as container, suppress(ResourceExistsError):
            container.create_container()

    def stop(self) -> None:
        """Azurite saves its tables and closes on SIGINT only (SIGTERM would lose the last seconds)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        if self.workdir and self.location is None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def local_env(
    sim_url: str,
    ca_path: str,
    identity_header: str,
    ledger_connection: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment that makes an unchanged DefaultAzureCredential and every SDK client use loopback."""
    env = {
        "RESPONDER_LOCAL": "true",
        "RESPONDER_ARM_ENDPOINT": sim_url,
        "RESPONDER_GRAPH_ENDPOINT": sim_url + "/v1.0",
        "RESPONDER_LOGS_ENDPOINT": sim_url + "/v1",
        "RESPONDER_LEDGER_CONNECTION_STRING": ledger_connection,
        "IDENTITY_ENDPOINT": sim_url + "/msi/token",
        "IDENTITY_HEADER": identity_header,
        "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
        "REQUESTS_CA_BUNDLE": ca_path,
        "SSL_CERT_FILE": ca_path,
    }
    env.update(extra or {})
    return env


@dataclass
class StandIns:
    """Both stand-ins and the environment pointing at them."""

    simulator: Any
    azurite: Azurite
    tenant: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    _saved: dict[str, str | None] = field(default_factory=dict)

    def apply_env(self) -> None:
        for key, value in self.env.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore_env(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()

    def stop(self) -> None:
        self.restore_env()
        self.simulator.stop()
        self.azurite.stop()


def start_standins(
    tenant_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
) -> StandIns:
    """Start the simulated tenant and Azurite, and compute the environment for them. With `data_dir`
    both keep their data there (tables, the tenant's state, the CA) and find it again on the next start."""
    from rehearsal.simulator import Simulator

    tenant = json.loads((tenant_path or ROOT / "samples" / "tenant.json").read_text(encoding="utf-8"))
    if data_dir is None:
        simulator = Simulator(tenant, seed=seed).start()
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        simulator = Simulator(
            tenant, seed=seed, cert_dir=data_dir / "certs", state_file=data_dir / "tenant-state.json"
        ).start()
    try:
        azurite = Azurite(location=None if data_dir is None else data_dir / "azurite").start()
    except Exception:
        simulator.stop()
        raise
    try:
        azurite.create_container(DEADLETTER_CONTAINER)
    except Exception:
        simulator.stop()
        azurite.stop()
        raise
    identity = tenant.get("responderIdentity", {})
    sentinel = tenant.get("sentinel", {})
    extra = {
        "RESPONDER_DEADLETTER_CONNECTION_STRING": azurite.blob_connection_string,
        "RESPONDER_DEADLETTER_CONTAINER": DEADLETTER_CONTAINER,
        "RESPONDER_IDENTITY_OBJECT_ID": identity.get("principalId", ""),
        "RESPONDER_LOG_ANALYTICS_WORKSPACE_ID": tenant.get("logAnalytics", {}).get("workspaceId", ""),
    }
    if sentinel:
        extra["RESPONDER_SENTINEL_WORKSPACE_ID"] = (
            f"/subscriptions/{sentinel['subscriptionId']}/resourceGroups/{sentinel['resourceGroup']}"
            f"/providers/Microsoft.OperationalInsights/workspaces/{sentinel['workspaceName']}"
        )
    # the simulated custom topic: the CLI's `replay --topic` publishes here with this key
    extra["EVENTGRID_TOPIC_ENDPOINT"] = simulator.url + "/api/events"
    extra["EVENTGRID_TOPIC_KEY"] = simulator.topic.key
    extra.update(extra_env or {})
    env = local_env(
        simulator.url, str(simulator.ca_path), simulator.identity_header, azurite.connection_string, extra
    )
    return StandIns(simulator=simulator, azurite=azurite, tenant=tenant, env=env)


# --- the local stack: the stand-ins over the data kept in .run/ -----------------------------------

ENV_FILE = "local.env"
PID_FILE = "local.pid"
# the policy the samples are written for; the CLI's --execute flags decide whether anything acts
LOCAL_STACK_ENV = {"RESPONDER_POLICY_FILE": str(ROOT / "samples" / "policy.yaml")}
LOCK_WAIT = 120.0


def run_dir() -> Path:
    """Where the local stack keeps its data and says it is up: RESPONDER_RUN_DIR, default `.run/`."""
    return Path(os.environ.get("RESPONDER_RUN_DIR") or ROOT / ".run")


def data_dir() -> Path:
    return run_dir() / "local"


def endpoints_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names a ledger (and so the tenant) to use instead of the local stack."""
    env = os.environ if env is None else env
    return bool(env.get("RESPONDER_LEDGER_ENDPOINT") or env.get("RESPONDER_LEDGER_CONNECTION_STRING"))


def _alive(pid: int) -> bool:
    """The process exists and is a stack server (a recycled pid is some other program)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc: trust the signal check
    zombie = stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
    return not zombie and b"stack" in cmdline and b"serve" in cmdline


def stack_pid() -> int | None:
    try:
        pid = int((run_dir() / PID_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """`export KEY='value'` lines a shell can source (`set -a; . .run/local.env`), readable only by us."""
    import shlex

    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(partial, path)


def read_env_file(path: Path) -> dict[str, str]:
    import shlex

    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return env


def running_stack_env() -> dict[str, str] | None:
    """The environment of the stack `make up` started, or None when it is not up."""
    if stack_pid() is None:
        return None
    try:
        return read_env_file(run_dir() / ENV_FILE)
    except OSError:
        return None


@contextmanager
def scoped_environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _try_lock(handle: Any) -> bool:
    import fcntl

    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _data_lock(wait: float) -> Iterator[bool]:
    """Hold the data directory alone (two Azurites over one folder would corrupt it). Yields False
    when, while waiting, a stack came up that can be used instead."""
    import fcntl

    data_dir().mkdir(parents=True, exist_ok=True)
    with open(data_dir() / ".lock", "a+b") as handle:
        deadline = time.monotonic() + wait
        while not _try_lock(handle):
            if running_stack_env() is not None:
                yield False
                return
            if time.monotonic() > deadline:
                raise StandInError(f"the local stack in {data_dir()} is in use by another command")
            time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does, so the stand-ins are stopped rather than orphaned."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def local_stack(
    tenant_path: Path | None = None, extra_env: Mapping[str, str] | None = None
) -> Iterator[StandIns | None]:
    """The environment of the local stack for one command: the running one `make up` started (yields
    None), or stand-ins started over the data in .run/ and stopped when the command ends."""
    extra = {**{k: v for k, v in LOCAL_STACK_ENV.items() if k not in os.environ}, **(extra_env or {})}
    env = running_stack_env()
    if env is not None:
        with scoped_environ({**env, **extra}):
            yield None
        return
    with _data_lock(LOCK_WAIT) as alone:
        if not alone:
            with scoped_environ({**(running_stack_env() or {}), **extra}):
                yield None
            return
        with _stopped_by_sigterm():
            standins = start_standins(tenant_path, extra, data_dir=data_dir())
            try:
                standins.apply_env()
                yield standins
            finally:
                standins.stop()


def serve_stack(tenant_path: Path | None = None) -> int:
    """Run the stand-ins over .run/ until SIGTERM or SIGINT, with their environment in .run/local.env."""
    import threading

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with _data_lock(0.0) as alone:
        if not alone:
            raise StandInError("the local stack is already up")
        standins = start_standins(tenant_path, LOCAL_STACK_ENV, data_dir=data_dir())
        try:
            _subscribe_functions(standins)
            write_env_file(run_dir() / ENV_FILE, standins.env)
            (run_dir() / PID_FILE).write_text(str(os.getpid()), encoding="ascii")
            while not stopping.wait(0.5):
                pass
        finally:
            for name in (PID_FILE, ENV_FILE):
                (run_dir() / name).unlink(missing_ok=True)
            standins.stop()
    return 0


def _subscribe_functions(standins: StandIns) -> None:
    """The registered functions subscribe to the simulated topic, running in this process with the
    stand-ins' settings (RESPONDER_DRY_RUN from the environment, dry-run unless it says false)."""
    from responders.replay import deliver_to_functions
    from responders.service import Runtime, set_runtime
    from responders.settings import Settings

    standins.apply_env()
    set_runtime(Runtime.from_settings(Settings.from_env()))
    standins.simulator.topic.subscriber = deliver_to_functions


def stack_up(tenant_path: Path | None = None, timeout: float = 60.0) -> dict[str, str]:
    """Start `serve_stack` in the background (it outlives this process) and wait until it is up."""
    import sys

    env = running_stack_env()
    if env is not None:
        return env
    data_dir().mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "responders", "stack", "serve"]
    if tenant_path is not None:
        argv += ["--tenant", str(tenant_path)]
    with open(data_dir() / "stack.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        env = running_stack_env()
        if env is not None:
            return env
        if process.poll() is not None:
            tail = (data_dir() / "stack.log").read_text(encoding="utf-8", errors="replace")[-500:]
            raise StandInError(f"the local stack did not start: {tail.strip()}")
        time.sleep(0.2)
    process.terminate()
    raise StandInError("the local stack did not come up in time")


def stack_down(timeout: float = 30.0) -> bool:
    """Stop the stack `stack_up` started; False when none was up."""
    pid = stack_pid()
    if pid is None:
        for name in (PID_FILE, ENV_FILE):
            (run_dir() / name).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise StandInError(f"the local stack (pid {pid}) did not stop")
        time.sleep(0.1)
    return True


def stack_reset() -> None:
    """Stop the stack if it is up and remove its data, so the next command starts from the samples."""
    stack_down()
    shutil.rmtree(data_dir(), ignore_errors=True)
