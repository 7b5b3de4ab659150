/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kc-memscan: look for a key in the memory of running processes and in files
 * (tests/vm/guest/hostile-secrets.sh, issue #8).  The key comes in hex on
 * stdin, never in argv, so that the scanner puts it in no process's command
 * line.  It is looked for in four forms: the raw bytes, lower- and
 * upper-case hex, and base64.
 *
 *   kc-memscan pid PID... <KEYHEX    every readable mapping of each process
 *                                    (/proc/PID/maps, read through /proc/PID/mem;
 *                                    root with CAP_SYS_PTRACE reads a
 *                                    non-dumpable process too)
 *   kc-memscan file FILE... <KEYHEX
 *   kc-memscan self-test <KEYHEX     the positive control: a child that holds
 *                                    every form must be found in every form
 *
 * Exit 0 when nothing was found (self-test: when everything was), 1 when a
 * form was found (printed with where), 2 on an error.  Prints the bytes
 * scanned, so a test can tell a scan from a read that failed.  The core
 * image is read in place rather than written out with gcore: the vm tier's
 * initramfs has no gdb, and a core file would be one more copy of the key.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#define CHUNK (1u << 20)
#define MAX_KEY 128

struct needle {
        const char *form;
        unsigned char bytes[4 * MAX_KEY];
        size_t len;
        bool found;
};

static struct needle needles[4];
static unsigned long long scanned;

static int read_key(unsigned char *key, size_t *ret_len) {
        char hex[2 * MAX_KEY + 2];
        size_t n = 0;
        int c;

        while ((c = getchar()) != EOF && n < sizeof(hex) - 1)
                if (!strchr(" \t\r\n", c))
                        hex[n++] = (char) c;
        if (n == 0 || n % 2 || n / 2 > MAX_KEY)
                return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                key[i] = (unsigned char) v;
        }
        *ret_len = n / 2;
        return 0;
}

static void encode(const unsigned char *key, size_t len, char *hex_lower, char *hex_upper, char *b64) {
        for (size_t i = 0; i < len; i++) {
                sprintf(hex_lower + 2 * i, "%02x", key[i]);
                sprintf(hex_upper + 2 * i, "%02X", key[i]);
        }
        EVP_EncodeBlock((unsigned char *) b64, key, (int) len);
}

static void make_needles(const unsigned char *key, size_t len) {
        static const char *forms[] = { "raw", "hex", "HEX", "base64" };

        for (int i = 0; i < 4; i++)
                needles[i].form = forms[i];
        memcpy(needles[0].bytes, key, len);
        needles[0].len = len;
        encode(key, len, (char *) needles[1].bytes, (char *) needles[2].bytes, (char *) needles[3].bytes);
        for (int i = 1; i < 4; i++)
                needles[i].len = strlen((char *) needles[i].bytes);
}

/* Look in buf (whose first byte is at addr of what); returns how many forms were found. */
static int search(const unsigned char *buf, size_t n, unsigned long long addr, const char *what) {
        int hits = 0;

        for (int i = 0; i < 4; i++)
                for (const unsigned char *p = buf; n >= needles[i].len && p <= buf + n - needles[i].len; p++) {
                        p = memchr(p, needles[i].bytes[0], buf + n - needles[i].len + 1 - p);
                        if (!p)
                                break;
                        if (memcmp(p, needles[i].bytes, needles[i].len) == 0) {
                                printf("found %s key in %s at 0x%llx\n", needles[i].form, what,
                                       addr + (unsigned long long) (p - buf));
                                needles[i].found = true;
                                hits++;
                                break;
                        }
                }
        return hits;
}

/* Read [start, end) of fd in chunks that overlap by the longest needle, so no match straddles two. */
static int scan_range(int fd, unsigned long long start, unsigned long long end, const char *what,
                      unsigned char *buf) {
        const size_t overlap = 4 * MAX_KEY;
        unsigned long long at = start;
        int hits = 0;

        while (at < end) {
                size_t want = end - at > CHUNK ? CHUNK : end - at;
                ssize_t got = pread(fd, buf, want, (off_t) at);

                if (got <= 0)
                        break;          /* [vvar] and guard pages do not read: not an error */
                scanned += (unsigned long long) got;
                hits += search(buf, (size_t) got, at, what);
                if ((size_t) got < want || at + (unsigned long long) got >= end)
                        break;
                at += (unsigned long long) got > overlap ? (unsigned long long) got - overlap : (unsigned long long) got;
        }
        return hits;
}

