#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Host tests of kmscryptd over its socket (no device-mapper needed).

Starts the agent on a socket, volumes file, keystore and audit log in a
temporary directory and checks what works without dm-crypt: readiness
notification, ping, status (with the reason a volume waits and since when),
list and attach failing cleanly, the strict request parser on the wire,
authorization by SO_PEERCRED, reload by request and by SIGHUP, socket
activation (and the hotplug helper waiting across restarts of an agent
started on demand), a stale socket, a second agent, and a SIGTERM stop.  Needs root
(to drop to other users); exits 77 otherwise.  Ends with "N passed, N failed".
Arguments name the tests to run (default: all), e.g. test_stop_unread.
"""
import errno
import fcntl
import grp
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types

top_builddir = os.environ.get("top_builddir") or os.path.join(os.path.dirname(__file__), "..", "..")
KMSCRYPTD = os.path.join(top_builddir, "kmscryptd")
KMSCRYPT = os.path.join(top_builddir, "kmscrypt")
passed = failed = 0


def ok(name):
    global passed
    passed += 1
    print("ok -", name)


def fail(name):
    global failed
    failed += 1
    print("FAIL -", name)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        fail(f"{name} {detail}")


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(20)
    s.connect(path)
    return s


def call_raw(s, data):
    s.send(data)
    return json.loads(s.recv(1 << 22))


def call(path, req):
    with connect(path) as s:
        return call_raw(s, json.dumps(req).encode())


def listening(path):
    """A listening socket at path, as a socket unit (ListenSequentialPacket=) makes it: root's alone."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.listen(16)
    os.chmod(path, 0o600)       # a socket unit without SocketGroup= leaves it so
    return s


