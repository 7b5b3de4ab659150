#!/usr/bin/env python3
"""A passphrase typed at a terminal (--recovery-passphrase-file - with stdin a tty) is prompted
for, not echoed, read as one line without its newline, and opens the volume with stock cryptsetup."""
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import termios

top_builddir = os.environ.get("top_builddir", os.path.join(os.path.dirname(__file__), "..", ".."))
KMSCRYPT = os.path.join(top_builddir, "kmscrypt")
PASS = b"typed-recovery-words"


def format_at_prompt(t, vol, env):
    """kmscrypt format of a fresh image under a pty, read up to its passphrase prompt:
    (image, pid, pty fd, what the terminal showed)."""
    img = os.path.join(t, vol + ".img")
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(KMSCRYPT, [KMSCRYPT, "format", img, "--key", "alias/t", "--context", "db-id=d,volume-id=" + vol,
                             "--recovery-passphrase-file", "-", "--pbkdf", "pbkdf2",
                             "--pbkdf-force-iterations", "1000"], env)
    seen = b""
    while b"Passphrase for --recovery-passphrase-file: " not in seen:
        chunk = os.read(fd, 1024)
        if not chunk:
            break
        seen += chunk
    return img, pid, fd, seen


def main():
    if not shutil.which("cryptsetup") or os.geteuid() != 0:
        print("SKIP: cryptsetup and root (libcryptsetup's /run/cryptsetup) are needed")
        return 77
    t = tempfile.mkdtemp(prefix="kmscrypt-tty.")
    try:
        open(os.path.join(t, "empty.conf"), "w").close()
        env = dict(os.environ, KMSCRYPT_CONFIG=os.path.join(t, "empty.conf"),
                   KMSCRYPT_KEYSTORE=os.path.join(t, "ks"), KMSCRYPT_AUDIT_LOG=os.path.join(t, "audit.log"),
                   KMSCRYPT_AUDIT_HEAD=os.path.join(t, "audit.head"))
        subprocess.run([KMSCRYPT, "-q", "key", "create", "--alias", "alias/t"], env=env, check=True)
        signal.alarm(int(os.environ.get("KC_TTY_TIMEOUT", "60")))   # a read that waits for EOF never ends
        img, pid, fd, seen = format_at_prompt(t, "v", env)
        os.write(fd, PASS + b"\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        _, status = os.waitpid(pid, 0)
        checks = [
            ("format succeeds with the typed passphrase", os.waitstatus_to_exitcode(status) == 0),
            ("it prompted for it", b"Passphrase for --recovery-passphrase-file: " in seen),
            ("the passphrase is not echoed", PASS not in seen),
        ]
        # Ctrl-C at the prompt: the command dies of SIGINT and leaves the terminal echoing again.
        _, pid, fd2, _ = format_at_prompt(t, "w", env)
        os.write(fd2, b"\x03")
        _, status2 = os.waitpid(pid, 0)
        echo_on = bool(termios.tcgetattr(fd2)[3] & termios.ECHO)
        checks.append(("Ctrl-C at the prompt ends the command", os.WIFSIGNALED(status2)))
        checks.append(("... and leaves the terminal echoing", echo_on))
        key = os.path.join(t, "pass")
        with open(key, "wb") as f:
            f.write(PASS)       # no newline: it was not part of the passphrase
        r = subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", key, img])
        checks.append(("stock cryptsetup opens it with the passphrase, newline not included", r.returncode == 0))
        failed = 0
        for name, good in checks:
            print(("ok - " if good else "FAIL - ") + name)
            failed += not good
        if failed:
            print("terminal output: %r" % seen)
        return 1 if failed else 0
    finally:
        shutil.rmtree(t, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
