/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/attach.h"
#include "agent/audit.h"
#include "agent/daemon/revoke.h"
#include "agent/luks.h"
#include "agent/token.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "kernel-keyring/keyring.h"
#include "lib/log.h"
#include "lib/secret.h"

/* An audit record for an action the agent took on its own; fail-closed is the caller's choice. */
static int audit_action(const struct kc_kms_config *cfg, const struct kc_caller *self, const char *operation,
                        const char *key_id, const struct kc_context *ctx, const char *volume, int result,
                        const char *detail) {
        _cleanup_audit_ struct kc_audit *a = NULL;
        _cleanup_free_ char *head = NULL;
        struct kc_audit_evidence evidence;
        struct kc_audit_record rec = {
                .operation = operation, .key_id = key_id, .context = ctx, .caller = self,
                .volume = volume, .result = result, .error = result < 0 ? strerror(-result) : NULL,
                .detail = detail,
        };
        int r;

        r = kc_kms_audit_head(cfg, &head);
        if (r < 0)
                return r;
        kc_kms_audit_evidence(cfg, &evidence);
        r = kc_audit_open(cfg->audit_log, head, &evidence, &a, NULL);
        if (r < 0)
                return r;
        return kc_audit_write(a, &rec);
}

/* The key stays where it is until the wipe: suspend first so that no I/O is mid-flight. */
static int suspend_and_wipe(const char *name, struct kc_err *err) {
        int r = kc_dm_suspend(name);

        if (r < 0)
                return kc_err_set(err, r, "cannot suspend %s: %s", name, strerror(-r));
        r = kc_dm_message(name, "key wipe");
        if (r < 0)
                return kc_err_set(err, r, "%s is suspended but its key could not be wiped: %s", name, strerror(-r));
        return 0;
}

#define RESUME_DETAIL "CMK enabled again: fresh unwrap, key set, resume"
#define RESUME_FOUND_DETAIL "CMK enabled again: fresh unwrap, key set; not resumed, as it was suspended " \
        "by another tool before the key was wiped"

/* What a check needs to know about a configured volume and its mapping. */
struct facts {
        char *path;                     /* owned: conf->device resolved */
        char luks_uuid[40];
        char dm_uuid[130];
        char provider[16];
        char key_id[256];
        struct kc_context *context;     /* owned */
        bool suspended;
        bool found_suspended;           /* suspended with its key by another tool before the agent wiped it */
};

static void facts_clear(struct facts *f) {
        kc_context_free(f->context);
        f->context = NULL;
        free(f->path);
        f->path = NULL;
}

/*
 * Whether mapping name reads from the block device at path: checked before
 * a key goes into it.  A copy of the volume (snapshot, clone: the same LUKS
 * UUID, hence the same dm UUID) may be attached beside it, and UUID= may
 * name either: its header and, once its data key was replaced, its key are
 * not this mapping's.  The table names the device whether its key was
 * wiped or not.
 */
static int reads_from(const char *name, const char *path, struct kc_err *err) {
        _cleanup_free_ char *target = NULL, *params = NULL;
        struct stat st;
        dev_t dev;
        int r;

        r = kc_dm_table(name, &target, &params);
        if (r < 0)
                return kc_err_set(err, r, "cannot read the table of %s: %s", name, strerror(-r));
        if (!streq(target, "crypt") || kc_crypt_table_device(params, &dev) < 0)
                return kc_err_set(err, -EPERM, "%s is not a dm-crypt mapping of a device", name);
        if (stat(path, &st) < 0) {
                r = negative_errno();
                return kc_err_set(err, r, "cannot stat %s: %s", path, strerror(-r));
        }
        if (st.st_rdev != dev)
                return kc_err_set(err, -EPERM, "mapping %s reads from %u:%u, not from %s", name, major(dev),
                                  minor(dev), path);
        return 0;
}

/*
 * From the volume's header (token) and the dm state of its mapping, which
 * must carry this volume's dm UUID.  Not from the mapping's table: once the
 * key is wiped, the table shows zeros where the keyring reference was.
 */
