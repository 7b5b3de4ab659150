#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The release tarball (make dist) carries every file of the repository that
# a build, a test tier or a reader needs: each file git tracks must be in
# the tree `make distdir` lays out, but for the few that only make sense in
# a clone (CI's entry point, .gitignore).  A file added to git and to no
# EXTRA_DIST or _SOURCES fails here, not in a packager's build.
#
# Skipped outside a git checkout (a tarball's own `make check`, or git missing).
set -u
src=${top_srcdir:-.}
bld=${top_builddir:-.}
# The source tree itself, not a tarball unpacked inside a clone (make distcheck).
top=$(git -C "$src" rev-parse --show-toplevel 2>/dev/null) && [ "$top" = "$(cd "$src" && pwd -P)" ] ||
        { echo "SKIP: not a git checkout"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kc-dist.XXXXXX") || exit 1
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
# distdir, not dist: the same file list without the compression.
if ! ${MAKE:-make} -s -C "$bld" distdir distdir="$tmp/d" >"$tmp/log" 2>&1; then
        sed 's/^/make distdir: /' "$tmp/log" | tail -n 5
        echo "FAIL - make distdir"
        echo "0 passed, 1 failed"
        exit 1
fi

# Only in a clone: CI's entry point and git's own configuration.
repo_only() {
        case $1 in
        .ci/*|.gitignore|*/.gitignore) return 0 ;;
        esac
        return 1
}

# One check, and a line for each file it misses.
n=0 failed=0
git -C "$src" ls-files >"$tmp/tracked"
while IFS= read -r f; do
        repo_only "$f" && continue
        n=$((n + 1))
        [ -e "$tmp/d/$f" ] && continue
        echo "FAIL - $f is tracked by git but not in the release tarball (add it to an EXTRA_DIST)"
        failed=$((failed + 1))
done <"$tmp/tracked"
if [ "$n" -gt 0 ] && [ "$failed" = 0 ]; then
        echo "ok - all $n tracked files are in the tarball"
        echo "1 passed, 0 failed"
        exit 0
fi
[ "$n" -gt 0 ] || echo "FAIL - git tracks no file here"
echo "0 passed, 1 failed"
exit 1
