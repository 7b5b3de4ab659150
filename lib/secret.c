/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/log.h"
#include "lib/secret.h"

/*
 * Secrets live in locked, never-dumped mappings that this file owns.  A
 * mapping per secret costs an mmap + madvise + mlock + munmap (tens of
 * microseconds), which would dominate an unwrap; so small secrets come
 * from pooled chunks carved into fixed-size slots, and only secrets larger
 * than the biggest slot get a mapping of their own.
 *
 * Bookkeeping (which slot is used, how big each secret is) is kept in
 * ordinary heap memory outside the mappings, so that a corrupted secret
 * cannot corrupt the allocator, and so that MADV_WIPEONFORK can hand a
 * forked child zeroed slots without breaking its view of the pool.
 */

#define CHUNK_SIZE  ((size_t) 64 * 1024)
#define SLOT_MIN    ((size_t) 32)
#define SLOT_MAX    ((size_t) 4096)

struct chunk {
        uint8_t *base;
        size_t map_size;
        size_t slot_size;    /* for a single large secret: map_size */
        size_t nslots;
        size_t nfree;
        size_t hint;         /* where to start looking for a free slot */
        size_t *sizes;       /* requested size per slot; 0 = free */
        struct chunk *next;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunk *chunks;
static bool all_locked = true;
static int lock_errno;          /* why the first mlock() failed */

void kc_wipe(void *p, size_t n) {
        if (p && n > 0)
                OPENSSL_cleanse(p, n);
}

bool kc_memeq_const(const void *a, const void *b, size_t n) {
        return CRYPTO_memcmp(a, b, n) == 0;
}

/* A fresh locked, undumpable, wiped-on-fork mapping. Called with pool_lock held. */
static struct chunk *chunk_new(size_t map_size, size_t slot_size) {
        struct chunk *c = calloc(1, sizeof(*c));
        void *m;

        if (!c)
                return NULL;
        c->nslots = map_size / slot_size;
        c->sizes = calloc(c->nslots, sizeof(size_t));
        m = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!c->sizes || m == MAP_FAILED) {
                if (m != MAP_FAILED)
                        (void) munmap(m, map_size);
                free(c->sizes);
                free(c);
                return NULL;
        }
        (void) madvise(m, map_size, MADV_DONTDUMP);
        (void) madvise(m, map_size, MADV_WIPEONFORK);
        if (mlock(m, map_size) < 0 && all_locked) {
                lock_errno = errno;
                all_locked = false;
        }

        c->base = m;
        c->map_size = map_size;
        c->slot_size = slot_size;
        c->nfree = c->nslots;
        c->next = chunks;
        chunks = c;
        return c;
}

static void chunk_unlink_and_free(struct chunk *c) {
        for (struct chunk **pp = &chunks; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        (void) munlock(c->base, c->map_size);
        (void) munmap(c->base, c->map_size);
        free(c->sizes);
        free(c);
}

/* The chunk and slot holding p; aborts on a pointer that is not a live secret. */
static struct chunk *chunk_of(const void *p, size_t *ret_slot) {
        const uint8_t *q = p;

        for (struct chunk *c = chunks; c; c = c->next) {
                size_t off, slot;

                if (q < c->base || q >= c->base + c->map_size)
                        continue;
                off = (size_t) (q - c->base);
                slot = off / c->slot_size;
                if (off % c->slot_size != 0 || c->sizes[slot] == 0)
                        abort(); /* inside a secret, or freed twice: never continue */
                *ret_slot = slot;
                return c;
        }
        abort(); /* not ours: freeing it would corrupt memory */
}

static size_t slot_class(size_t n) {
        size_t s = SLOT_MIN;
        while (s < n)
                s <<= 1;
        return s;
}

/* Called with pool_lock held. */
static void *pool_alloc(size_t n) {
        size_t cls = slot_class(n);
        struct chunk *c;

        for (c = chunks; c; c = c->next)
                if (c->slot_size == cls && c->nslots > 1 && c->nfree > 0)
                        break;
        if (!c && !(c = chunk_new(CHUNK_SIZE, cls)))
                return NULL;
        for (size_t i = 0; i < c->nslots; i++) {
                size_t slot = (c->hint + i) % c->nslots;
                if (c->sizes[slot] == 0) {
                        c->sizes[slot] = n;
                        c->nfree--;
                        c->hint = slot + 1;
                        return c->base + slot * c->slot_size;
                }
        }
        abort(); /* nfree said there was room */
}

/* A secret too big for a slot gets a mapping of its own. Called with pool_lock held. */
static void *large_alloc(size_t n) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        size_t map_size = (n + page - 1) & ~(page - 1);
        struct chunk *c = chunk_new(map_size, map_size);

        if (!c)
                return NULL;
        c->sizes[0] = n;
        c->nfree = 0;
        return c->base;
}

