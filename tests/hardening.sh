#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The installed programs carry the hardening configure found the compiler
# takes (configure.ac, HARDEN_CFLAGS and HARDEN_LDFLAGS), read back from
# the binaries as checksec would: a GOT read-only once the program runs
# (GNU_RELRO and BIND_NOW), position independence, the stack protector's
# failure handler and glibc's fortified calls among the imports.  A build
# where a Makefile dropped AM_LDFLAGS or AM_CFLAGS for one program, or a
# flag that stopped reaching the link, fails here.
#
# Environment (tests/Makemodule.am): KC_PROGRAMS, the installed programs;
# KC_HARDEN_CFLAGS and KC_HARDEN_LDFLAGS, what configure kept.
set -u
bld=${top_builddir:-.}
fails=0

[ -n "${KC_HARDEN_CFLAGS:-}${KC_HARDEN_LDFLAGS:-}" ] || { echo "SKIP: configured with --disable-hardening"; exit 77; }
command -v readelf >/dev/null || { echo "SKIP: no readelf (binutils)"; exit 77; }

has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }
matches() { printf '%s\n' "$1" | grep -qE "$2"; }       # TEXT REGEX: a line of TEXT matches
check() { # PROGRAM WHAT CONDITION...
        _p=$1 _what=$2
        shift 2
        if "$@"; then
                echo "ok - $_p: $_what"
        else
                echo "FAIL - $_p: $_what"
                fails=$((fails + 1))
        fi
}

for prog in $KC_PROGRAMS; do
        bin=$bld/$prog
        [ -x "$bin" ] || { echo "FAIL - $prog is not built"; fails=$((fails + 1)); continue; }
        dynamic=$(readelf -dW "$bin")
        segments=$(readelf -lW "$bin")
        imports=$(readelf -sW --dyn-syms "$bin" | awk '$7 == "UND" { sub(/@.*/, "", $8); print $8 }')
        check "$prog" "position independent (PIE)" matches "$dynamic" "Flags:.*PIE"
        if has "$KC_HARDEN_LDFLAGS" "-Wl,-z,relro,-z,now"; then
                check "$prog" "full RELRO: GNU_RELRO segment" matches "$segments" GNU_RELRO
                check "$prog" "full RELRO: bound at start (BIND_NOW)" matches "$dynamic" "Flags:.*NOW|BIND_NOW"
        fi
        if has "$KC_HARDEN_CFLAGS" "-fstack-protector-strong"; then
                check "$prog" "stack protector (__stack_chk_fail imported)" matches "$imports" "^__stack_chk_fail$"
        fi
        if has "$KC_HARDEN_CFLAGS" "-D_FORTIFY_SOURCE=2"; then
                check "$prog" "_FORTIFY_SOURCE (fortified libc calls imported)" matches "$imports" "^__[a-z0-9_]+_chk$"
        fi
done
[ "$fails" = 0 ] || { echo "$fails hardening checks failed"; exit 1; }
exit 0