class Agent:
    def __init__(self, d, volumes_text, extra=(), env=None, notify=True, listen=None, on_demand=False, **popen):
        """listen: a listening socket, passed as fd 3 with LISTEN_FDS as systemd does; on_demand: through
        systemd-socket-activate, which starts the agent at the first connection to it, not at once."""
        self.d = d
        self.sock = listen.getsockname() if listen else os.path.join(d, "run", "agent.sock")
        self.volumes = os.path.join(d, "volumes")
        with open(self.volumes, "w") as f:
            f.write(volumes_text)
        self.notify = None
        environ = dict(os.environ, KMSCRYPT_CONFIG=os.path.join(d, "empty.conf"))
        environ.pop("JOURNAL_STREAM", None)
        if notify:
            self.notify_path = os.path.join(d, "notify.sock")
            if os.path.exists(self.notify_path):
                os.unlink(self.notify_path)
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(self.notify_path)
            environ["NOTIFY_SOCKET"] = self.notify_path
        environ.update(env or {})
        self.log = open(os.path.join(d, "agent.log"), "a+")
        args = [KMSCRYPTD, "--socket", self.sock, "--volumes", self.volumes, "--group", "nogroup",
                "--keystore", os.path.join(d, "ks"), "--audit-log", os.path.join(d, "audit.log"),
                "--stderr", *extra]
        if listen:
            fd = listen.fileno()
            # systemd-socket-activate hands its child only the variables it is told (--setenv).
            lazy = ["systemd-socket-activate", *(f"--setenv={k}={v}" for k, v in environ.items())] if on_demand else []
            args = ["sh", "-c", 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$@"', "sh", *lazy, *args]
            popen.update(pass_fds=(fd,), preexec_fn=lambda: (os.dup2(fd, 3), os.set_inheritable(3, True)))
        self.p = subprocess.Popen(popen.pop("args", args), stdout=self.log, stderr=self.log, env=environ, **popen)

    def messages(self, timeout):
        """Notification datagrams received until READY=1 and 0.2 s more, or until timeout seconds passed
        (the agent tells its progress every second before it is ready)."""
        got = []
        end = time.time() + timeout
        try:
            while time.time() < end:
                ready = any("READY=1" in m for m in got)
                self.notify.settimeout(0.2 if ready else max(end - time.time(), 0.01))
                got.append(self.notify.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            pass
        return got

    def wait_message(self, pattern, timeout):
        """The first notification datagram matching pattern within timeout seconds, else None; all seen go to
        self.seen."""
        self.seen = []
        end = time.time() + timeout
        try:
            while time.time() < end:
                self.notify.settimeout(max(end - time.time(), 0.01))
                self.seen.append(self.notify.recv(4096).decode())
                if re.search(pattern, self.seen[-1]):
                    return self.seen[-1]
        except (socket.timeout, BlockingIOError):
            pass
        return None

    def wait_socket(self, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            try:
                return call(self.sock, {"v": 1, "op": "ping"})
            except OSError:
                time.sleep(0.05)
        return None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                return self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                return None
        return self.p.returncode

    def logtext(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()


def become(uid, gid, groups=()):
    """In a child: drop root for uid, gid and groups."""
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)


def as_user(uid, gid, fn, groups=()):
    """Run fn() in a child with the given credentials; return what it printed as JSON."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            become(uid, gid, groups)
            out = json.dumps(fn())
        except Exception as e:  # report the exception to the parent
            out = json.dumps({"exception": repr(e)})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def configured(reply, name):
    for v in reply["result"]["Configured"]:
        if v["Name"] == name:
            return v
    return None


def wait_state(a, name, state, timeout=30):
    """Volume name's status once it is in state, or the last one seen after timeout seconds: what a test
    asserts of a volume the agent acts on in a thread of its own, which a loaded machine may hold up."""
    end = time.time() + timeout
    while True:
        v = configured(call(a.sock, {"v": 1, "op": "status"}), name)
        if (v and v["State"] == state) or time.time() > end:
            return v
        time.sleep(0.1)


def test_basics(d):
    volumes = ("# host test\n"
               "gone   UUID=kmscrypt-test-no-such-uuid  db-id=db-1,volume-id=gone   timeout=2\n"
               "plain  /dev/null                        db-id=db-1,volume-id=plain\n"
               "later  PARTLABEL=kmscrypt-test-none     db-id=db-1,volume-id=later  nofail,timeout=0\n")
    t0 = time.time()
    a = Agent(d, volumes)
    try:
        msgs = a.messages(15)
        ready = [m for m in msgs if "READY=1" in m]
        check("READY=1 sent once the volumes that are not nofail settled", ready, str(msgs))
        # Before it, every second, how the start goes: "gone" waits for its device (timeout=2).
        progress = msgs[:msgs.index(ready[0])] if ready else []
        check("progress told before READY=1 while a volume waits",
              progress and all(m.startswith("STATUS=") and "READY=1" not in m for m in progress)
              and any(re.search(r"of 3 volumes attached(, \d failed)?, [12] waiting \((gone|later): .*kmscrypt-test-", m)
                      for m in progress), str(msgs))
        check("READY=1's status counts the volumes", ready and re.search(r"STATUS=\d of 3 volumes attached", ready[0]),
              str(ready))
        check("readiness waited for the timeout of the waiting volume", time.time() - t0 >= 1.5)
        check("readiness did not wait for the nofail volume (timeout=0)", time.time() - t0 < 15)
        check("socket is 0660", ready and (os.stat(a.sock).st_mode & 0o777) == 0o660)
        check("socket belongs to the status group",
              ready and os.stat(a.sock).st_gid == grp.getgrnam("nogroup").gr_gid)
        with open(f"/proc/{a.p.pid}/limits") as f:
            core = [line for line in f if line.startswith("Max core file size")]
        check("RLIMIT_CORE is 0", core and core[0].split()[4:6] == ["0", "0"], str(core))
        with open(f"/proc/{a.p.pid}/status") as f:
            kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmLck", "VmRSS")}
        # mlockall(MCL_ONFAULT): every page touched is locked, so nearly all of what is resident.
        # AddressSanitizer intercepts mlockall as a no-op (tests/sanitize.sh sets ASAN_OPTIONS).
        if "ASAN_OPTIONS" not in os.environ:
            check("the agent's memory is locked as it is touched (VmLck near VmRSS)",
                  kb.get("VmLck", 0) > 0 and kb["VmLck"] >= kb["VmRSS"] * 0.8, str(kb))

        r = call(a.sock, {"v": 1, "op": "ping"})
        check("ping answers with the agent's pid", r["ok"] and r["result"]["Pid"] == a.p.pid, str(r))

        r = call(a.sock, {"v": 1, "op": "status"})
        gone, plain, later = (configured(r, n) for n in ("gone", "plain", "later"))
        check("status lists the three configured volumes in file order",
              [v["Name"] for v in r["result"]["Configured"]] == ["gone", "plain", "later"], str(r))
        check("status says there is no device-mapper", r["result"]["DeviceMapper"] is False)
        check("a missing device fails after its timeout, saying why",
              gone["State"] == "failed" and "gave up after" in gone["Reason"] and
              "kmscrypt-test-no-such-uuid" in gone["Reason"] and gone["Attempts"] >= 2, str(gone))
        check("no dm: attach fails at once with a clear reason",
              plain["State"] == "failed" and "device-mapper is not available" in plain["Reason"] and
              plain["Errno"] == 95 and plain["Attempts"] == 1, str(plain))
        check("the nofail volume keeps waiting, with reason, since and next try",
              later["State"] == "waiting" and later["NoFail"] and "kmscrypt-test-none" in later["Reason"] and
              t0 - 2 <= later["Since"] <= time.time() and later["NextTry"] >= later["Since"], str(later))
        end = later.get("NextTry", 0) + 10      # backoff doubles (with jitter) up to 30 s: the next try is due then
        while time.time() < end:
            later2 = configured(call(a.sock, {"v": 1, "op": "status"}), "later")
            if later2["Attempts"] > later["Attempts"]:
                break
            time.sleep(0.2)
        check("a waiting volume is retried (attempts grow, since stays)",
              later2["Attempts"] > later["Attempts"] and later2["Since"] == later["Since"], str(later2))

        r = call(a.sock, {"v": 1, "op": "status", "names": ["plain"]})
        check("status NAME filters", [v["Name"] for v in r["result"]["Configured"]] == ["plain"], str(r))

        r = call(a.sock, {"v": 1, "op": "list"})
        check("list without dm: the error the CLI gives without the agent", not r["ok"] and r["errno"] == 19 and
              "cannot list device-mapper devices" in r["error"], str(r))
        r = call(a.sock, {"v": 1, "op": "attach", "device": "/dev/null", "options": {"read-only": True}})
        check("attach of a device without dm: a clean error", not r["ok"] and r["errno"] == 95, str(r))
        r = call(a.sock, {"v": 1, "op": "attach", "volume": "nosuch"})
        check("attach of an unknown volume: ENOENT", not r["ok"] and r["errno"] == 2 and "nosuch" in r["error"], str(r))
        r = call(a.sock, {"v": 1, "op": "attach", "volume": "plain"})
        # A request for a failed volume opens a round of its own: attempt 1 of it.
        check("attach of a configured volume by request: the same clean error, in a round of its own",
              not r["ok"] and r["errno"] == 95 and configured(call(a.sock, {"v": 1, "op": "status"}), "plain")
              ["Attempts"] == 1, str(r))
        r = call(a.sock, {"v": 1, "op": "detach", "name": "plain"})
        check("detach without dm: a clean error", not r["ok"] and r["errno"] == 95, str(r))
        r = call(a.sock, {"v": 1, "op": "attach-all"})
        check("attach-all waits and reports every volume",
              r["ok"] and [v["State"] for v in r["result"]["Configured"]] == ["failed", "failed", "waiting"], str(r))

        cli_through_agent(a)
        protocol_on_the_wire(a)
        authorization(a)
        reload(a)

        rc = a.stop()
        check("SIGTERM: exit status 0", rc == 0, f"rc={rc} log: {a.logtext()}")
        check("SIGTERM: STOPPING=1 sent", any("STOPPING=1" in m for m in a.messages(1)))
        check("SIGTERM: the socket we made is removed", not os.path.exists(a.sock))
        check("SIGTERM: the log says volumes stay attached", "attached volumes stay attached" in a.logtext())
    finally:
        a.stop()


def kmscrypt(a, *args, agent=True):
    env = dict(os.environ, KMSCRYPT_CONFIG=os.path.join(a.d, "empty.conf"), KMSCRYPT_AGENT_SOCKET=a.sock)
    if not agent:
        env["KMSCRYPT_NO_AGENT"] = "1"
    return subprocess.run([os.path.join(top_builddir, "kmscrypt"), "--keystore", os.path.join(a.d, "ks"),
                           "--audit-log", os.path.join(a.d, "audit.log"), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def cli_through_agent(a):
    r = kmscrypt(a, "status")
    check("kmscrypt status through the agent says why a volume waits and since when",
          r.returncode == 0 and "later: waiting since 20" in r.stdout and "kmscrypt-test-none" in r.stdout and
          "next try" in r.stdout and "[nofail]" in r.stdout, r.stdout + r.stderr)
    check("kmscrypt status through the agent shows failed volumes with their reason",
          "gone: failed since" in r.stdout and "gave up after" in r.stdout, r.stdout)
    with_agent, direct = kmscrypt(a, "list"), kmscrypt(a, "list", agent=False)
    check("kmscrypt list: the same exit status and message with and without the agent",
          with_agent.returncode == direct.returncode != 0 and with_agent.stderr == direct.stderr,
          f"{with_agent} / {direct}")
    r = kmscrypt(a, "--json", "attach", "--all")
    states = [v["State"] for v in json.loads(r.stdout)] if r.stdout.startswith("[") else r.stdout
    check("kmscrypt attach --all asks the agent: every volume, and a failure status",
          r.returncode != 0 and states == ["failed", "failed", "waiting"], f"{r.returncode} {states} {r.stderr}")
    r = kmscrypt(a, "attach", "plain")
    check("kmscrypt attach VOLUME through the agent: the agent's error",
          r.returncode != 0 and "device-mapper is not available" in r.stderr, r.stderr)
    r = kmscrypt(a, "config", "check", "--volumes", a.volumes)
    check("kmscrypt config check: syntax ok, absent devices reported, /dev/null is no LUKS2 volume",
          r.returncode == 4 and "3 volumes, syntax ok" in r.stdout and "absent" in r.stdout and
          "plain                bad" in r.stdout, r.stdout + r.stderr)


def protocol_on_the_wire(a):
    with connect(a.sock) as s:
        cases = [
            (b'{"v":1,"op":"nope"}', 22, "unknown op"),
            (b'{"v":2,"op":"ping"}', 71, "version 2"),
            (b'{"op":"ping"}', 71, '"v"'),
            (b'{"v":1,"op":"detach"}', 22, "missing member"),
            (b'{"v":1,"op":"detach","name":7}', 22, "must be a string"),
            (b'{"v":1,"op":"ping","extra":true}', 22, "unknown member"),
            (b'{"v":1,"op":"ping"} trailing', 22, ""),
            (b'not json', 22, "not valid JSON"),
            (b'{"v":1,"op":"ping",' + b' ' * 70000 + b'}', 90, "exceeds"),
        ]
        for data, errno, words in cases:
            r = call_raw(s, data)
            check(f"wire: {data[:40]!r}... refused with errno {errno}",
                  not r["ok"] and r["errno"] == errno and words in r["error"], str(r)[:300])
        r = call_raw(s, b'{"v":1,"op":"ping"}')
        check("wire: the connection still serves after refusals", r["ok"], str(r))
        # hotplug of a device that is not there (1:3 is /dev/null, a character device)
        for dev in ("1:3", "4095:1048575"):
            r = call_raw(s, json.dumps({"v": 1, "op": "hotplug", "device": dev}).encode())
            check(f"hotplug of {dev}, no such block device: ENODEV naming it",
                  not r["ok"] and r["errno"] == 19 and dev in r["error"], str(r)[:300])


def authorization(a):
    nogroup = grp.getgrnam("nogroup").gr_gid
    sock = a.sock

    def status():
        return call(sock, {"v": 1, "op": "status"})

    def reload():
        return call(sock, {"v": 1, "op": "reload"})

    r = as_user(65534, nogroup, status)
    check("status group member may ask status", r.get("ok") is True, str(r)[:300])
    r = as_user(65534, nogroup, reload)
    check("status group member may not reload (EPERM)", r.get("ok") is False and r.get("errno") == 1 and
          "needs root" in r.get("error", ""), str(r))
    r = as_user(65534, nogroup, lambda: call(sock, {"v": 1, "op": "hotplug", "device": "1:3"}))
    check("status group member may not send hotplug (EPERM)", r.get("ok") is False and r.get("errno") == 1 and
          "needs root" in r.get("error", ""), str(r))
    r = as_user(65534, 65533, status)
    check("a user outside the group cannot even connect (socket 0660)",
          "PermissionError" in r.get("exception", "") or r.get("errno") == 1, str(r))


def reload(a):
    with open(a.volumes, "a") as f:
        f.write("fourth /dev/zero db-id=db-1,volume-id=fourth nofail\n")
    r = call(a.sock, {"v": 1, "op": "reload"})
    check("reload request: the new volume count", r["ok"] and r["result"]["Volumes"] == 4, str(r))
    # At once is within 5 s: a volume not tried at once would wait for the scheduler's next wake-up (the
    # nofail volume's next try, seconds away by now); an attempt a loaded machine holds up takes longer
    # than the 0.3 s this once gave it.
    fourth = wait_state(a, "fourth", "failed", 5)
    check("reload: a new volume is attached at once (and fails cleanly here)",
          fourth and fourth["State"] == "failed" and fourth["Attempts"] == 1, str(fourth))

    with open(a.volumes, "a") as f:
        f.write("broken /dev/zero db-id=db-1 frobnicate\n")
    r = call(a.sock, {"v": 1, "op": "reload"})
    check("reload of a broken file: refused, naming file:line",
          not r["ok"] and f"{a.volumes}:6: unknown option" in r["error"], str(r))
    r = call(a.sock, {"v": 1, "op": "status"})
    check("reload of a broken file keeps the previous volumes", len(r["result"]["Configured"]) == 4)

    with open(a.volumes, "w") as f:
        f.write("plain /dev/null db-id=db-1,volume-id=plain\n")
    a.p.send_signal(signal.SIGHUP)
    end = time.time() + 5
    names = []
    while time.time() < end:
        names = [v["Name"] for v in call(a.sock, {"v": 1, "op": "status"})["result"]["Configured"]]
        if names == ["plain"]:
            break
        time.sleep(0.1)
    check("SIGHUP reloads the volumes file", names == ["plain"], str(names))
    # After READY=1 the status follows the volumes: the two dropped ("later" waited), "plain" failed.
    got = a.wait_message(r"^STATUS=0 of 1 volumes attached, 1 failed$", 10)
    check("the service manager's status follows a reload", got, str(a.seen))


def test_activation(d):
    """LISTEN_FDS: the agent serves the socket it is given, gives its file to the status group, and
    leaves the file in place when it stops."""
    path = os.path.join(d, "activated.sock")
    lsock = listening(path)
    a = Agent(d, "", listen=lsock)
    try:
        check("activation: READY=1", any("READY=1" in m for m in a.messages(10)))
        r = call(path, {"v": 1, "op": "ping"})
        check("activation: serves the passed socket", r["ok"] and r["result"]["Pid"] == a.p.pid, str(r))
        check("activation: does not bind its own", not os.path.exists(os.path.join(d, "run", "agent.sock")))
        st = os.stat(path)
        check("activation: the passed socket's file is given to the status group (0660)",
              st.st_gid == grp.getgrnam("nogroup").gr_gid and st.st_mode & 0o777 == 0o660,
              "gid %d mode %o" % (st.st_gid, st.st_mode & 0o777))
        nogroup = grp.getgrnam("nogroup").gr_gid
        r = as_user(65534, nogroup, lambda: call(path, {"v": 1, "op": "status"}))
        check("activation: a member of the status group connects and is served", r.get("ok") is True, str(r))
        r = as_user(65534, 65533, lambda: call(path, {"v": 1, "op": "ping"}))
        check("activation: a user outside the group cannot connect", "PermissionError" in r.get("exception", ""),
              str(r))
        rc = a.stop()
        check("activation: stops cleanly and leaves the socket file", rc == 0 and os.path.exists(path))
    finally:
        a.stop()
        lsock.close()


def activated_late(d, what):
    """For the tests of agents socket activation starts on demand: the path of a device that is not
    there yet, a volumes file naming it, and the listening socket; no socket where
    systemd-socket-activate is missing."""
    late = os.path.join(d, "late-dev")
    volumes = f"late  {late}  db-id=db-1,volume-id=late  timeout=60\n"
    if not shutil.which("systemd-socket-activate"):
        print(f"skip - no systemd-socket-activate: {what} is not tested here")
        return late, volumes, None
    return late, volumes, listening(os.path.join(d, "activated.sock"))


def test_activated_restart(d):
    """kmscrypt-hotplug volume NAME, waiting when the agent stops (ESHUTDOWN), tries again: the agent that
    socket activation starts afresh on that connection answers it.  Many helpers and a few restarts, for
    the stopping agent's replies race its closing of their connections."""
    late, volumes, lsock = activated_late(d, "the helper's retry across an agent restart")
    if not lsock:
        return
    agents, helpers = [], []
    try:
        for restart in range(3):
            agents.append(Agent(d, volumes, notify=False, listen=lsock, on_demand=True))
            if not helpers:     # the first one's connection starts the first agent
                helpers = [hotplug(agents[0], "volume", "late", wait=False) for _ in range(40)]
            time.sleep(1)       # every helper's attach request is in (or queued on the socket), waiting
            # The agent started on demand may not have tried the volume yet.
            v = wait_state(agents[-1], "late", "waiting")
            check(f"restart {restart}: the helpers wait on an agent started on demand",
                  not [p for p in helpers if p.poll() is not None] and v["State"] == "waiting", str(v))
            rc = agents[-1].stop()
            check(f"restart {restart}: the agent stops cleanly", rc == 0, f"rc={rc}")
        # Only the next agent can see the device: the helpers' outcome says which agent answered them.
        open(late, "w").close()
        agents.append(Agent(d, volumes, notify=False, listen=lsock, on_demand=True))
        check("restart: every helper tried again each time and the last agent started answered it",
              *answered_by_last(helpers))
    finally:
        end_activated(helpers, agents, lsock)


def answered_by_last(helpers):
    """(ok, detail): every helper ended with the verdict only an agent that sees the device gives."""
    outcomes = [p.communicate(timeout=30) + (p.returncode,) for p in helpers]
    wrong = [(rc, err) for out, err, rc in outcomes if rc != 1 or "device-mapper is not available" not in err]
    return not wrong, f"{len(wrong)} of {len(helpers)}: {wrong[:3]}"


def end_activated(helpers, agents, lsock):
    for p in helpers:
        if p.poll() is None:
            p.kill()
            p.communicate()
    for a in agents:
        a.stop()
    lsock.close()


def test_activated_killed(d):
    """An agent killed while helpers wait on a volume (no reply at all: a crash, the OOM killer) is
    asked again: socket activation starts the next one, as systemd restarts it, and that one answers.
    Up to three agents lost so (test_lost_cap: not a fourth)."""
    late, volumes, lsock = activated_late(d, "the helper's retry after an agent crash")
    if not lsock:
        return
    agents, helpers = [], []

    def kill_agent(what, waiting):
        """Let the helpers' requests reach an agent started on demand, then kill it with SIGKILL."""
        agents.append(Agent(d, volumes, notify=False, listen=lsock, on_demand=True))
        time.sleep(1)
        wait_state(agents[-1], "late", "waiting")      # up, not killed while it starts
        check(f"killed: {what}: the helpers wait", not [p for p in waiting if p.poll() is not None])
        agents[-1].p.kill()
        agents[-1].p.wait()

    try:
        agents.append(Agent(d, volumes, notify=False, listen=lsock, on_demand=True))
        helpers = [hotplug(agents[0], "volume", "late", wait=False) for _ in range(8)]
        time.sleep(1)
        wait_state(agents[0], "late", "waiting")
        agents[0].p.kill()
        agents[0].p.wait()
        for n in (2, 3):
            kill_agent(f"agent {n}", helpers)
        time.sleep(0.5)
        check("killed: three agents lost, the helpers still wait, for the next one",
              not [p.communicate() for p in helpers if p.poll() is not None])
        open(late, "w").close()
        agents.append(Agent(d, volumes, notify=False, listen=lsock, on_demand=True))
        check("killed: every helper asked the next agent, which answered it", *answered_by_last(helpers))

    finally:
        end_activated(helpers, agents, lsock)


def unread_replies(sock):
    """Pings sent on sock, never reading a reply, until the agent's thread of it is stuck in sending one:
    its send buffer full of our unread replies, it reads no more requests and ours stop going out too.
    True once ours have stopped for half a second."""
    sock.settimeout(0.5)
    try:
        for _ in range(100000):
            sock.send(b'{"v":1,"op":"ping"}')
    except socket.timeout:
        return True
    return False


def test_stop_unread(d):
    """A peer that sends requests and never reads the replies (a stuck or hostile member of the status
    group) holds up a stopping agent for a moment, not for the send timeout of each blocked reply, while
    a request waiting on a volume still gets its ESHUTDOWN (the hotplug helper's cue to try again)."""
    # --no-attach: the volume waits only once the request has tried it, and then the request waits in the
    # agent, not on the socket (at the stop, one not yet read would get no reply).
    a = Agent(d, f"late  {os.path.join(d, 'late-dev')}  db-id=db-1,volume-id=late  timeout=60\n",
              extra=("--no-attach",), notify=False)
    stuck = waiting = None
    try:
        a.wait_socket()
        waiting = connect(a.sock)
        waiting.send(b'{"v":1,"op":"attach","volume":"late","wait":true}')
        check("stop: the request for the volume waits", wait_state(a, "late", "waiting")["State"] == "waiting")
        stuck = connect(a.sock)
        # Stopped at once: the stuck reply has waited for about half a second of the agent's grace.
        check("stop: a peer that does not read has the agent's reply to it stuck", unread_replies(stuck))
        t0 = time.time()
        a.p.send_signal(signal.SIGTERM)
        try:
            rc = a.p.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.time() - t0
        # Held up, it would take the send timeout, 10 s; 2 s here on a starved sanitizer build.
        check("stop: the agent exits within 5 s, not held up by the peer that does not read",
              rc == 0 and took < 5, f"rc={rc} took={took:.1f}s")
        print(f"# stop with a peer that does not read took {took:.2f} s")
        r = json.loads(waiting.recv(1 << 16))
        check("stop: the waiting request still gets its ESHUTDOWN", not r["ok"] and r["errno"] == errno.ESHUTDOWN,
              str(r))
    finally:
        for s in (stuck, waiting):
            if s:
                s.close()
        a.stop()


def test_stale_and_twice(d):
    stale_dir = os.path.join(d, "run")
    os.makedirs(stale_dir, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(os.path.join(stale_dir, "agent.sock"))
    s.close()       # a socket file nobody listens on: what a killed agent leaves
    a = Agent(d, "")
    try:
        check("a stale socket is replaced", a.wait_socket() is not None, a.logtext())
        b = Agent(d, "", notify=False)
        rc = b.p.wait(10)
        check("a second agent on the same socket refuses to start", rc == 1, f"rc={rc}")
        check("... saying why", "another kmscryptd is running on" in b.logtext(), b.logtext())
        check("... and the first one still answers", a.wait_socket(2) is not None)
    finally:
        a.stop()
    # One that has the socket's lock but no socket yet (between its lock and
    # its listen): a second agent must not take the socket for stale.
    lock_path = os.path.join(stale_dir, "agent.sock.lock")
    check("the lock file is the owner's alone", stat.S_IMODE(os.stat(lock_path).st_mode) == 0o600)
    with open(lock_path, "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        b = Agent(d, "", notify=False)
        rc = b.p.wait(10)
        check("an agent that finds the socket's lock held refuses to start", rc == 1, f"rc={rc}")
        check("... saying who holds it", "it holds " + lock_path in b.logtext(), b.logtext())
        check("... and leaves no socket", not os.path.exists(os.path.join(stale_dir, "agent.sock")))
    a = Agent(d, "")
    try:
        check("with the lock free again, an agent starts", a.wait_socket() is not None, a.logtext())
    finally:
        a.stop()


def test_limits(d):
    """A member of the status group holds at most 4 connections and cannot shut root out; a peer that
    only sends refused requests is cut off, and the log does not take every refusal; a peer in more
    than 64 groups is judged by all of them; a socket folder others may write is refused; and the
    client refuses a socket not served by root."""
    nogroup = grp.getgrnam("nogroup").gr_gid
    a = Agent(d, "")
    try:
        check("limits: the agent answers", a.wait_socket() is not None, a.logtext())
        r_res, w_res = os.pipe()
        r_go, w_go = os.pipe()
        pid = os.fork()
        if pid == 0:
            become(65534, nogroup)
            held, out = [], []
            for _ in range(5):
                s = connect(a.sock)
                held.append(s)
                try:
                    s.send(b'{"v":1,"op":"ping"}')
                except OSError:
                    pass            # turned away: the agent said why before it closed
                try:
                    try:
                        data = s.recv(1 << 16)
                    except ConnectionResetError:
                        data = s.recv(1 << 16)      # closed with our request unread: the reply is behind that
                    out.append(json.loads(data))
                except (OSError, ValueError) as e:
                    out.append({"exception": repr(e)})
            os.write(w_res, json.dumps(out).encode())
            os.read(r_go, 1)            # hold them until root has been served
            os._exit(0)
        out = json.loads(os.read(r_res, 1 << 20))
        check("a status-group user is served on 4 connections at once", all(o.get("ok") for o in out[:4]), str(out))
        check("... and turned away on a 5th, saying why (EUSERS)", out[4].get("errno") == 87 and
              "too many connections of this user" in out[4].get("error", ""), str(out[4]))
        r = call(a.sock, {"v": 1, "op": "ping"})
        check("root is served while that user holds its connections", r.get("ok") is True, str(r))
        os.write(w_go, b"x")
        os.waitpid(pid, 0)

        def flood():
            with connect(a.sock) as s:
                n = 0
                try:
                    for _ in range(40):
                        s.send(b'{"v":1,"op":"reload"}')
                        if not s.recv(1 << 16):
                            break
                        n += 1
                except OSError:
                    pass
                return n
        n = as_user(65534, nogroup, flood)
        check("a peer sending only refused requests is cut off after 16", n == 16, f"{n} replies")
        refusals = [line for line in a.logtext().splitlines() if "refused" in line or "turned away" in line]
        check("refusals are logged at most 20 a minute", 0 < len(refusals) <= 20, f"{len(refusals)} lines")

        r = as_user(65534, 65533, lambda: call(a.sock, {"v": 1, "op": "ping"}),
                    groups=[10000 + i for i in range(70)] + [nogroup])
        check("a peer in 71 groups, the status group last, may ping", r.get("ok") is True, str(r))
    finally:
        a.stop()

    for mode, starts in ((0o777, False), (0o1777, True)):
        sub = os.path.join(d, "mode%o" % mode)
        os.makedirs(os.path.join(sub, "run"))
        os.chmod(os.path.join(sub, "run"), mode)
        open(os.path.join(sub, "empty.conf"), "w").close()
        b = Agent(sub, "", notify=False)
        try:
            if starts:
                check("a sticky world-writable socket folder (as /tmp) is accepted", b.wait_socket() is not None,
                      b.logtext())
            else:
                rc = b.p.wait(10)
                check("a socket folder others may write is refused, saying why",
                      rc == 1 and "only its owner, root, may write" in b.logtext(), f"rc={rc}: {b.logtext()}")
        finally:
            b.stop()

    fake = os.path.join(d, "fake")
    os.makedirs(fake)
    os.chown(fake, 65534, nogroup)
    path = os.path.join(fake, "agent.sock")
    r_ready, w_ready = os.pipe()
    pid = os.fork()
    if pid == 0:
        become(65534, nogroup)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ls.bind(path)
        ls.listen(4)
        os.write(w_ready, b"x")
        ls.settimeout(20)
        try:
            c, _ = ls.accept()
            c.recv(1 << 16)
            c.send(b'{"ok":true,"result":{"Names":["fake"]}}')
        except OSError:
            pass
        os._exit(0)
    os.read(r_ready, 1)
    env = dict(os.environ, KMSCRYPT_AGENT_SOCKET=path, KMSCRYPT_CONFIG=os.path.join(d, "empty.conf"))
    p = subprocess.run([KMSCRYPT, "list"], env=env, capture_output=True, text=True, timeout=30)
    try:
        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect(path)    # let the fake go
    except OSError:
        pass
    os.waitpid(pid, 0)
    check("the client refuses a socket served by another user than root",
          p.returncode != 0 and "served by uid 65534, not root" in p.stderr and "fake" not in p.stdout,
          f"rc={p.returncode} {p.stdout} {p.stderr}")


def hotplug(a, *args, wait=True):
    env = dict(os.environ, KMSCRYPT_CONFIG=os.path.join(a.d, "empty.conf"), KMSCRYPT_AGENT_SOCKET=a.sock)
    env.pop("JOURNAL_STREAM", None)
    p = subprocess.Popen([os.path.join(top_builddir, "kmscrypt-hotplug"), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    return p.communicate(timeout=90) + (p.returncode,) if wait else p


def test_volume_waits(d):
    """kmscrypt-hotplug volume NAME (kmscrypt-NAME.service) returns when the volume settles, not at the first try."""
    late = os.path.join(d, "late-dev")
    a = Agent(d, "gone  UUID=kmscrypt-test-no-such-uuid  db-id=db-1,volume-id=gone  timeout=3\n"
                 f"late  {late}  db-id=db-1,volume-id=late  timeout=30\n"
                 "never  UUID=kmscrypt-test-never  db-id=db-1,volume-id=never  timeout=0,nofail\n", notify=False)
    try:
        a.wait_socket()
        end = time.time() + 15
        while time.time() < end and configured(call(a.sock, {"v": 1, "op": "status"}), "gone")["State"] != "failed":
            time.sleep(0.2)
        t0 = time.time()
        out, err, rc = hotplug(a, "volume", "gone")
        took = time.time() - t0
        check("volume: a missing device fails the unit once a new round of its timeout= ran out, not at the first try",
              rc == 1 and took >= 2.5 and "gave up after" in err, f"rc={rc} took={took:.1f}s {err}")

        t0 = time.time()
        p = hotplug(a, "volume", "late", wait=False)
        time.sleep(1.5)
        check("volume: still waiting while the agent retries a device that is not there",
              p.poll() is None, p.poll() is not None and p.communicate())
        open(late, "w").close()
        out, err = p.communicate(timeout=60)
        took = time.time() - t0
        # Without device-mapper the next try after the device came fails for good: that verdict is the outcome.
        check("volume: the outcome of the retry after the device appeared, well before the timeout",
              p.returncode == 1 and "device-mapper is not available" in err and took < 30,
              f"rc={p.returncode} took={took:.1f}s {err}")
        r = call(a.sock, {"v": 1, "op": "attach", "volume": "gone", "wait": True, "options": {}})
        check("attach: \"wait\" with \"options\" still refused", not r["ok"] and r["errno"] == 22, str(r))

        # Helpers killed while they wait (units stopped, devices pulled) leave no connection behind:
        # 70 of them, more than the agent serves at once, and then root is still served.
        helpers = [hotplug(a, "volume", "never", wait=False) for _ in range(70)]
        time.sleep(2)
        for p in helpers:
            p.kill()
        for p in helpers:
            p.communicate()
        # The agent looks for a waiter gone once a second: asked until then (a loaded machine may hold it
        # up), a ping is turned away while their connections fill the agent.
        end = time.time() + 30
        while True:
            try:
                r = call(a.sock, {"v": 1, "op": "ping"})
            except (OSError, ValueError) as e:
                r = {"exception": repr(e)}
            if r.get("ok") is True or time.time() > end:
                break
            time.sleep(0.2)
        check("waiters that went away hold no connection", r.get("ok") is True, str(r))

        # Every connection taken (as many units waiting at once as the agent serves): the helper waits
        # and tries again, rather than failing its unit with "too many connections".
        # Up to the limit, or until the agent turns one away: under load it may not have reaped every
        # killed waiter's connection yet (it looks once a second), and then it is full sooner.
        held = []
        for _ in range(64):
            s = connect(a.sock)
            try:
                r = call_raw(s, b'{"v":1,"op":"ping"}')
            except (OSError, ValueError):
                r = {}
            if r.get("ok") is not True:
                s.close()
                break
            held.append(s)
        p = hotplug(a, "volume", "gone", wait=False)
        time.sleep(1.5)
        check("volume: the agent full, the helper waits", p.poll() is None, p.poll() is not None and p.communicate())
        for s in held:
            s.close()
        out, err = p.communicate(timeout=60)
        check("volume: once served, the volume's own outcome, not the agent's refusal",
              p.returncode == 1 and "gave up after" in err and "too many connections" not in err,
              f"rc={p.returncode} {err}")
    finally:
        a.stop()


class StandIn:
    """An agent stand-in served by root on d/agent.sock, for replies kmscryptd cannot be made to give
    on this host: answer(request) is the reply to send, or None to close with the request unanswered.
    ops: the requests' op, in order."""

    def __init__(self, d, answer):
        self.sock, self.d, self.ops = os.path.join(d, "agent.sock"), d, []
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ls.bind(self.sock)
        self.ls.listen(4)
        self.ls.settimeout(0.2)
        self.done = threading.Event()
        self.t = threading.Thread(target=self.serve, args=(answer,))
        self.t.start()

    def serve(self, answer):
        while not self.done.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            with c:
                c.settimeout(10)
                request = json.loads(c.recv(1 << 16))
                self.ops.append(request["op"])
                reply = answer(request)
                if reply is not None:
                    c.send(json.dumps(reply).encode())

    def close(self):
        self.done.set()
        self.t.join()
        self.ls.close()
        os.unlink(self.sock)


def test_refused_is_no_absence(d):
    """An attach the agent answers with ECONNREFUSED (a remote KMS it could not reach) fails the helper
    with that answer (1), not as "no agent" (5).  kmscryptd finds device-mapper missing here before it
    asks any KMS, so a stand-in gives the reply."""
    refusal = "aws Decrypt: cannot connect to https://kms.eu-west-1.amazonaws.com/: Connection refused"
    fake = StandIn(d, lambda request: {"v": 1, "ok": False, "errno": errno.ECONNREFUSED, "error": refusal})
    try:
        for verb, arg in (("volume", "remote"), ("attach", "1:3")):
            out, err, rc = hotplug(fake, verb, arg)
            check(f"{verb}: an agent's ECONNREFUSED is its answer (1, its reason), not \"no agent\" (5)",
                  rc == 1 and refusal in err and "cannot reach the kmscrypt agent" not in err, f"rc={rc} {err}")
        check("... asked once each, not again", fake.ops == ["attach", "hotplug"], str(fake.ops))
    finally:
        fake.close()
    out, err, rc = hotplug(types.SimpleNamespace(d=d, sock=os.path.join(d, "none.sock")), "volume", "remote")
    check("volume: no agent at all is 5", rc == 5 and "cannot reach the kmscrypt agent" in err, f"rc={rc} {err}")


def test_lost_cap(d):
    """A request that every agent dies of (it closes with the request unanswered) is asked of four
    agents, then the helper gives up (1, "no reply"): it is not sent on to every agent systemd starts,
    until the start limit takes the agent away from every volume."""
    fake = StandIn(d, lambda request: None)
    try:
        t0 = time.time()
        out, err, rc = hotplug(fake, "volume", "poison")
        check("volume: four agents lost under one request, then the helper gives up",
              rc == 1 and "no reply from the agent" in err and fake.ops == ["attach"] * 4 and time.time() - t0 < 20,
              f"rc={rc} asked {fake.ops} {err}")
    finally:
        fake.close()


def test_status_key_state(d):
    """kmscrypt status --json gives KeyState as the bare state word that the key commands print, and
    what the state means for the volume in KeyStateReason; the text keeps them on one line.  The
    mapping comes from a stand-in agent (there is no dm-crypt mapping here); its device is an image
    file with a kmscrypt header, whose CMK kmscrypt status asks the keystore about."""
    env = types.SimpleNamespace(d=d, sock=os.path.join(d, "agent.sock"))
    img, pw = os.path.join(d, "vol.img"), os.path.join(d, "recovery")
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    with open(pw, "w") as f:
        f.write("recover\n")
    r = kmscrypt(env, "--json", "key", "create", "--alias", "alias/st", agent=False)
    key_id = json.loads(r.stdout)["KeyMetadata"]["KeyId"] if r.returncode == 0 else r.stderr
    r = kmscrypt(env, "format", img, "--key", "alias/st", "--context", "db-id=db-1,volume-id=vol-1",
                 "--recovery-passphrase-file", pw, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
                 agent=False)
    check("status key state: a kmscrypt image to report on", r.returncode == 0, r.stderr)
    mapping = {"Name": "st", "Device": img, "LuksUuid": "", "Provider": "local", "KeyId": key_id, "KeyVersion": 1,
               "Cipher": "aes-xts-plain64", "KeySize": 512, "KeyDescription": "kmscrypt:st", "SectorSize": 4096,
               "Offset": 32768, "Size": 32768, "Flags": "", "ReadOnly": False, "Suspended": False,
               "KeyWiped": False, "OpenCount": 0}
    result = {"DeviceMapper": True, "Volumes": [mapping], "Errors": [], "Configured": []}
    fake = StandIn(d, lambda request: {"v": 1, "ok": True, "result": result})
    try:
        r = kmscrypt(env, "--json", "status")
        st = json.loads(r.stdout)[0] if r.returncode == 0 and r.stdout.startswith("[") else {}
        check("status --json, key enabled: KeyState Enabled and no KeyStateReason",
              st.get("KeyState") == "Enabled" and "KeyStateReason" not in st, r.stdout + r.stderr)
        r = kmscrypt(env, "key", "disable", "alias/st", agent=False)
        check("status key state: key disabled", r.returncode == 0, r.stderr)
        r = kmscrypt(env, "--json", "status")
        st = json.loads(r.stdout)[0] if r.returncode == 0 and r.stdout.startswith("[") else {}
        check("status --json, key disabled: KeyState is the bare word of key describe",
              st.get("KeyState") == "Disabled", r.stdout + r.stderr)
        check("status --json, key disabled: KeyStateReason says what still opens the volume",
              st.get("KeyStateReason") == "only a recovery keyslot opens this volume (1 keyslot)", r.stdout)
        r = kmscrypt(env, "status")
        check("status text: key is a key reference, as dump's Key (local:ID)",
              f"  key:          local:{key_id} (version 1)\n" in r.stdout, r.stdout + r.stderr)
        check("status text: the state and its reason on the key state line",
              r.returncode == 0 and "  key state:    Disabled: only a recovery keyslot opens this volume (1 keyslot)\n"
              in r.stdout, r.stdout + r.stderr)
    finally:
        fake.close()


def loop_device(d, name):
    """A loop device over a 32 MiB file in d, or None where there are none; detached by the caller."""
    if not shutil.which("losetup") or not os.path.exists("/dev/loop-control"):
        return None
    img = os.path.join(d, name + ".img")
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    r = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def test_hotplug_reload(d):
    """A kmscrypt volume whose entry is newer than the agent's list: the file is re-read before a refusal."""
    loops = [loop_device(d, n) for n in ("hot", "foreign")]
    a = None
    try:
        if None in loops:
            print("skip - no loop devices: the re-read before a hotplug refusal is not tested here")
            return
        a = Agent(d, "", notify=False)
        a.wait_socket()
        r = kmscrypt(a, "key", "create", "--alias", "alias/hot")
        check("hotplug reload: key created", r.returncode == 0, r.stderr)
        for dev, vol in zip(loops, ("hot", "foreign")):
            r = kmscrypt(a, "-q", "format", dev, "--key", "alias/hot", "--context", f"db-id=db-1,volume-id={vol}",
                         agent=False)
            check(f"hotplug reload: {vol} formatted on {dev}", r.returncode == 0, r.stderr)
        # The entry is written, udev's event comes before anyone reloads the agent.
        with open(a.volumes, "a") as f:
            f.write(f"hot {loops[0]} db-id=db-1,volume-id=hot\n")
        majmin = [open(f"/sys/class/block/{os.path.basename(dev)}/dev").read().strip() for dev in loops]
        with open(os.path.join(d, "audit.log")) as f:
            refusals = sum('"Attach"' in line and "hotplug" in line for line in f)
        out, err, rc = hotplug(a, "attach", majmin[0])
        # No device-mapper here: the attach of the configured volume then fails for that reason.
        check("hotplug of a volume whose entry the agent has not read: the file re-read, the volume attached",
              rc == 1 and "device-mapper is not available" in err and "no entry" not in err, f"rc={rc} {err}")
        check("hotplug reload: the agent says it re-read the file", "re-reading the file" in a.logtext(),
              a.logtext()[-500:])
        with open(os.path.join(d, "audit.log")) as f:
            after = sum('"Attach"' in line and "hotplug" in line for line in f)
        check("hotplug reload: no refusal audited for the configured volume", after == refusals, f"{refusals} {after}")
        out, err, rc = hotplug(a, "attach", majmin[1])
        check("hotplug of a kmscrypt volume no entry names, after the re-read: refused (4)",
              rc == 4 and "no entry" in err, f"rc={rc} {err}")
        with open(os.path.join(d, "audit.log")) as f:
            after2 = sum('"Attach"' in line and "hotplug" in line for line in f)
        check("hotplug reload: the refusal is audited", after2 == after + 1, f"{after} {after2}")
        with open(os.path.join(d, "audit.log")) as f:
            refusal = json.loads([line for line in f if '"Attach"' in line and "hotplug" in line][-1])
        keys = json.loads(kmscrypt(a, "--json", "key", "list").stdout)
        hot = [k["TargetKeyId"] for k in keys["Aliases"] if k["AliasName"] == "alias/hot"]
        check("hotplug reload: the refusal names the key as the KMS's records do (bare id, version)",
              hot and refusal["key_id"] == hot[0] and refusal["key_version"] == 1, f"{refusal} {hot}")
    finally:
        if a:
            a.stop()
        for dev in loops:
            if dev:
                subprocess.run(["losetup", "-d", dev])


def stopped(pid, timeout=10):
    """Whether process pid is stopped (state T) within timeout seconds."""
    end = time.time() + timeout
    while time.time() < end:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.02)
    return False


def test_stop_while_starting(d):
    """A SIGTERM before the agent has its signalfd (systemd stopping a unit that is still starting) is a
    clean stop, status 0, not death by the signal (143, a failed unit)."""
    a = Agent(d, "", notify=False, env={"KC_FAULT_STOP": "agent:starting"})
    try:
        check("stop while starting: the agent halts at its fault point", stopped(a.p.pid))
        a.p.send_signal(signal.SIGTERM)
        a.p.send_signal(signal.SIGCONT)
        try:
            rc = a.p.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        check("stop while starting: a SIGTERM before the signalfd ends the agent with status 0",
              rc == 0 and "stopping" in a.logtext(), f"rc={rc} {a.logtext()}")
    finally:
        a.stop()


def test_bad_volumes(d):
    a = Agent(d, "x /dev/null db-id=1\nx /dev/zero db-id=2\n", notify=False)
    rc = a.p.wait(10)
    check("a broken volumes file at start: exit 1 naming file:line",
          rc == 1 and "volumes:2: volume x is already defined on line 1" in a.logtext(), a.logtext())


def test_long_paths(d):
    """A configured device path longer than 255 bytes is kept and reported whole (it once was cut to 255
    in the agent's status and its client's); an attach request with a path over PATH_MAX is refused by
    the parser, naming its start and why."""
    long_dev = "/dev/disk/by-path/" + "/".join(["p" * 60] * 6) + "/kmscrypt-test-none"
    a = Agent(d, f"long  {long_dev}  db-id=db-1,volume-id=long  nofail,timeout=0\n")
    try:
        check("long paths: the agent answers", a.wait_socket() is not None, a.logtext())
        r = call(a.sock, {"v": 1, "op": "status"})
        long = configured(r, "long")
        check(f"status: a configured device of {len(long_dev)} bytes, whole", long["Device"] == long_dev,
              str(long)[:400])
        r = kmscrypt(a, "--json", "attach", "--all")
        out = json.loads(r.stdout) if r.stdout.startswith("[") else []
        check("kmscrypt attach --all through the agent: the device whole",
              [v.get("Device") for v in out] == [long_dev], f"{r.stdout[:400]} {r.stderr[:400]}")
        for member, req in (("device", {"device": "/" + "x" * 4096}),
                            ("header", {"device": "/dev/null", "options": {"header": "/" + "x" * 4096}})):
            r = call(a.sock, {"v": 1, "op": "attach", **req})
            check(f"attach with a {member} of 4097 bytes: ENAMETOOLONG, one short line saying why",
                  not r["ok"] and r["errno"] == errno.ENAMETOOLONG and len(r["error"]) < 200 and
                  r["error"].endswith("a path of 4097 bytes, longer than 4095"), str(r)[:400])
    finally:
        a.stop()


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root to test authorization")
        sys.exit(77)
    if not os.access(KMSCRYPTD, os.X_OK):
        print(f"no {KMSCRYPTD}")
        sys.exit(99)
    tests = (test_basics, test_activation, test_activated_restart, test_activated_killed, test_stop_unread,
             test_stale_and_twice, test_volume_waits, test_refused_is_no_absence, test_lost_cap, test_status_key_state,
             test_hotplug_reload,
             test_bad_volumes, test_limits, test_stop_while_starting, test_long_paths)
    if len(sys.argv) > 1:       # a debugging run of some: agent-host.py test_limits test_basics
        known = {t.__name__: t for t in tests}
        unknown = [a for a in sys.argv[1:] if a not in known]
        if unknown:
            print(f"no such test: {' '.join(unknown)} (known: {' '.join(known)})")
            sys.exit(99)
        tests = [known[a] for a in sys.argv[1:]]
    for test in tests:
        d = tempfile.mkdtemp(prefix="kmscryptd-host.")
        os.chmod(d, 0o755)       # the unprivileged children must reach the socket
        open(os.path.join(d, "empty.conf"), "w").close()
        try:
            test(d)
        except Exception as e:  # one broken test must not hide the others
            fail(f"{test.__name__}: {e!r}")
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
