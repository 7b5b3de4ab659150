/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kc-hostile: turn a good kmscrypt volume (an image file or a block device)
 * into a hostile one, in place, for the tests of issue #8 (tests/hostile/).
 *
 *   kc-hostile list                       the cases, one a line
 *   kc-hostile CASE DEVICE [DONOR]        damage DEVICE's LUKS2 header as CASE says
 *   kc-hostile verify DEVICE              both copies' checksums valid, JSON areas equal
 *
 * It works on the two binary headers and their JSON areas only (the LUKS2
 * on-disk format: binary header of 4096 bytes, JSON area up to hdr_size,
 * the secondary copy at offset hdr_size).  A case that needs libcryptsetup
 * to read the JSON writes the edited JSON into both copies and recomputes
 * each copy's SHA-256 checksum over its header and JSON area with the
 * checksum field zeroed, as cryptsetup's luks2_disk_metadata.c computes it;
 * the checksum cases leave the checksum stale on purpose.  A plain C program
 * rather than a script so that the vm tier's guest, which has no Python,
 * can make the same images on real loop devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/sha.h>

#define BIN_HDR_SIZE 4096
#define OFF_HDR_SIZE 8          /* u64be */
#define OFF_CSUM_ALG 72         /* char[32] */
#define OFF_CSUM 448            /* char[64] */
#define MAX_HDR_SIZE (4u << 20) /* the largest LUKS2 metadata size */

struct image {
        int fd;
        uint64_t hdr_size;
        uint8_t *hdr[2];        /* both copies, hdr_size bytes each */
        struct json_object *json;
};

static int fail(const char *what) {
        fprintf(stderr, "kc-hostile: %s\n", what);
        return -1;
}

static uint64_t get_be64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = v & 0xff;
}

static int read_at(int fd, void *buf, size_t n, off_t off) {
        return pread(fd, buf, n, off) == (ssize_t) n ? 0 : -1;
}

static int write_at(int fd, const void *buf, size_t n, off_t off) {
        return pwrite(fd, buf, n, off) == (ssize_t) n ? 0 : -1;
}

static int image_open(const char *path, struct image *img) {
        uint8_t bin[BIN_HDR_SIZE];

        img->fd = open(path, O_RDWR | O_CLOEXEC);
        if (img->fd < 0)
                return fail("cannot open the device");
        if (read_at(img->fd, bin, sizeof(bin), 0) < 0 || memcmp(bin, "LUKS\xba\xbe\0\2", 8) != 0)
                return fail("not a LUKS2 device");
        img->hdr_size = get_be64(bin + OFF_HDR_SIZE);
        if (img->hdr_size <= BIN_HDR_SIZE || img->hdr_size > MAX_HDR_SIZE)
                return fail("implausible hdr_size");
        for (int i = 0; i < 2; i++) {
                img->hdr[i] = malloc(img->hdr_size);
                if (!img->hdr[i] || read_at(img->fd, img->hdr[i], img->hdr_size, i * img->hdr_size) < 0)
                        return fail("cannot read a header copy");
        }
        /* The JSON area is NUL-padded: json-c stops at the first NUL. */
        img->hdr[0][img->hdr_size - 1] = '\0';
        img->json = json_tokener_parse((const char *) img->hdr[0] + BIN_HDR_SIZE);
        if (!img->json)
                return fail("the primary JSON area does not parse");
        return 0;
}

static void checksum(uint8_t *h, uint64_t size) {
        memset(h + OFF_CSUM, 0, 64);
        if (strncmp((const char *) h + OFF_CSUM_ALG, "sha256", 32) == 0)
                SHA256(h, size, h + OFF_CSUM);
}

/* Both copies with text as their JSON area, checksums valid. */
static int write_json_text(struct image *img, const char *text) {
        size_t len = strlen(text);

        if (len >= img->hdr_size - BIN_HDR_SIZE)
                return fail("JSON does not fit the JSON area");
        for (int i = 0; i < 2; i++) {
                memset(img->hdr[i] + BIN_HDR_SIZE, 0, img->hdr_size - BIN_HDR_SIZE);
                memcpy(img->hdr[i] + BIN_HDR_SIZE, text, len);
                checksum(img->hdr[i], img->hdr_size);
                if (write_at(img->fd, img->hdr[i], img->hdr_size, i * img->hdr_size) < 0)
                        return fail("cannot write a header copy");
        }
        return 0;
}

static int write_json(struct image *img) {
        return write_json_text(img, json_object_to_json_string_ext(img->json, JSON_C_TO_STRING_PLAIN));
}