static int scan_pid(const char *pid, unsigned char *buf) {
        char path[64], line[512], what[600];
        FILE *maps;
        int fd, hits = 0;

        snprintf(path, sizeof(path), "/proc/%s/mem", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        snprintf(path, sizeof(path), "/proc/%s/maps", pid);
        maps = fopen(path, "re");
        if (fd < 0 || !maps) {
                fprintf(stderr, "kc-memscan: cannot read the memory of %s: %s\n", pid, strerror(errno));
                if (fd >= 0)
                        close(fd);
                if (maps)
                        fclose(maps);
                return -1;
        }
        while (fgets(line, sizeof(line), maps)) {
                unsigned long long start, end;
                char perms[8];
                int name_at = 0;

                if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &start, &end, perms, &name_at) < 3 ||
                    perms[0] != 'r')
                        continue;
                line[strcspn(line, "\n")] = '\0';
                snprintf(what, sizeof(what), "pid %s %s", pid, name_at ? line + name_at : "");
                hits += scan_range(fd, start, end, what, buf);
        }
        fclose(maps);
        close(fd);
        return hits;
}

static int scan_file(const char *file, unsigned char *buf) {
        int fd = open(file, O_RDONLY | O_CLOEXEC), hits;
        char what[600];

        if (fd < 0) {
                fprintf(stderr, "kc-memscan: cannot open %s: %s\n", file, strerror(errno));
                return -1;
        }
        snprintf(what, sizeof(what), "file %s", file);
        hits = scan_range(fd, 0, ~0ull >> 1, what, buf);
        close(fd);
        return hits;
}

/* A child that holds every form, each once, in memory of its own making. */
static int self_test(const unsigned char *key, size_t len, unsigned char *buf) {
        int ready[2];
        char pidbuf[32], c;
        pid_t pid;
        int hits;

        if (pipe(ready) < 0)
                return -1;
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                char *mem = malloc(16 * MAX_KEY);
                if (!mem)
                        _exit(1);
                memcpy(mem, key, len);
                encode(key, len, mem + MAX_KEY, mem + 4 * MAX_KEY, mem + 8 * MAX_KEY);
                (void) !write(ready[1], "r", 1);
                pause();
                _exit(0);
        }
        close(ready[1]);
        if (read(ready[0], &c, 1) != 1)
                return -1;
        make_needles(key, len);
        snprintf(pidbuf, sizeof(pidbuf), "%d", (int) pid);
        hits = scan_pid(pidbuf, buf);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        for (int i = 0; i < 4; i++)
                if (!needles[i].found) {
                        fprintf(stderr, "kc-memscan: self-test: %s form not found\n", needles[i].form);
                        return -1;
                }
        return hits;
}

int main(int argc, char **argv) {
        unsigned char key[MAX_KEY];
        size_t len;
        unsigned char *buf = malloc(CHUNK);
        int hits = 0, r;

        if (argc < 2 || !buf || read_key(key, &len) < 0) {
                fprintf(stderr, "usage: kc-memscan pid PID...|file FILE...|self-test <KEYHEX\n");
                return 2;
        }
        if (strcmp(argv[1], "self-test") == 0) {
                r = self_test(key, len, buf);
                printf("self-test: %s (%llu bytes scanned)\n", r > 0 ? "every form found" : "FAILED", scanned);
                return r > 0 ? 0 : 1;
        }
        make_needles(key, len);
        for (int i = 2; i < argc; i++) {
                if (strcmp(argv[1], "pid") == 0)
                        r = scan_pid(argv[i], buf);
                else if (strcmp(argv[1], "file") == 0)
                        r = scan_file(argv[i], buf);
                else
                        r = -1;
                if (r < 0)
                        return 2;
                hits += r;
        }
        printf("%llu bytes scanned, %d found\n", scanned, hits);
        return hits ? 1 : 0;
}
