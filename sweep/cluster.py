"""Where the study's Ray runs: a local instance (optionally with its dashboard) or a cluster.

`ray_init_kwargs` is the one place that turns the CLI's Ray flags into `ray.init` arguments
(pure, so tests check it without starting anything). `check_address` probes a cluster address
with a plain TCP connect before `ray.init`: against an unreachable address Ray itself retries
for 30 s (ray://) to 60 s (a GCS address, which then aborts the whole process) before failing.
"""
from __future__ import annotations

import os
import socket
import sys

from search_spaces.errors import ConfigError

DEFAULT_DASHBOARD_HOST = "127.0.0.1"  # loopback only: reach a remote head through an SSH tunnel
DEFAULT_CLIENT_PORT = 10001  # `ray start --head` default for ray://
DEFAULT_GCS_PORT = 6379
PROBE_TIMEOUT_S = 5.0


def ray_init_kwargs(args) -> dict:
    """ray.init(**kwargs) for the CLI's --address / --dashboard / --dashboard-host."""
    kwargs = {"address": args.address, "log_to_driver": False, "configure_logging": True, "logging_level": "WARNING"}
    if args.address:
        # joining a cluster: its dashboard is the one `ray start --head` started (ray.init's
        # dashboard arguments only apply to a Ray it starts itself)
        return kwargs
    kwargs["include_dashboard"] = bool(args.dashboard)
    if kwargs["include_dashboard"]:
        kwargs["dashboard_host"] = args.dashboard_host or DEFAULT_DASHBOARD_HOST
    return kwargs


def resolve_address(address: str) -> tuple[str, int]:
    """(host, port) to probe for --address: 'auto', 'host:port' (GCS) or 'ray://host[:port]'."""
    if address == "auto":
        from ray._private import services

        # RAY_ADDRESS, else the cluster recorded by the last `ray start` on this machine (what
        # ray.init("auto") reads first). Ray's further fallback, any gcs_server process found by
        # pgrep, would silently join another user's `ray.init()` session: refuse that here.
        address = os.environ.get("RAY_ADDRESS") or services.find_bootstrap_address(None)
        if not address:
            raise ConfigError("--address auto: no cluster started with `ray start` on this machine "
                              "(start one with `ray start --head`, or give HEAD_IP:6379)")
    default_port = DEFAULT_GCS_PORT
    if "://" in address:
        scheme, _, address = address.partition("://")
        if scheme != "ray":
            raise ConfigError(f"--address: unsupported scheme {scheme!r}; use 'auto', HOST:PORT or ray://HOST:PORT")
        default_port = DEFAULT_CLIENT_PORT
    address = address.rstrip("/")
    if address.startswith("["):  # [IPv6]:port
        host, _, port = address[1:].partition("]")
        port = port.lstrip(":") or str(default_port)
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:  # a bare host name / IP, or an unbracketed IPv6 address: no port given
        host, port = address, str(default_port)
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"--address {address!r}: port {port!r} is not a number") from None


