/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "lib/secret.h"

/*
 * Layout of one allocation: [header | data ... | slack up to page end].
 * The header sits in the same locked mapping, so the size cannot be
 * corrupted by an overflow in someone else's heap chunk.
 */
struct secret_header {
        size_t size;       /* what the caller asked for */
        size_t map_size;   /* page-rounded length of the mapping */
        uint64_t magic;
};

#define SECRET_MAGIC UINT64_C(0x6b6d7363726b6579) /* "kmscrkey" */
#define HEADER_SIZE ((sizeof(struct secret_header) + 15) & ~(size_t) 15)

static bool all_locked = true;

static struct secret_header *header_of(const void *p) {
        struct secret_header *h = (struct secret_header *) ((uint8_t *) p - HEADER_SIZE);
        if (h->magic != SECRET_MAGIC)
                abort(); /* not ours: freeing it would corrupt memory */
        return h;
}

void kc_wipe(void *p, size_t n) {
        if (p && n > 0)
                OPENSSL_cleanse(p, n);
}

bool kc_memeq_const(const void *a, const void *b, size_t n) {
        return CRYPTO_memcmp(a, b, n) == 0;
}

void *kc_secret_alloc(size_t n) {
        long page = sysconf(_SC_PAGESIZE);
        struct secret_header *h;
        size_t map_size;
        void *m;

        if (n == 0 || n > SIZE_MAX - HEADER_SIZE - (size_t) page) {
                errno = EINVAL;
                return NULL;
        }
        map_size = (HEADER_SIZE + n + (size_t) page - 1) & ~((size_t) page - 1);

        m = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return NULL;
        /* Keep secrets out of core dumps and swap; fork children do not inherit them. */
        (void) madvise(m, map_size, MADV_DONTDUMP);
        (void) madvise(m, map_size, MADV_DONTFORK);
        if (mlock(m, map_size) < 0)
                all_locked = false;

        h = m;
        h->size = n;
        h->map_size = map_size;
        h->magic = SECRET_MAGIC;
        return (uint8_t *) m + HEADER_SIZE;
}

void kc_secret_free(void *p) {
        struct secret_header *h;
        size_t map_size;

        if (!p)
                return;
        h = header_of(p);
        map_size = h->map_size;
        kc_wipe(h, map_size);
        (void) munlock(h, map_size);
        (void) munmap(h, map_size);
}

size_t kc_secret_size(const void *p) {
        return p ? header_of(p)->size : 0;
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

void kc_wipe_free_str(char *s) {
        if (!s)
                return;
        kc_wipe(s, strlen(s));
        free(s);
}