static int volume_facts(const struct kc_volume_conf *conf, struct facts *ret, struct kc_err *err) {
        _cleanup_free_ char *path = NULL, *dm_uuid = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        struct kc_luks_segment seg;
        struct kc_token tok = {};
        struct kc_dm_info info;
        int r;

        r = kc_dm_info(conf->name, &info);
        if (r < 0)
                return kc_err_set(err, r, "cannot query mapping %s: %s", conf->name, strerror(-r));
        if (!info.exists)
                return kc_err_set(err, -ENXIO, "no mapping named %s", conf->name);
        r = kc_resolve_device(conf->device, &path, err);
        if (r >= 0)
                r = kc_luks_open_read(path, conf->header, &l, err);
        if (r >= 0 && (r = kc_luks_segment(l, &seg)) < 0)
                kc_err_set(err, r, "cannot read the LUKS2 segment of %s", path);
        if (r >= 0 && (r = kc_luks_token_read(l, &tok, NULL, err)) == -ENOENT)
                kc_err_set(err, r, "%s has no kmscrypt token", path);
        if (r < 0)
                return r;
        r = kc_dm_uuid_luks2(seg.uuid, conf->name, &dm_uuid);
        if (r >= 0 && !streq(dm_uuid, info.uuid))
                r = kc_err_set(err, -EPERM, "mapping %s is not the mapping of %s (dm UUID %s)", conf->name, path,
                               info.uuid);
        if (r >= 0) {
                *ret = (struct facts) { .path = TAKE_PTR(path), .context = TAKE_PTR(tok.context),
                                        .suspended = info.suspended };
                kc_strscpy(ret->luks_uuid, sizeof(ret->luks_uuid), seg.uuid);
                kc_strscpy(ret->dm_uuid, sizeof(ret->dm_uuid), info.uuid);
                kc_strscpy(ret->provider, sizeof(ret->provider), tok.provider);
                kc_strscpy(ret->key_id, sizeof(ret->key_id), tok.key_id);
        }
        kc_token_clear(&tok);
        return r;
}

/*
 * The token as it is now, checked as an attach checks it (kc_attach_policy_breach):
 * a header that was rebound to another context, or an entry whose context or
 * kms= changed with a reload, gets no key.  1 and out filled in when so.  The
 * refusal is audited (a failed ResumeVolume) once for each reason, not at
 * every pass that finds it again: refused is the one on record already.
 * Only the last one: a reason that comes back after another (A, B, A) is
 * audited again, so that the latest refusal on record is the one that
 * holds.  It comes back only when someone changed the header or the entry
 * again, never at a pass of its own, so that costs one record an action.
 */
static int check_policy(struct kc_kms *kms, const struct kc_kms_request *req, const struct kc_volume_conf *conf,
                        const struct kc_token *tok, const char *path, const char *refused,
                        struct kc_revoke_outcome *out) {
        struct kc_attach_params policy = { .expect = conf->context, .providers = conf->kms };
        struct kc_err e = {};
        int r = kc_attach_policy_breach(tok, &policy, path, &e);

        if (r == 0)
                return 0;
        out->action = KC_REVOKE_REFUSED;
        snprintf(out->reason, sizeof(out->reason), "not resumed, %s stays suspended: %s", conf->name,
                 kc_err_msg(&e, r));
        out->audited = refused && streq(refused, out->reason);
        if (out->audited) {
                log_debug("%s: %s (on record already)", conf->name, out->reason);
                return 1;
        }
        r = kc_attach_audit_refusal(kms, req, tok, "ResumeVolume", path, &e);
        out->audited = r >= 0;
        if (r < 0)
                log_warning("%s: the audit record of the refused resume could not be written (tried again at "
                            "the next check): %s", conf->name, strerror(-r));
        return 1;
}