def check_address(address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One-line ConfigError when nothing listens at the cluster address (no Ray start-up wait)."""
    if not address:
        return
    host, port = resolve_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else (e.strerror or str(e))
        raise ConfigError(f"cannot reach a Ray cluster at {address} ({host}:{port}: {why}); "
                          f"is `ray start --head` running there?") from None


def check_dashboard_host(host: str) -> None:
    """One-line ConfigError when this machine cannot listen on `host` (ray.init would wait ~75 s
    for a dashboard that never binds, then fail with a traceback)."""
    try:
        family, kind, _, _, addr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as s:
            s.bind(addr)
    except (OSError, UnicodeError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"--dashboard-host {host!r}: this machine cannot listen there ({why})") from None


def dashboard_message(context, args) -> str | None:
    """What to print about the dashboard once Ray is up (None: no dashboard asked for)."""
    if not args.dashboard:
        return None
    url = getattr(context, "dashboard_url", None) or ""
    if not url:
        return "dashboard: not running (Ray was started without it; `pip install 'ray[default]'`?)"
    if not url.startswith("http"):
        url = f"http://{url}"
    where = ("the cluster's dashboard" if args.address
             else f"bound to {ray_init_kwargs(args).get('dashboard_host')}")
    return f"dashboard ({where}): {url}"


def tensorboard_message(exp_dir: str) -> str:
    return f"tensorboard: tensorboard --logdir {exp_dir}"


def storage_warning(storage: str, address: str | None) -> str | None:
    """Multi-node runs need storage every node can write (Ray syncs trial dirs to it)."""
    if address and "://" not in storage:
        return (f"note: joining a cluster with a local storage path ({storage}); unless it is a shared "
                f"filesystem (NFS) mounted at the same path on every node, use --storage-path s3://... or gs://...")
    return None


# Run by `watch_local_ray` in its own interpreter: waits until the driver has ended (its pipe
# reads EOF, then its process is gone or a zombie), then SIGKILLs every Ray process (this Python,
# or a binary of the ray package) that still holds a file open in the driver's Ray session
# directory (not, say, a `tail -f` of its logs).
WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the driver's to handle
driver, session, python, ray_dir = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3], sys.argv[4].rstrip("/") + "/"
sys.stdin.buffer.read()

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def kill_leftovers():
    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.path.realpath(f"/proc/{pid}/exe")
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            ours = exe == python or exe.startswith(ray_dir)
            if ours and pid not in (driver, str(os.getpid())) and any(f.startswith(session) for f in fds):
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
        except OSError:
            pass
    return killed

while alive(driver):  # EOF can come while the driver is still shutting down
    time.sleep(0.2)
quiet, deadline = 0, time.monotonic() + 60
while quiet < 3 and time.monotonic() < deadline:  # again until nothing is left: a process may
    quiet = 0 if kill_leftovers() else quiet + 1   # still be starting (or opening its logs)
    time.sleep(0.5)
"""
_watchdogs: dict = {}  # session dir -> its watchdog (one per Ray session this process starts)


def watch_local_ray(session_dir: str) -> None:
    """Make the Ray processes this driver started end with it, however it ends. Ray's own reaper
    stops the GCS and the raylet when the driver dies, but after a SIGKILL its dashboard and
    runtime-env agents stay alive and listening for ~60 s (they block on publishing the raylet's
    death to the dead GCS). Each of them keeps its log files in the session directory open: a
    watchdog process, holding the read end of a pipe that only the driver holds open, kills
    every process with a file open there once the driver has gone (EOF)."""
    import subprocess

    import ray

    if session_dir and session_dir not in _watchdogs and os.path.isdir("/proc"):
        argv = [str(os.getpid()), session_dir, os.path.realpath(sys.executable),
                os.path.dirname(os.path.realpath(ray.__file__))]
        _watchdogs[session_dir] = subprocess.Popen([sys.executable, "-c", WATCHDOG, *argv], stdin=subprocess.PIPE,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def real_size_configs(trials) -> list[str]:
    """The configs among `trials` built at a published model's size (not a tiny look-alike)."""
    return sorted({t.config for t in trials if any(size.hub_id for size in t.sizes)})


def gpu_refusal(trials, where: str) -> str | None:
    """Why these trials cannot run `where` (a place without a GPU), or None when no trial needs one."""
    real = real_size_configs(trials)
    if not real:
        return None
    return (f"{', '.join(real)} {'is a real-size model' if len(real) == 1 else 'are real-size models'} "
            f"(GPU-hours per trial) and {where} has no GPU: run on a GPU machine or join a cluster with "
            f"--address; --dry-run and --check-data work here, and --grid smoke is the offline study")


def check_local_gpu(args, trials) -> None:
    """Before anything starts: a real-size grid (the phase grids) on a machine without CUDA is one
    line, not a CPU run that would take weeks. With --address the cluster's GPUs are checked once
    Ray has joined it (sweep/launch.py check_resources)."""
    if args.address or not real_size_configs(trials):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(gpu_refusal(trials, "this machine"))


def auth_line() -> str:
    """What this run does about Ray's token auth, in one line (after ray.init)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return "ray: token auth on (the dashboard and Ray's ports ask for the token `ray get-auth-token` prints)"
    return ("ray: token auth is OFF (RAY_AUTH_MODE in this environment, or the cluster was started without it): "
            "anyone who reaches Ray's ports can run code there; see docs/operations.md")


def token_auth_before_ray(address: str | None) -> None:
    """For a Ray this driver will start: token auth on, said in the environment as Ray's docs ask.
    Ray >= 2.59 turns it on anyway when RAY_AUTH_MODE is unset, but then logs on stderr how to turn
    it off; a mode set in the environment is taken silently. Ray reads the variable once, when it
    is imported: set later, the driver and the Ray it starts disagree and ray.init fails, so this
    runs before the first `import ray` only. A user's own RAY_AUTH_MODE is left as it is, and a
    cluster (--address) has the mode its nodes were started with."""
    if address is None and "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def start_ray(args):
    """Probe --address, then ray.init; say what it started, its auth and where the dashboard is.
    Returns Ray's context."""
    import ray

    check_address(args.address)
    if args.dashboard and not args.address:
        check_dashboard_host(ray_init_kwargs(args)["dashboard_host"])
    where = f"joining the Ray cluster at {args.address}" if args.address else "starting Ray on this machine"
    print(f"{where} ...", flush=True)
    try:
        context = ray.init(**ray_init_kwargs(args))
    except ConnectionError as e:  # the port answered but it is no Ray (or auth failed)
        raise ConfigError(f"cannot join the Ray cluster at {args.address}: {str(e).strip().splitlines()[0]}") from None
    if not args.address:  # a Ray this driver started
        watch_local_ray(getattr(context, "address_info", {}).get("session_dir", ""))
    print(auth_line(), flush=True)
    message = dashboard_message(context, args)
    if message:
        print(message, flush=True)
    return context
