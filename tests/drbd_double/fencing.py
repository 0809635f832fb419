"""The fence-peer handler, run the way the kernel and drbdadm run it.

DRBD runs the handler (``handlers { fence-peer ...; }`` of the host's resource
file) when a Primary loses its peer without knowing the peer's data is stale,
asynchronously (``conn_try_outdate_peer_async``), and when a host is asked to
promote without a connection, synchronously (``drbd_set_role``). The kernel calls
its usermode helper ``/sbin/drbdadm fence-peer RES`` (``drbd_nl.c``), which runs
the command with ``/bin/sh -c`` (``drbdadm_main.c`` ``adm_khelper``). Here:

* the command runs inside the host's network namespace (``ip netns exec NS``),
  in ``/``, stdin from /dev/null, stdout and stderr appended to STATE/kern.log,
  with only the environment the kernel and drbdadm give it (``handler_env``);
* it runs without the STATE lock, so it may reach the peer and run commands on
  this same pool (``drbdadm outdate`` there); the verdict is applied under the
  lock afterwards, after checking that the connection did not come back;
* it is killed after ``handler_timeout`` seconds (drbdadm's cmd-timeout-long,
  600 s by default) and then counts as exit code 20, like drbdadm's own exit;
* no handler configured: drbdadm exits 0, which the kernel calls broken.

Exit codes (``conn_try_outdate_peer``): 3 peer Inconsistent, 4 peer Outdated,
5 peer down (fences only while the local disk is UpToDate), 6 peer Primary
(the local disk becomes Outdated), 7 peer fenced/STONITHed; anything else:
"fence-peer helper broken", nothing changes (I/O stays frozen under
resource-and-stonith until ``resume-io``).

The asynchronous handler runs in a detached runner process
(``python3 -m tests.drbd_double fence-runner``). Runners and every handler's
process group are registered in state.json (``runners``, ``handlers``) so that
``crash`` (that host's) and ``stop_handlers`` (all) can kill them.
"""

import os
import signal
import sys

from . import resfile
from .model import KERNEL_LOG
from .states import CONSISTENT, INCONSISTENT, KNOWN_STALE, OUTDATED, UP_TO_DATE

HELPER = "/sbin/drbdadm"
MINIMAL_ENV = {"HOME": "/", "TERM": "linux", "PATH": "/sbin:/usr/sbin:/bin:/usr/bin"}
E_EXEC_ERROR = 20
PR_SET_PDEATHSIG = 1
# exit code: (what DRBD logs, whose disk it downgrades, to what)
VERDICTS = {3: ("peer is inconsistent or worse", "peer", INCONSISTENT),
            4: ("peer was fenced", "peer", OUTDATED),
            5: ("peer is unreachable, assumed to be dead", "peer", OUTDATED),
            6: ("peer is active", "self", OUTDATED),
            7: ("peer was stonithed", "peer", OUTDATED)}


def handler_env(pool, host, name, cstate):
    """The environment the handler gets: the kernel's (drbd_khelper / conn_khelper)
    plus what drbdadm adds for a resource-level handler (adm_khelper)."""
    env = dict(MINIMAL_ENV)
    peer = pool.peer_of(host)
    minor = str(pool.resource(name)["minor"])
    disk = pool.disk_path(host, name)
    conf = resfile.config_path(pool.state_dir, host)
    if pool.version == "8.4":
        env.update(DRBD_PEER_AF="ipv4", DRBD_PEER_ADDRESS=pool.ip_address(peer),
                   DRBD_PEER=peer, DRBD_PEERS=peer, DRBD_MINOR=minor, DRBD_RESOURCE=name,
                   DRBD_CONF=conf)
        return env
    env.update(DRBD_MY_ADDRESS=pool.ip_address(host), DRBD_MY_AF="ipv4",
               DRBD_PEER_ADDRESS=pool.ip_address(peer), DRBD_PEER_AF="ipv4",
               DRBD_PEER_NODE_ID=str(pool.node_id(peer)), DRBD_CSTATE=cstate,
               DRBD_MINOR_0=minor, DRBD_BACKING_DEV_0=disk,
               UP_TO_DATE_NODES="0x%08X" % (1 << pool.node_id(host)),
               DRBD_CONF=conf, DRBD_RESOURCE=name, DRBD_MY_NODE_ID=str(pool.node_id(host)),
               DRBD_MINOR=minor, DRBD_VOLUME="0", DRBD_LL_DISK=disk)
    for node in pool.hosts:
        env["DRBD_NODE_ID_%d" % pool.node_id(node)] = node
    return env


def helper_words(pool, name):
    return "%s fence-peer" % HELPER + (" %s" % name if pool.version == "8.4" else "")


def before_handler(pool, host, name):
    """What the kernel decides before running the handler: None to run it, else the
    answer to "is the peer fenced?" without it."""
    if pool.connected(host, name):
        pool.kernel_log(host, name, "Expected cstate < %s"
                        % ("C_CONNECTED" if pool.version == "9" else "C_WF_REPORT_PARAMS"))
        return False
    replica = pool.replica(host, name)
    if replica["disk"] not in (UP_TO_DATE, CONSISTENT):
        if pool.version == "8.4":
            pool.kernel_log(host, name, "Not fencing peer, I'm not even Consistent myself.")
        replica["susp_fen"] = False
        return False
    if pool.fencing == "dont-care":
        return True
    return None