/*
 * The token held to the host's policy first, as an attach holds it (1 and
 * out filled in when it is refused); then a fresh unwrap under the token's
 * context, checked against the header, then handed to dm-crypt by
 * reference, and the mapping resumed, unless another tool had suspended it
 * before the agent wiped its key (found_suspended).  The ResumeVolume
 * record is written after the unwrap and before the key reaches dm-crypt:
 * if the audit log cannot take it, the volume stays suspended (fail
 * closed); a failure after that is audited as a second, failed
 * ResumeVolume.
 */
static int reload_key(struct kc_kms *kms, const struct kc_kms_config *cfg, const struct kc_caller *self,
                      const struct kc_volume_conf *conf, const struct facts *st, const char *refused,
                      struct kc_revoke_outcome *out, struct kc_err *err) {
        const char *detail = st->found_suspended ? RESUME_FOUND_DETAIL : RESUME_DETAIL;
        _cleanup_free_ char *desc = NULL;
        _cleanup_luks_ struct kc_luks *l = NULL;
        _cleanup_secret_ void *key = NULL;
        struct kc_kms_request req = { .caller = self };
        struct kc_luks_segment seg;
        struct kc_token tok = {};
        kc_key_serial_t serial = 0;
        bool audited = false;
        char msg[256];
        int r;

        /* The mapping's own device, and on it still the volume the facts were read from. */
        r = reads_from(conf->name, st->path, err);
        if (r >= 0)
                r = kc_luks_open_read(st->path, conf->header, &l, err);
        if (r >= 0)
                r = kc_luks_segment(l, &seg);
        if (r >= 0 && !streq(seg.uuid, st->luks_uuid))
                r = kc_err_set(err, -EPERM, "%s no longer holds the volume of mapping %s", st->path, conf->name);
        if (r >= 0)
                r = kc_luks_token_read(l, &tok, NULL, err);
        if (r < 0)
                goto out;
        req.volume = seg.uuid;
        r = check_policy(kms, &req, conf, &tok, st->path, refused, out);
        if (r == 0)
                r = kc_attach_unwrap_key(kms, &req, l, &tok, &seg, &key, err);
        if (r != 0)
                goto out;
        r = audit_action(cfg, self, "ResumeVolume", st->key_id, st->context, st->luks_uuid, 0, detail);
        if (r < 0) {
                kc_err_set(err, r, "cannot write the audit record of the resume, %s stays suspended: %s",
                           conf->name, strerror(-r));
                goto out;
        }
        audited = true;
        r = kc_keyring_volume_description(seg.uuid, &desc);
        if (r >= 0)
                r = kc_keyring_add_logon(desc, key, seg.key_size, &serial);
        if (r < 0) {
                kc_err_set(err, r, "cannot add the data key to the kernel keyring");
                goto out;
        }
        snprintf(msg, sizeof(msg), "key set :%zu:logon:%s", seg.key_size, desc);
        r = kc_dm_message(conf->name, msg);
        (void) kc_keyring_drop(serial);     /* dm-crypt holds its own copy now */
        if (r < 0) {
                kc_err_set(err, r, "cannot give %s its key back: %s", conf->name, strerror(-r));
                goto out;
        }
        /* Suspended by another tool before the agent wiped its key: resumed by that tool, not here. */
        r = st->found_suspended ? 0 : kc_dm_resume(conf->name);
        if (r < 0)
                kc_err_set(err, r, "cannot resume %s: %s", conf->name, strerror(-r));
out:
        if (audited && r < 0)
                (void) audit_action(cfg, self, "ResumeVolume", st->key_id, st->context, st->luks_uuid, r, detail);
        kc_token_clear(&tok);
        return r;
}

/* ---- the agent's own suspensions, remembered across restarts ---- */

#define MARK_DIR "suspended"

static int mark_path(const char *state_dir, const char *name, char **ret) {
        if (!state_dir || !kc_dm_name_is_valid(name))
                return -EINVAL;
        return asprintf(ret, "%s/" MARK_DIR "/%s", state_dir, name) < 0 ? -ENOMEM : 0;
}

static int fsync_path(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);

        return fd < 0 || fsync(fd) < 0 ? negative_errno() : 0;
}