static struct json_object *get(struct json_object *o, const char *a, const char *b) {
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(o, a, &v) || !b)
                return v;
        return json_object_object_get_ex(v, b, &v) ? v : NULL;
}

static int set_string(struct json_object *o, const char *key, const char *value) {
        if (!o)
                return fail("the header lacks a member this case edits");
        json_object_object_add(o, key, json_object_new_string(value));
        return 0;
}

/* ---- the cases ---- */

/* One byte of copy i's JSON area changed (a space added before the final brace), checksum left stale. */
static int stale_checksum(struct image *img, int i) {
        uint8_t *json = img->hdr[i] + BIN_HDR_SIZE;
        size_t len = strlen((const char *) json);

        if (len < 2 || len + 1 >= img->hdr_size - BIN_HDR_SIZE)
                return fail("unexpected JSON area");
        json[len - 1] = ' ';
        json[len] = '}';
        return write_at(img->fd, img->hdr[i], img->hdr_size, i * img->hdr_size) < 0 ? fail("write failed") : 0;
}

static int case_csum_primary(struct image *img, struct image *donor) {
        return stale_checksum(img, 0);
}

static int case_csum_secondary(struct image *img, struct image *donor) {
        return stale_checksum(img, 1);
}

static int case_csum_both(struct image *img, struct image *donor) {
        return stale_checksum(img, 0) < 0 ? -1 : stale_checksum(img, 1);
}

/* Cut in the middle of the token: not JSON any more, checksums valid. */
static int case_json_malformed(struct image *img, struct image *donor) {
        const char *text = json_object_to_json_string_ext(img->json, JSON_C_TO_STRING_PLAIN);
        char *cut = strdup(text), *at = cut ? strstr(cut, "\"wrapped_key\"") : NULL;

        if (!at)
                return fail("no wrapped_key to cut at");
        *at = '\0';
        int r = write_json_text(img, cut);
        free(cut);
        return r;
}

/* Valid JSON of the wrong shape: "segments" an array. */
static int case_json_wrong_type(struct image *img, struct image *donor) {
        json_object_object_add(img->json, "segments", json_object_new_array());
        return write_json(img);
}

/* A second keyslot whose binary area is the first one's. */
static int case_overlap_keyslots(struct image *img, struct image *donor) {
        struct json_object *ks = get(img->json, "keyslots", NULL), *k0 = get(img->json, "keyslots", "0");
        struct json_object *copy = NULL;

        if (!ks || !k0 || json_object_deep_copy(k0, &copy, NULL) < 0)
                return fail("no keyslot 0 to copy (format with a recovery passphrase)");
        json_object_object_add(ks, "1", copy);
        return write_json(img);
}

/* The data segment starts inside the keyslot area. */
static int case_overlap_segment(struct image *img, struct image *donor) {
        return set_string(get(img->json, "segments", "0"), "offset", "32768") ?: write_json(img);
}

/* Offsets and sizes near 2^64, so that offset + size wraps around. */
static int case_overflow_segment(struct image *img, struct image *donor) {
        return set_string(get(img->json, "segments", "0"), "offset", "18446744073709547520") ?: write_json(img);
}

static int case_overflow_keyslot_area(struct image *img, struct image *donor) {
        struct json_object *area = get(get(img->json, "keyslots", "0"), "area", NULL);

        return set_string(area, "offset", "18446744073709547520") ?: set_string(area, "size", "8192") ?:
                write_json(img);
}

static int case_overflow_json_size(struct image *img, struct image *donor) {
        return set_string(get(img->json, "config", NULL), "json_size", "18446744073709551615") ?: write_json(img);
}

/* hdr_size in both binary headers: 2^64 - 4096 (checksums as they were). */
static int case_overflow_hdr_size(struct image *img, struct image *donor) {
        for (int i = 0; i < 2; i++) {
                put_be64(img->hdr[i] + OFF_HDR_SIZE, UINT64_MAX - 4095);
                if (write_at(img->fd, img->hdr[i], BIN_HDR_SIZE, i * img->hdr_size) < 0)
                        return fail("write failed");
        }
        return 0;
}

static struct json_object *kmscrypt_token(struct json_object *json, const char **ret_id) {
        struct json_object *tokens = get(json, "tokens", NULL), *type;

        json_object_object_foreach(tokens, id, tok)
                if (json_object_object_get_ex(tok, "type", &type) &&
                    strcmp(json_object_get_string(type), "kmscrypt") == 0) {
                        if (ret_id)
                                *ret_id = id;
                        return tok;
                }
        return NULL;
}

