/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The LUKS2 header of a device, through our boundary over libcryptsetup:
 * kc_luks_open(), then what attach and hotplug read from any disk that is
 * plugged in (the kmscrypt token, the segment, the dump).
 *
 * Input: the start of a device (both binary headers and their JSON areas,
 * 32 KiB with the default metadata size).  Before loading, the SHA-256
 * checksum of each binary header found (primary at 0, secondary at the
 * primary's hdr_size) is recomputed over its header and JSON area, as
 * cryptsetup's own LUKS2 fuzzer does: otherwise nearly every mutation stops
 * at the checksum and never reaches the JSON parser or the token.  The image
 * lives in /dev/shm, extended sparse to 16 MiB so that the data segment of
 * the default layout lies inside it.
 */

#include <fcntl.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <openssl/sha.h>

#include "agent/luks.h"
#include "agent/token.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "tests/fuzz/fuzz.h"

#define BIN_HDR_SIZE 4096
#define HDR_SIZE_OFF 8          /* u64be: binary header + JSON area */
#define CSUM_ALG_OFF 72         /* char[32] */
#define CSUM_OFF 448            /* 64 bytes, of which sha256 uses 32 */
#define IMAGE_SIZE (16u << 20)

static char *image;

static void remove_image(void) {
        unlink(image);
        free(image);
}

static void setup(void) {
        char shm[] = "/dev/shm/kc-fuzz-luks2.XXXXXX", tmp[] = "/tmp/kc-fuzz-luks2.XXXXXX";
        int fd;

        if (image)
                return;
        fd = mkstemp(shm);
        image = strdup(fd >= 0 ? shm : tmp);
        if (fd < 0)
                fd = mkstemp(image);
        FUZZ_ASSERT(fd >= 0 && image);
        close(fd);
        atexit(remove_image);
        /* Nothing on stderr from libcryptsetup: kc_luks routes its log to debug. */
        crypt_set_debug_level(CRYPT_DEBUG_NONE);
}

static uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* Recompute the checksum of the binary header at off, if one is there; returns its hdr_size or 0. */
static uint64_t fix_checksum(uint8_t *buf, size_t len, size_t off) {
        uint8_t *h = buf + off;
        uint64_t size;

        if (off >= len || len - off < BIN_HDR_SIZE)
                return 0;
        if (memcmp(h, "LUKS\xba\xbe", 6) != 0 && memcmp(h, "SKUL\xba\xbe", 6) != 0)
                return 0;
        size = be64(h + HDR_SIZE_OFF);
        if (size < BIN_HDR_SIZE || size > len - off)
                return 0;
        if (strncmp((const char *) h + CSUM_ALG_OFF, "sha256", 32) == 0) {
                memset(h + CSUM_OFF, 0, 64);
                SHA256(h, size, h + CSUM_OFF);
        }
        return size;
}

static void write_image(const uint8_t *data, size_t size) {
        _cleanup_close_ int fd = open(image, O_WRONLY | O_TRUNC | O_CLOEXEC);
        FUZZ_ASSERT(fd >= 0);
        FUZZ_ASSERT(write(fd, data, size) == (ssize_t) size);
        FUZZ_ASSERT(ftruncate(fd, size > IMAGE_SIZE ? size : IMAGE_SIZE) == 0);
}

/*
 * The peek attach starts from (kc_luks_peek()): whatever it makes of the
 * bytes, when kc_luks_peek_matches() says libcryptsetup loaded the same, the
 * segment and token it gives are the loaded header's.  Before that check
 * the attach already sizes and loads (not resumes) a table from the peek's
 * segment, so even an unmatched one must have a sector size LUKS2 allows.
 * pk was taken before the load, as attach takes it: libcryptsetup's load
 * repairs a primary copy it refuses from the secondary.
 */
static void check_peek(const struct kc_luks_peek *pk, struct kc_luks *l, int r_segment,
                       const struct kc_luks_segment *lseg, int r_token, const struct kc_token *lt) {
        _cleanup_(kc_token_clear) struct kc_token pt = {};
        struct kc_luks_segment ps;

        if (!pk || kc_luks_peek_segment(pk, &ps) < 0)
                return;
        FUZZ_ASSERT(kc_crypt_sector_size_valid(ps.sector_size));
        if (!l || r_segment < 0 || !kc_luks_peek_matches(pk, &ps, l, lseg))
                return;
        ps.key_size = lseg->key_size;
        FUZZ_ASSERT(memcmp(&ps, lseg, sizeof(ps)) == 0);
        if (kc_luks_peek_token(pk, &pt) == 0)
                FUZZ_ASSERT(r_token == 0 && lt->version == pt.version && streq(lt->provider, pt.provider) &&
                            streq(lt->key_id, pt.key_id) && lt->key_version == pt.key_version &&
                            kc_context_equal(lt->context, pt.context) && lt->wrapped_key_len == pt.wrapped_key_len &&
                            memcmp(lt->wrapped_key, pt.wrapped_key, pt.wrapped_key_len) == 0);
}

static void read_header(void) {
        _cleanup_(kc_luks_peek_freep) struct kc_luks_peek *pk = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_(kc_token_clear) struct kc_token t = {};
        struct kc_luks_segment seg = {};
        struct json_object *dump = NULL;
        struct kc_err err = {};
        int r, rt = -ENOENT, rs = -ENOENT, id = -1;

        (void) kc_luks_peek(image, NULL, &pk);
        r = kc_luks_open(image, NULL, &l, &err);
        fuzz_assert_refusal(r, &err);
        if (r >= 0) {
                err = (struct kc_err) {};
                rt = kc_luks_token_read(l, &t, &id, &err);
                if (rt != -ENOENT)
                        fuzz_assert_refusal(rt, &err);
                if (rt == 0)
                        FUZZ_ASSERT(id >= 0 && id < 32 && t.context);
                rs = kc_luks_segment(l, &seg);
                if (kc_luks_dump_json(l, &dump) == 0)
                        json_object_put(dump);
        }
        check_peek(pk, l, rs, &seg, rt, &t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t hdr_size;

        if (size < BIN_HDR_SIZE)
                return 0;
        setup();
        buf = malloc(size);
        FUZZ_ASSERT(buf);
        memcpy(buf, data, size);
        hdr_size = fix_checksum(buf, size, 0);
        if (hdr_size)
                (void) fix_checksum(buf, size, hdr_size);
        write_image(buf, size);
        read_header();
        return 0;
}
