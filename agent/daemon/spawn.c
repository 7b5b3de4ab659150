/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/daemon/spawn.h"
#include "lib/log.h"
#include "lib/macro.h"

#define STOP_POLL_MS 100

extern char **environ;

/* What the child wrote on stderr so far: the last complete line wins, a partial one is kept for its end. */
struct tail {
        char line[512], partial[512];
        size_t n;
};

static void tail_add(struct tail *t, const char *buf, size_t len) {
        for (size_t i = 0; i < len; i++) {
                if (buf[i] == '\n') {
                        t->partial[t->n] = '\0';
                        if (t->n > 0)
                                memcpy(t->line, t->partial, t->n + 1);
                        t->n = 0;
                } else if (t->n < sizeof(t->partial) - 1)
                        t->partial[t->n++] = buf[i];
        }
}

/* Read what is there; false at end of file (or on an error, which ends the reading as well). */
static bool tail_read(struct tail *t, int fd) {
        char buf[1024];
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n > 0)
                tail_add(t, buf, (size_t) n);
        return n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN));
}

/* Once the child is gone: whatever is still in the pipe. */
static void tail_drain(struct tail *t, int fd) {
        char buf[1024];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
                if (n > 0)
                        tail_add(t, buf, (size_t) n);
}

static int spawn(char *const argv[], int err_fd, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int r;

        sigemptyset(&none);
        sigfillset(&all);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        /* The agent blocks its stop signals in every thread (a signalfd reads them): the child must not. */
        r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
        if (r == 0)
                r = posix_spawnp(ret_pid, argv[0], &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static int exit_status(int st) {
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int kc_spawn_wait(char *const argv[], bool (*stop)(void *userdata), void *userdata, char *last_line, size_t size) {
        struct tail t = {};
        bool reading = true, signalled = false;
        int p[2], st = 0, r;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return negative_errno();
        r = spawn(argv, p[1], &pid);
        close(p[1]);
        if (r < 0) {
                close(p[0]);
                return log_debug_errno(r, "cannot run %s: %m", argv[0]);
        }
        for (;;) {
                struct pollfd pfd = { .fd = p[0], .events = POLLIN };
                pid_t w;

                if (reading) {
                        if (poll(&pfd, 1, STOP_POLL_MS) > 0)
                                reading = tail_read(&t, p[0]);
                } else
                        (void) poll(NULL, 0, STOP_POLL_MS);
                do
                        w = waitpid(pid, &st, WNOHANG);
                while (w < 0 && errno == EINTR);
                if (w < 0) {
                        r = negative_errno();   /* reaped by someone else: no status to go by */
                        break;
                }
                if (w == pid)
                        break;
                if (!signalled && stop && stop(userdata)) {
                        (void) kill(pid, SIGTERM);
                        signalled = true;
                }
        }
        tail_drain(&t, p[0]);
        close(p[0]);
        tail_add(&t, "\n", 1);
        if (last_line && size > 0)
                kc_strscpy(last_line, size, t.line);
        return r < 0 ? r : exit_status(st);
}