/* The kmscrypt token grown past 8 KiB by its wrapped key (still inside the 12 KiB JSON area). */
static int case_token_oversized(struct image *img, struct image *donor) {
        struct json_object *tok = kmscrypt_token(img->json, NULL);
        char pad[9001];

        memset(pad, 'A', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = '\0';
        return set_string(tok, "wrapped_key", pad) ?: write_json(img);
}

/* 33 tokens: the kmscrypt one moved to id 32, ids 0..31 small tokens of another type. */
static int case_tokens_33(struct image *img, struct image *donor) {
        struct json_object *tokens = get(img->json, "tokens", NULL), *tok;
        const char *id = NULL;
        char name[16];

        tok = kmscrypt_token(img->json, &id);
        if (!tok)
                return fail("no kmscrypt token");
        tok = json_object_get(tok);
        json_object_object_del(tokens, id);
        for (int i = 0; i < 32; i++) {
                struct json_object *t = json_object_new_object();
                json_object_object_add(t, "type", json_object_new_string("kc-filler"));
                json_object_object_add(t, "keyslots", json_object_new_array());
                snprintf(name, sizeof(name), "%d", i);
                json_object_object_add(tokens, name, t);
        }
        json_object_object_add(tokens, "32", tok);
        return write_json(img);
}

/* The donor volume's kmscrypt token in place of this volume's. */
static int case_token_transplant(struct image *img, struct image *donor) {
        struct json_object *tokens = get(img->json, "tokens", NULL), *theirs, *copy = NULL;
        const char *id = NULL;

        if (!donor)
                return fail("token-transplant needs a DONOR volume");
        if (!kmscrypt_token(img->json, &id) || !(theirs = kmscrypt_token(donor->json, NULL)) ||
            json_object_deep_copy(theirs, &copy, NULL) < 0)
                return fail("both volumes need a kmscrypt token");
        json_object_object_add(tokens, id, copy);
        return write_json(img);
}

static struct json_object *segment_copy(struct json_object *seg, const char *offset, const char *flag) {
        struct json_object *copy = NULL, *flags;

        if (json_object_deep_copy(seg, &copy, NULL) < 0)
                return NULL;
        json_object_object_add(copy, "offset", json_object_new_string(offset));
        if (flag) {
                flags = json_object_new_array();
                json_object_array_add(flags, json_object_new_string(flag));
                json_object_object_add(copy, "flags", flags);
        }
        return copy;
}

/*
 * A reencryption that never ran: the online-reencrypt-v2 requirement, a
 * "reencrypt" keyslot, the volume split in a done and a pending segment and
 * the two backup segments an interrupted `cryptsetup reencrypt` keeps, all
 * under the volume key's digest (no reencryption digest exists), so that
 * libcryptsetup loads it and reports a reencryption in progress.
 */
static int case_reencrypt_forged(struct image *img, struct image *donor) {
        struct json_object *config = get(img->json, "config", NULL), *ks = get(img->json, "keyslots", NULL);
        struct json_object *segs = get(img->json, "segments", NULL), *seg0 = get(segs, "0", NULL);
        struct json_object *dsegs = get(get(img->json, "digests", "0"), "segments", NULL);
        struct json_object *req, *mand, *k, *area, *dks;
        static const char *const names[] = { "1", "2", "3" };
        struct json_object *copies[3];

        if (!config || !ks || !seg0 || !dsegs)
                return fail("unexpected header");
        mand = json_object_new_array();
        json_object_array_add(mand, json_object_new_string("online-reencrypt-v2"));
        req = json_object_new_object();
        json_object_object_add(req, "mandatory", mand);
        json_object_object_add(config, "requirements", req);

        k = json_object_new_object();
        json_object_object_add(k, "type", json_object_new_string("reencrypt"));
        json_object_object_add(k, "key_size", json_object_new_int(1));
        json_object_object_add(k, "mode", json_object_new_string("reencrypt"));
        json_object_object_add(k, "direction", json_object_new_string("forward"));
        area = json_object_new_object();
        json_object_object_add(area, "type", json_object_new_string("none"));
        json_object_object_add(area, "offset", json_object_new_string("16744448"));
        json_object_object_add(area, "size", json_object_new_string("4096"));
        json_object_object_add(k, "area", area);
        json_object_object_add(ks, "7", k);
        /* The volume key's digest claims the reencrypt keyslot too: no reencryption digest exists. */
        dks = get(get(img->json, "digests", "0"), "keyslots", NULL);
        if (dks)
                json_object_array_add(dks, json_object_new_string("7"));

        /* 1 MiB done, the rest not yet, and the two backup segments an interrupted run keeps. */
        copies[0] = segment_copy(seg0, "17825792", NULL);
        copies[1] = segment_copy(seg0, "16777216", "backup-previous");
        copies[2] = segment_copy(seg0, "16777216", "backup-final");
        set_string(seg0, "size", "1048576");
        for (int i = 0; i < 3; i++) {
                if (!copies[i])
                        return fail("out of memory");
                json_object_object_add(segs, names[i], copies[i]);
                json_object_array_add(dsegs, json_object_new_string(names[i]));
        }
        return write_json(img);
}

static const struct hostile_case {
        const char *name;
        int (*make)(struct image *img, struct image *donor);
        const char *what;
} cases[] = {
        { "csum-primary",         case_csum_primary,          "primary header's checksum stale" },
        { "csum-secondary",       case_csum_secondary,        "secondary header's checksum stale" },
        { "csum-both",            case_csum_both,             "both checksums stale" },
        { "json-malformed",       case_json_malformed,        "JSON cut short, checksums valid" },
        { "json-wrong-type",      case_json_wrong_type,       "\"segments\" an array, checksums valid" },
        { "overlap-keyslots",     case_overlap_keyslots,      "two keyslots share one area" },
        { "overlap-segment",      case_overlap_segment,       "data segment inside the keyslot area" },
        { "overflow-segment",     case_overflow_segment,      "segment offset near 2^64" },
        { "overflow-keyslot-area", case_overflow_keyslot_area, "keyslot area offset + size wraps" },
        { "overflow-json-size",   case_overflow_json_size,    "config json_size 2^64 - 1" },
        { "overflow-hdr-size",    case_overflow_hdr_size,     "binary hdr_size near 2^64" },
        { "token-oversized",      case_token_oversized,       "kmscrypt token over 8 KiB" },
        { "tokens-33",            case_tokens_33,             "33 tokens, kmscrypt at id 32" },
        { "token-transplant",     case_token_transplant,      "kmscrypt token of another volume" },
        { "reencrypt-forged",     case_reencrypt_forged,      "forged online reencryption state" },
};

/*
 * kc-hostile verify DEVICE: both header copies carry a valid SHA-256
 * checksum and the same JSON area; what a "safely repaired" header must be.
 */
static int verify(const char *path) {
        struct image img = { .fd = -1 };
        uint8_t want[SHA256_DIGEST_LENGTH], *copy;
        int r = 0;

        if (image_open(path, &img) < 0)
                r = -1;
        for (int i = 0; r == 0 && i < 2; i++) {
                copy = malloc(img.hdr_size);
                if (!copy || read_at(img.fd, copy, img.hdr_size, i * img.hdr_size) < 0)
                        r = fail("cannot read a header copy");
                else {
                        memcpy(want, copy + OFF_CSUM, sizeof(want));
                        checksum(copy, img.hdr_size);
                        if (memcmp(want, copy + OFF_CSUM, sizeof(want)) != 0)
                                r = fail(i == 0 ? "primary checksum wrong" : "secondary checksum wrong");
                        else if (i == 1 && memcmp(copy + BIN_HDR_SIZE, img.hdr[0] + BIN_HDR_SIZE,
                                                  img.hdr_size - BIN_HDR_SIZE - 1) != 0)
                                r = fail("the JSON areas of the two copies differ");
                }
                free(copy);
        }
        if (img.fd >= 0)
                close(img.fd);
        free(img.hdr[0]);
        free(img.hdr[1]);
        json_object_put(img.json);
        return r;
}

static void image_close(struct image *img) {
        if (img->fd >= 0)
                close(img->fd);
        free(img->hdr[0]);
        free(img->hdr[1]);
        json_object_put(img->json);
}

int main(int argc, char **argv) {
        struct image img = { .fd = -1 }, donor = { .fd = -1 };
        int r = -1;

        if (argc == 2 && strcmp(argv[1], "list") == 0) {
                for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                        printf("%s\t%s\n", cases[i].name, cases[i].what);
                return 0;
        }
        if (argc == 3 && strcmp(argv[1], "verify") == 0)
                return verify(argv[2]) == 0 ? 0 : 1;
        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: kc-hostile list | verify DEVICE | CASE DEVICE [DONOR]\n");
                return 2;
        }
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                if (strcmp(cases[i].name, argv[1]) != 0)
                        continue;
                if (image_open(argv[2], &img) == 0 && (argc < 4 || image_open(argv[3], &donor) == 0))
                        r = cases[i].make(&img, argc == 4 ? &donor : NULL);
                if (r == 0 && fsync(img.fd) < 0)
                        r = fail("fsync failed");
                image_close(&img);
                image_close(&donor);
                return r == 0 ? 0 : 1;
        }
        fprintf(stderr, "kc-hostile: unknown case %s (see kc-hostile list)\n", argv[1]);
        return 2;
}
