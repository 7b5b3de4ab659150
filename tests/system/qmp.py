#!/usr/bin/env python3
# Send one QMP command to a QEMU monitor socket and print its reply.
#   qmp.py SOCKET COMMAND [JSON-ARGUMENTS]
# Exit status 0 when QEMU answered "return", 1 on an "error" reply.
import json
import socket
import sys


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: qmp.py SOCKET COMMAND [JSON-ARGUMENTS]")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sys.argv[1])
    f = s.makefile("rw")

    def call(cmd, args=None):
        msg = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:  # skip asynchronous events until the reply
            reply = json.loads(f.readline())
            if "return" in reply or "error" in reply:
                return reply

    json.loads(f.readline())  # greeting
    call("qmp_capabilities")
    args = json.loads(sys.argv[3]) if len(sys.argv) == 4 else None
    reply = call(sys.argv[2], args)
    print(json.dumps(reply))
    sys.exit(0 if "return" in reply else 1)


if __name__ == "__main__":
    main()