def prepare(pool, host, name, cstate):
    """Everything ``run`` needs, taken from the model while the caller holds the lock."""
    resfile.write_config(pool, host)
    pool.kernel_log(host, name, "helper command: %s" % helper_words(pool, name))
    return {"command": resfile.handler_command(pool, host),
            "env": handler_env(pool, host, name, cstate),
            "netns": pool.state["netns"].get(host),
            "log": os.path.join(pool.state_dir, KERNEL_LOG),
            "timeout": pool.state["handler_timeout"]}


def run(request, on_start):
    """Run the handler (without the STATE lock); its exit code as drbdadm returns it.

    ``on_start(group)`` records the handler's process group, so that ``crash`` and
    ``stop_handlers`` can kill whatever it started (the kernel's helper does not die
    with drbdsetup)."""
    if not request["command"]:
        return 0
    import subprocess  # only a handler run pays for it: every tool call imports this module
    argv = ["/bin/sh", "-c", request["command"]]
    if request["netns"]:
        argv = ["ip", "netns", "exec", request["netns"]] + argv
    with open(request["log"], "ab") as log:
        handler = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   cwd="/", env=request["env"], start_new_session=True,
                                   preexec_fn=die_with_parent)
        on_start(handler.pid)
        try:
            code = handler.wait(timeout=request["timeout"])
        except subprocess.TimeoutExpired:
            log.write(("Command '/bin/sh -c %s' did not terminate within %g seconds\n"
                       % (request["command"], request["timeout"])).encode())
            kill_group(handler.pid)
            handler.wait()
            return E_EXEC_ERROR
    # A handler killed by a signal leaves drbdadm without an exit status: it returns 0.
    return max(code, 0)


def die_with_parent():
    """drbdadm's child dies with drbdadm (PR_SET_PDEATHSIG), here with its runner."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def apply_verdict(pool, host, name, code, epoch):
    """Apply exit ``code`` of a handler started in connection ``epoch``, as the kernel
    does once the helper returns; whether the peer now counts as fenced."""
    status = code << 8
    helper = helper_words(pool, name)
    pool.kernel_log(host, name, "helper command: %s exit code %d (0x%x)" % (helper, code, status)
                    if code or pool.version == "8.4" else "helper command: %s exit code 0" % helper)
    replica = pool.replica(host, name)
    if code not in VERDICTS:
        pool.kernel_log(host, name, "fence-peer helper broken, returned %d" % code)
        return False
    text, whose, downgrade = VERDICTS[code]
    if code == 5 and replica["disk"] != UP_TO_DATE:
        text, whose = "peer unreachable, doing nothing since disk != UpToDate", None
    if code == 6:
        pool.kernel_log(host, name, "Peer is primary, outdating myself.")
    if code == 7 and pool.fencing != "resource-and-stonith":
        pool.kernel_log(host, name, "fence-peer() = 7 && fencing != Stonith !!!")
    pool.kernel_log(host, name, "fence-peer helper returned %d (%s)" % (code, text))
    if pool.connected(host, name):
        return pool.peer_disk(host, name) in KNOWN_STALE  # reconnected meanwhile: no fencing
    if pool.resource(name)["epoch"] != epoch:
        # Connected and lost again while the handler ran: its answer is about the past.
        pool.kernel_log(host, name, "Ignoring fence-peer exit code")
        return pool.peer_disk(host, name) in KNOWN_STALE
    if whose == "peer":
        replica["peer_disk"] = downgrade
    elif whose == "self" and replica["disk"] in (UP_TO_DATE, CONSISTENT):
        replica["disk"] = downgrade
    fenced = replica["peer_disk"] in KNOWN_STALE
    if fenced:
        replica["susp_fen"] = False  # frozen I/O resumes once the peer is fenced
    return fenced


def spawn_runners(pool, tokens):
    """Start a detached runner for each new asynchronous fence-peer request."""
    for token in tokens:
        spawn_detached([sys.executable, "-S", "-m", __package__, "fence-runner",
                        "--state", pool.state_dir, "--token", token], runner_env())


def runner_env():
    return {"PATH": os.environ.get("PATH", MINIMAL_ENV["PATH"]), "PYTHONPATH": import_root(),
            "PYTHONSAFEPATH": "1"}


def import_root():
    """The directory that ``python -m`` needs on sys.path to import this package."""
    root = os.path.dirname(os.path.realpath(__file__))
    for _ in __package__.split("."):
        root = os.path.dirname(root)
    return root


def spawn_detached(argv, env):
    """Run ``argv`` as a grandchild in its own session, so no caller waits for it or
    kills it with its own process group (the kernel's helper thread outlives drbdsetup)."""
    child = os.fork()
    if child == 0:
        try:
            if os.fork() == 0:
                os.setsid()  # its own session and process group: pgid == pid
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, 65536)
                os.execve(argv[0], argv, env)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