/*
 * What a mark holds: the dm UUID of the mapping, then a space and FOUND_SUSPENDED when
 * the mapping was suspended already, with its key, when the agent wiped
 * the key (dmsetup suspend, a snapshot tool): the agent gives that key
 * back but leaves the resume to whoever suspended it.
 */
#define FOUND_SUSPENDED "found-suspended"

static int mark_text(const char *dm_uuid, bool found_suspended, char **ret) {
        return asprintf(ret, "%s%s", dm_uuid, found_suspended ? " " FOUND_SUSPENDED : "") < 0 ? -ENOMEM : 0;
}

/* The file: <state_dir>/suspended/<name>, holding the mark's text, written durably. */
static int remember_file(const char *state_dir, const char *name, const char *text) {
        _cleanup_free_ char *dir = NULL, *path = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -1;
        size_t n = strlen(text);
        int r;

        r = mark_path(state_dir, name, &path);
        if (r < 0)
                return r;
        if (asprintf(&dir, "%s/" MARK_DIR, state_dir) < 0 || asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        if ((mkdir(state_dir, 0700) < 0 && errno != EEXIST) || (mkdir(dir, 0700) < 0 && errno != EEXIST))
                return negative_errno();
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return negative_errno();
        if (write(fd, text, n) != (ssize_t) n || write(fd, "\n", 1) != 1 || fsync(fd) < 0 ||
            rename(tmp, path) < 0) {
                r = errno ? negative_errno() : -EIO;
                (void) unlink(tmp);
                return r;
        }
        return fsync_path(dir);
}

/*
 * The kernel's copy: a keyring mark (kernel-keyring/keyring.h), which lives
 * as long as the mapping can, needs no room on any file system, and is
 * named after the state folder too, so that agents of other state folders
 * (tests) never see each other's.
 */
static int kernel_mark_description(const char *state_dir, const char *name, char **ret) {
        if (!state_dir || !kc_dm_name_is_valid(name))
                return -EINVAL;
        return asprintf(ret, "kmscrypt:suspended:%s:%s", name, state_dir) < 0 ? -ENOMEM : 0;
}

static int remember_kernel(const char *state_dir, const char *name, const char *text) {
        _cleanup_free_ char *desc = NULL;
        int r = kernel_mark_description(state_dir, name, &desc);

        return r < 0 ? r : kc_keyring_mark_set(desc, text);
}

static int remember(const char *state_dir, const char *name, const char *dm_uuid, bool found_suspended) {
        _cleanup_free_ char *text = NULL;
        int file, kernel;

        if (mark_text(dm_uuid, found_suspended, &text) < 0)
                return -ENOMEM;
        file = remember_file(state_dir, name, text);
        kernel = remember_kernel(state_dir, name, text);

        if (file < 0 && kernel >= 0)
                log_debug("%s: its mark under %s/" MARK_DIR " could not be written (%s); the kernel keyring holds it",
                          name, state_dir, strerror(-file));
        return file >= 0 || kernel >= 0 ? 0 : file;
}

int kc_revoke_remember(const char *state_dir, const char *name, const char *dm_uuid) {
        return remember(state_dir, name, dm_uuid, false);
}

void kc_revoke_forget(const char *state_dir, const char *name) {
        _cleanup_free_ char *path = NULL, *desc = NULL;

        if (mark_path(state_dir, name, &path) >= 0 && unlink(path) < 0 && errno != ENOENT)
                log_debug("cannot remove %s: %m", path);
        if (kernel_mark_description(state_dir, name, &desc) >= 0)
                (void) kc_keyring_mark_clear(desc);
}

/* The dm UUID the file names, into uuid (size bytes): false when there is no file to read. */
static bool read_mark_file(const char *state_dir, const char *name, char *uuid, size_t size) {
        _cleanup_free_ char *path = NULL;
        _cleanup_fclose_ FILE *f = NULL;

        if (mark_path(state_dir, name, &path) < 0 || !(f = fopen(path, "re")))
                return false;
        if (!fgets(uuid, (int) size, f))
                uuid[0] = '\0';
        uuid[strcspn(uuid, "\n")] = '\0';
        return true;
}

/* The dm UUID the kernel's copy names: false when there is none. */
static bool read_mark_kernel(const char *state_dir, const char *name, char *uuid, size_t size) {
        _cleanup_free_ char *desc = NULL;

        return kernel_mark_description(state_dir, name, &desc) >= 0 && kc_keyring_mark_get(desc, uuid, size) >= 0;
}

/* Whether text (a mark's, cut to its dm UUID here) names dm_uuid; *found_suspended |= its flag. */
static bool mark_names(char *text, const char *dm_uuid, bool *found_suspended) {
        char *flag = strchr(text, ' ');

        if (flag)
                *flag = '\0';
        if (!streq(text, dm_uuid))
                return false;
        *found_suspended |= flag && streq(flag + 1, FOUND_SUSPENDED);
        return true;
}

/* Whether either mark names dm_uuid, and (unless NULL) whether one says the mapping was found suspended. */
static bool marked_as(const char *state_dir, const char *name, const char *dm_uuid, bool *ret_found_suspended) {
        char text[160];
        bool found = false, file, kernel;

        file = read_mark_file(state_dir, name, text, sizeof(text)) && mark_names(text, dm_uuid, &found);
        kernel = read_mark_kernel(state_dir, name, text, sizeof(text)) && mark_names(text, dm_uuid, &found);
        if (ret_found_suspended)
                *ret_found_suspended = found;
        return file || kernel;
}

bool kc_revoke_recall(const char *state_dir, const char *name) {
        struct kc_dm_info info;
        char uuid[160];

        if (!read_mark_file(state_dir, name, uuid, sizeof(uuid)) &&
            !read_mark_kernel(state_dir, name, uuid, sizeof(uuid)))
                return false;
        /* The kernel has the last word: the same mapping, still suspended, its key still wiped. */
        if (kc_dm_info(name, &info) >= 0 && info.exists && info.suspended &&
            marked_as(state_dir, name, info.uuid, NULL) && kc_dm_crypt_key_wiped(name) == 1)
                return true;
        log_debug("%s: forgetting a suspension the kernel no longer shows", name);
        kc_revoke_forget(state_dir, name);
        return false;
}

/*
 * The marks of a suspension the agent holds, written now where they are
 * not (they could not be when the agent suspended the volume): 0 once one
 * of them is there, else why not.
 */
static int keep_mark(const char *state_dir, const char *name, const char *dm_uuid, bool found_suspended) {
        _cleanup_free_ char *want = NULL;
        char text[160];

        if (mark_text(dm_uuid, found_suspended, &want) < 0)
                return -ENOMEM;
        if (read_mark_file(state_dir, name, text, sizeof(text)) && streq(text, want) &&
            read_mark_kernel(state_dir, name, text, sizeof(text)) && streq(text, want))
                return 0;
        return remember(state_dir, name, dm_uuid, found_suspended);
}

/*
 * A suspension the agent holds without its mark: said in the reason, which
 * kmscrypt status shows and the manager logs, for as long as it lasts.
 * The volume is not lost to the agent that runs, but to one started later,
 * which could not tell it from another tool's (revoke.h).
 */
static void say_mark_error(const char *state_dir, struct kc_revoke_outcome *out) {
        size_t n = strlen(out->reason);

        if (out->mark_error < 0)
                snprintf(out->reason + n, sizeof(out->reason) - n, "; its mark could be written neither under %s/"
                         MARK_DIR " (%s) nor in the kernel keyring: a restarted agent would take the suspension "
                         "for another tool's and not resume it; tried again at every check", state_dir,
                         strerror(-out->mark_error));
}

/* The reason of a suspension the agent holds; note (may be "") is what its suspend says. */
static void suspended_reason(const char *state_dir, const char *ref, const char *state, const char *note,
                             struct kc_revoke_outcome *out) {
        snprintf(out->reason, sizeof(out->reason), "CMK %s is %s; suspended, key wiped%s", ref, state, note);
        say_mark_error(state_dir, out);
}

#define SUSPEND_DETAIL "CMK disabled or pending deletion: dm suspend, key wipe (revoke=suspend)"
#define FOUND_NOTE "; it was suspended already, by another tool, which is left to resume it once its key is back"

/*
 * revoke=suspend under a revoked key (ref, in state).  Marked first: an
 * agent that restarts after the wipe still knows the suspension is its own
 * and resumes it.  A mark that cannot be written costs that resume, never
 * the suspension: revocation does not wait for a file system with room; it
 * is said (out->mark_error, the reason, the audit record) and tried again
 * at every check.  A wipe that reports failure yet took (dm-crypt's
 * crypt_wipe_key() can clear the key and still fail) is the suspension all
 * the same, and said at once as one: told a failure, the manager would show
 * the volume running until the next check.  One that left the key in
 * place fails, and the next check suspends and wipes again.
 */
static int suspend_volume(const struct kc_kms_config *cfg, const struct kc_caller *self, const char *state_dir,
                          const struct kc_volume_conf *conf, const struct facts *st, const char *ref,
                          const char *state, struct kc_revoke_outcome *out, struct kc_err *err) {
        char detail[KC_AUDIT_REASON_MAX], note[256] = "";
        struct kc_dm_info dmi;
        bool suspended;
        int r;

        out->mark_error = remember(state_dir, conf->name, st->dm_uuid, st->found_suspended);
        r = suspend_and_wipe(conf->name, err);
        if (r < 0) {
                suspended = kc_dm_info(conf->name, &dmi) >= 0 && dmi.suspended;
                if (!suspended)
                        kc_revoke_forget(state_dir, conf->name);
                else if (kc_dm_crypt_key_wiped(conf->name) == 1) {
                        snprintf(note, sizeof(note), "; its key wipe reported failure (%s), yet the key reads wiped",
                                 strerror(-r));
                        *err = (struct kc_err) {};
                        r = 0;
                }
        }
        if (st->found_suspended)
                snprintf(note + strlen(note), sizeof(note) - strlen(note), "%s", FOUND_NOTE);
        snprintf(detail, sizeof(detail), SUSPEND_DETAIL "%s", note);
        if (out->mark_error < 0)
                snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), "; the agent's mark of it "
                         "could be written neither in its state folder nor in the kernel keyring: %s",
                         strerror(-out->mark_error));
        (void) audit_action(cfg, self, "SuspendVolume", st->key_id, st->context, st->luks_uuid, r, detail);
        if (r < 0)
                return r;
        out->action = KC_REVOKE_SUSPENDED;
        suspended_reason(state_dir, ref, state, note, out);
        return 0;
}