void *kc_secret_alloc(size_t n) {
        void *p;

        if (n == 0 || n > SIZE_MAX / 2) {
                errno = EINVAL;
                return NULL;
        }
        pthread_mutex_lock(&pool_lock);
        p = n <= SLOT_MAX ? pool_alloc(n) : large_alloc(n);
        pthread_mutex_unlock(&pool_lock);
        if (!p)
                errno = ENOMEM;
        return p;
}

void kc_secret_free(void *p) {
        struct chunk *c;
        size_t slot;

        if (!p)
                return;
        pthread_mutex_lock(&pool_lock);
        c = chunk_of(p, &slot);
        kc_wipe(p, c->slot_size);
        c->sizes[slot] = 0;
        c->nfree++;
        if (c->nslots == 1)
                chunk_unlink_and_free(c); /* a large secret's own mapping */
        pthread_mutex_unlock(&pool_lock);
}

size_t kc_secret_size(const void *p) {
        struct chunk *c;
        size_t slot, n;

        if (!p)
                return 0;
        pthread_mutex_lock(&pool_lock);
        c = chunk_of(p, &slot);
        n = c->sizes[slot];
        pthread_mutex_unlock(&pool_lock);
        return n;
}

void *kc_secret_memdup(const void *src, size_t n) {
        void *p = kc_secret_alloc(n);
        if (p)
                memcpy(p, src, n);
        return p;
}

char *kc_secret_strdup(const char *s) {
        return kc_secret_memdup(s, strlen(s) + 1);
}

bool kc_secret_locked(void) {
        return all_locked;
}

/*
 * The one warning of lib/: whether keys stay out of swap is the
 * administrator's business, and only the program knows when to say it
 * (the CLI before it exits, the agent once it is ready).
 */
void kc_secret_warn_unlocked(void) {
        static bool warned;

        if (all_locked || warned)
                return;
        warned = true;
        log_warning_errno(-lock_errno, "secret memory could not be locked (%m): keys may be written to swap; "
                          "raise RLIMIT_MEMLOCK (LimitMEMLOCK=, ulimit -l) or grant CAP_IPC_LOCK");
}

void kc_wipe_free_str(char *s) {
        if (!s)
                return;
        kc_wipe(s, strlen(s));
        free(s);
}

int kc_format_exact(char **ret, const char *fmt, ...) {
        va_list ap;
        char *out;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || !(out = malloc((size_t) n + 1)))
                return -ENOMEM;
        va_start(ap, fmt);
        (void) vsnprintf(out, (size_t) n + 1, fmt, ap);
        va_end(ap);
        *ret = out;
        return 0;
}

/* Whether CAP_IPC_LOCK is in this thread's effective set: capget(2) itself, no libcap (nor /proc's text). */
static bool can_lock_unlimited(void) {
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

        if (syscall(SYS_capget, &hdr, data) < 0)
                return false;
        return data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective & CAP_TO_MASK(CAP_IPC_LOCK);
}

int kc_secret_lock_all(void) {
        struct rlimit rl;

        /*
         * With MCL_FUTURE, a mapping beyond RLIMIT_MEMLOCK fails (malloc,
         * a thread stack): only lock everything where there is no limit.
         */
        if (!can_lock_unlimited() && (getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur != RLIM_INFINITY))
                return -EPERM;
        if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
                return negative_errno();
        return 0;
}