int kc_revoke_check(struct kc_kms *kms, const struct kc_kms_config *cfg, const char *state_dir,
                    const struct kc_caller *self, const struct kc_volume_conf *conf, unsigned prior,
                    const char *refused, struct kc_key_lookups *keys, struct kc_revoke_outcome *ret,
                    struct kc_err *err) {
        bool suspended_by_us = prior & KC_REVOKE_PRIOR_SUSPENDED;
        struct kc_revoke_outcome out = {};
        struct kc_kms_request req = { .caller = self, .volume = conf->name };
        /* A lookup shared by the pass's checks is the pass's, not this volume's. */
        struct kc_kms_request pass = { .caller = self, .detail = KC_REVOKE_LOOKUP_DETAIL };
        struct kc_key_info info;
        _cleanup_free_ char *ref = NULL;
        _cleanup_(facts_clear) struct facts st = {};
        const char *state;
        int r;

        r = volume_facts(conf, &st, err);
        if (r < 0)
                return r;
        if (st.suspended && !suspended_by_us && kc_dm_crypt_key_wiped(conf->name) == 1) {
                /*
                 * The agent's own after all when its mark says so, as it
                 * would be to an agent started now, whatever kept prior
                 * from saying so.  Else by someone else (cryptsetup
                 * luksSuspend): whatever its CMK says, no key is left to
                 * wipe, and none is the agent's to give back.
                 */
                suspended_by_us = out.recalled = kc_revoke_recall(state_dir, conf->name);
                if (!suspended_by_us) {
                        out.action = KC_REVOKE_FOREIGN;
                        snprintf(out.reason, sizeof(out.reason), "%s", KC_REVOKE_FOREIGN_REASON);
                        *ret = out;
                        return 0;
                }
        }
        /*
         * Suspended, and its key in unless the agent's: with no mark of the
         * agent's, by another tool (dmsetup suspend, a snapshot), whose
         * resume the agent must not make for it; with one, by the agent
         * (a wipe that failed is tried again below), and the mark says
         * whether it found the mapping suspended so.
         */
        if (st.suspended && !marked_as(state_dir, conf->name, st.dm_uuid, &st.found_suspended) && !suspended_by_us)
                st.found_suspended = true;
        if (asprintf(&ref, "%s:%s", st.provider, st.key_id) < 0)
                return -ENOMEM;
        r = kc_kms_describe_key_in(kms, keys, keys ? &pass : &req, ref, &info, err);
        if (r < 0)
                return r;
        state = kc_key_state_to_string(info.state);
        /* Neither enabled nor withdrawn (kms.h): a KMS that cannot say, as when it cannot be reached. */
        if (kc_key_state_outage(info.state))
                return kc_err_set(err, -EAGAIN, "CMK %s is %s, which passes or is an outage of its key store, "
                                  "not a revocation: nothing done, checked again at the next pass", ref, state);

        if (info.state == KC_KEY_ENABLED) {
                if (suspended_by_us && st.suspended) {
                        r = reload_key(kms, cfg, self, conf, &st, refused, &out, err);
                        if (r < 0)
                                return r;
                        if (r > 0) {
                                /* Still suspended, and still the agent's to resume once it fits. */
                                out.mark_error = keep_mark(state_dir, conf->name, st.dm_uuid, st.found_suspended);
                                say_mark_error(state_dir, &out);
                                *ret = out;
                                return 0;
                        }
                        kc_revoke_forget(state_dir, conf->name);
                        out.action = KC_REVOKE_RESUMED;
                        snprintf(out.reason, sizeof(out.reason), "CMK %s is enabled again; %s", ref,
                                 st.found_suspended ? "key given back, left suspended for the tool that suspended it"
                                                    : "resumed");
                } else if (suspended_by_us) {
                        /* Resumed by someone else, or detached and attached anew: no suspension left to undo. */
                        log_debug("%s: runs again without this agent's resume", conf->name);
                        kc_revoke_forget(state_dir, conf->name);
                }
        } else if (st.suspended && suspended_by_us) {
                /* Whatever the policy says now (a reload may have made it keep): no key, no resume. */
                out.mark_error = keep_mark(state_dir, conf->name, st.dm_uuid, st.found_suspended);
                out.action = KC_REVOKE_STILL;
                suspended_reason(state_dir, ref, state, st.found_suspended ? FOUND_NOTE : "", &out);
        } else if (conf->revoke == KC_REVOKE_KEEP) {
                /* Nothing done to the volume, but a decision taken about it: on record, once. */
                out.audited = prior & KC_REVOKE_PRIOR_KEPT;
                if (!out.audited) {
                        char detail[128];

                        snprintf(detail, sizeof(detail), "CMK %s: left attached, new attaches fail (revoke=keep)",
                                 state);
                        r = audit_action(cfg, self, "KeepVolume", st.key_id, st.context, st.luks_uuid, 0, detail);
                        out.audited = r >= 0;
                        if (r < 0)
                                log_warning("%s: the audit record of keeping it attached could not be written "
                                            "(tried again at the next check): %s", conf->name, strerror(-r));
                }
                out.action = KC_REVOKE_KEPT;
                snprintf(out.reason, sizeof(out.reason), "CMK %s is %s; kept running (revoke=keep), new attaches fail",
                         ref, state);
        } else {
                r = suspend_volume(cfg, self, state_dir, conf, &st, ref, state, &out, err);
                if (r < 0)
                        return r;
        }
        *ret = out;
        return 0;
}
