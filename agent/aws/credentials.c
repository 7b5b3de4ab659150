/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/aws/credentials.h"
#include "agent/aws/response.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/secret.h"

#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_TOKEN_TTL "21600"
#define LOCAL_TIMEOUT_MS 1000L      /* metadata endpoints are on the host or link: answer fast or not at all */
#define MAX_FILE (64 * 1024)

void kc_aws_credentials_clear(struct kc_aws_credentials *c) {
        if (!c)
                return;
        kc_secret_free(c->access_key_id);
        kc_secret_free(c->secret_access_key);
        kc_secret_free(c->session_token);
        *c = (struct kc_aws_credentials) {};
}

bool kc_aws_credentials_stale(const struct kc_aws_credentials *c, time_t now) {
        return !c->access_key_id || (c->expiration > 0 && now + KC_AWS_CREDENTIALS_REFRESH_S >= c->expiration);
}

static bool env_true(const char *name) {
        const char *v = getenv(name);
        return v && (strcasecmp(v, "true") == 0 || streq(v, "1"));
}

static const char *env_nonempty(const char *name) {
        const char *v = getenv(name);
        return v && v[0] ? v : NULL;
}

/* ---- shared files --------------------------------------------------------------------------- */

/* The whole file in secret memory (it holds secret keys), NUL-terminated. */
static int read_secret_file(const char *path, char **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                return negative_errno();
        return kc_read_full_fd(fd, MAX_FILE, KC_READ_SECRET, ret, NULL);
}

static char *strip(char *s) {
        char *e;

        while (isspace((unsigned char) *s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char) e[-1]))
                *--e = '\0';
        return s;
}

int kc_aws_ini_parse(char *text, const char *section, const char *key, char **ret) {
        bool in_section = false;
        char *save = NULL;

        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *l = strip(line), *eq;

                if (l[0] == '#' || l[0] == ';' || !l[0])
                        continue;
                if (l[0] == '[') {
                        char *end = strrchr(l, ']');
                        if (!end)
                                continue;
                        *end = '\0';
                        /* "[ profile  x ]": compare with inner spaces collapsed to one. */
                        l = strip(l + 1);
                        if (strncmp(l, "profile", 7) == 0 && isspace((unsigned char) l[7])) {
                                char *name = strip(l + 8);
                                in_section = strncmp(section, "profile ", 8) == 0 && streq(section + 8, name);
                        } else
                                in_section = streq(l, section);
                        if (in_section && !key)
                                return 0;
                        continue;
                }
                eq = strchr(l, '=');
                if (!in_section || !eq)
                        continue;
                *eq = '\0';
                if (!streq(strip(l), key))
                        continue;
                *ret = kc_secret_strdup(strip(eq + 1));
                return *ret ? 0 : -ENOMEM;
        }
        return -ENOENT;
}

/* kc_aws_ini_parse() of the file at path, read into secret memory (it holds secret keys). */
static int ini_find(const char *path, const char *section, const char *key, char **ret) {
        _cleanup_secret_ char *text = NULL;
        int r = read_secret_file(path, &text);

        if (r < 0)
                return r;
        return kc_aws_ini_parse(text, section, key, ret);
}

int kc_aws_ini_lookup(const char *path, const char *section, const char *key, char **ret) {
        return key ? ini_find(path, section, key, ret) : -EINVAL;
}

static int home_file(const char *env, const char *name, char **ret) {
        const char *v = env_nonempty(env), *home = env_nonempty("HOME");

        if (v)
                *ret = strdup(v);
        else if (home) {
                if (asprintf(ret, "%s/.aws/%s", home, name) < 0)
                        *ret = NULL;
        } else
                return -ENOENT;
        return *ret ? 0 : -ENOMEM;
}

static const char *profile_name(void) {
        return env_nonempty("AWS_PROFILE") ?: "default";
}

/* The config file names profiles "[profile x]", except "[default]". */
static int config_lookup(const char *key, char **ret) {
        _cleanup_free_ char *path = NULL, *section = NULL;
        const char *p = profile_name();
        int r = home_file("AWS_CONFIG_FILE", "config", &path);

        if (r < 0)
                return r;
        if (asprintf(&section, "profile %s", p) < 0)
                return -ENOMEM;
        r = kc_aws_ini_lookup(path, section, key, ret);
        if (r == -ENOENT && streq(p, "default"))
                r = kc_aws_ini_lookup(path, "default", key, ret);
        return r;
}

int kc_aws_default_region(char **ret) {
        const char *v = env_nonempty("AWS_REGION") ?: env_nonempty("AWS_DEFAULT_REGION");
        _cleanup_secret_ char *s = NULL;
        int r;

        if (v) {
                *ret = strdup(v);
                return *ret ? 0 : -ENOMEM;
        }
        r = config_lookup("region", &s);
        if (r < 0)
                return r;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* ---- sources -------------------------------------------------------------------------------- */

static int from_env(struct kc_http *h, struct kc_aws_credentials *c, struct kc_err *err) {
        const char *id = env_nonempty("AWS_ACCESS_KEY_ID"), *secret = env_nonempty("AWS_SECRET_ACCESS_KEY");
        const char *token = env_nonempty("AWS_SESSION_TOKEN");

        if (!id && !secret)
                return -ENOENT;
        if (!id || !secret)
                return kc_err_set(err, -EINVAL, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together");
        c->access_key_id = kc_secret_strdup(id);
        c->secret_access_key = kc_secret_strdup(secret);
        c->session_token = token ? kc_secret_strdup(token) : NULL;
        if (!c->access_key_id || !c->secret_access_key || (token && !c->session_token))
                return -ENOMEM;
        return 0;
}

static int from_file(const char *path, const char *section, struct kc_aws_credentials *c, struct kc_err *err) {
        int r = kc_aws_ini_lookup(path, section, "aws_access_key_id", &c->access_key_id);

        if (r < 0)
                return r;
        r = kc_aws_ini_lookup(path, section, "aws_secret_access_key", &c->secret_access_key);
        if (r == -ENOENT)
                return kc_err_set(err, -EINVAL, "%s: [%s] has aws_access_key_id but no aws_secret_access_key",
                                  path, section);
        if (r < 0)
                return r;
        r = kc_aws_ini_lookup(path, section, "aws_session_token", &c->session_token);
        return r == -ENOENT ? 0 : r;
}

/*
 * A profile named in AWS_PROFILE that neither file has is a mistake to
 * report, as the SDKs do (ProfileNotFound): going on down the chain would
 * sign with the instance's or container's role instead, another identity
 * than the one configured.  One that is there without keys (a region only)
 * lets the chain go on, as in the SDKs.
 */
static bool profile_missing(const char *creds, const char *config, const char *config_section) {
        const char *p = env_nonempty("AWS_PROFILE");

        if (!p || streq(p, "default"))
                return false;
        return !(creds && ini_find(creds, p, NULL, NULL) == 0) &&
               !(config && config_section && ini_find(config, config_section, NULL, NULL) == 0);
}

static int from_shared_files(struct kc_http *h, struct kc_aws_credentials *c, struct kc_err *err) {
        _cleanup_free_ char *creds = NULL, *config = NULL, *section = NULL;
        const char *p = profile_name();
        int r = -ENOENT;

        if (home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", &creds) >= 0)
                r = from_file(creds, p, c, err);
        if (r == -ENOENT && home_file("AWS_CONFIG_FILE", "config", &config) >= 0) {
                if (asprintf(&section, "profile %s", p) < 0)
                        return -ENOMEM;
                r = from_file(config, section, c, err);
                if (r == -ENOENT && streq(p, "default"))
                        r = from_file(config, "default", c, err);
        }
        if (r == -ENOENT && profile_missing(creds, config, section))
                return kc_err_set(err, -ENOKEY, "profile \"%.64s\" (AWS_PROFILE) is in neither %.100s nor %.100s",
                                  p, creds ?: "a credentials file", config ?: "a config file");
        return r;
}

/* Plain http is what the container agents speak; allow it only to their link-local or loopback hosts. */
static bool container_host_ok(const char *url) {
        static const char *const hosts[] = {
                "http://169.254.170.2/", "http://169.254.170.23/", "http://[fd00:ec2::23]/",
        };

        if (kc_http_url_is_https(url) || kc_http_url_is_loopback(url))
                return true;
        for (size_t i = 0; i < ARRAY_SIZE(hosts); i++)
                if (strncmp(url, hosts[i], strlen(hosts[i])) == 0)
                        return true;
        return false;
}

static int from_container(struct kc_http *h, struct kc_aws_credentials *c, struct kc_err *err) {
        const char *rel = env_nonempty("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        const char *full = env_nonempty("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        const char *token_file = env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        const char *token = env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        _cleanup_free_ char *url = NULL;
        _cleanup_secret_ char *file_token = NULL, *auth = NULL;
        const char *headers[2] = {};
        struct kc_http_response resp = {};
        int r;

        if (!rel && !full)
                return -ENOENT;
        if (rel ? asprintf(&url, "http://169.254.170.2%s", rel) < 0 : !(url = strdup(full)))
                return -ENOMEM;
        if (!container_host_ok(url))
                return kc_err_set(err, -EPERM, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https or a loopback/"
                                  "container-agent address");
        if (token_file) {
                r = read_secret_file(token_file, &file_token);
                if (r < 0)
                        return kc_err_set(err, r, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s", token_file);
                token = strip(file_token);
        }
        if (token) {
                size_t n = strlen("Authorization: ") + strlen(token) + 1;
                auth = kc_secret_alloc(n);
                if (!auth)
                        return -ENOMEM;
                snprintf(auth, n, "Authorization: %s", token);
                headers[0] = auth;
        }
        r = kc_http_perform(h, &(struct kc_http_request) {
                .method = "GET", .url = url, .headers = headers,
                .connect_timeout_ms = LOCAL_TIMEOUT_MS, .timeout_ms = 2 * LOCAL_TIMEOUT_MS,
        }, &resp, err);
        if (r >= 0)
                r = kc_aws_response_credentials("container", resp.status, resp.body, resp.body_len, c, err);
        kc_http_response_clear(&resp);
        return r;
}

static int imds_get(struct kc_http *h, const char *url, const char *token_header, struct kc_http_response *resp,
                    struct kc_err *err) {
        const char *headers[] = { token_header, NULL };

        return kc_http_perform(h, &(struct kc_http_request) {
                .method = "GET", .url = url, .headers = headers,
                .connect_timeout_ms = LOCAL_TIMEOUT_MS, .timeout_ms = 2 * LOCAL_TIMEOUT_MS,
        }, resp, err);
}

/* IMDSv2: a session token first (PUT), then every GET carries it as this header. */
static int imds_token_header(struct kc_http *h, const char *base, size_t blen, char **ret, struct kc_err *err) {
        const char *ttl_header[] = { "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL, NULL };
        _cleanup_(kc_http_response_clear) struct kc_http_response resp = {};
        _cleanup_free_ char *url = NULL;
        _cleanup_secret_ char *token = NULL, *header = NULL;
        size_t n;
        int r;

        if (asprintf(&url, "%.*s/latest/api/token", (int) blen, base) < 0)
                return -ENOMEM;
        r = kc_http_perform(h, &(struct kc_http_request) {
                .method = "PUT", .url = url, .headers = ttl_header,
                .connect_timeout_ms = LOCAL_TIMEOUT_MS, .timeout_ms = 2 * LOCAL_TIMEOUT_MS,
        }, &resp, err);
        if (r >= 0)
                r = kc_aws_response_imds_token(resp.status, resp.body, resp.body_len, &token, err);
        if (r < 0)
                return r;
        n = strlen("X-aws-ec2-metadata-token: ") + strlen(token) + 1;
        header = kc_secret_alloc(n);
        if (!header)
                return -ENOMEM;
        snprintf(header, n, "X-aws-ec2-metadata-token: %s", token);
        *ret = TAKE_PTR(header);
        return 0;
}

static int from_imds(struct kc_http *h, struct kc_aws_credentials *c, struct kc_err *err) {
        const char *base = env_nonempty("AWS_EC2_METADATA_SERVICE_ENDPOINT") ?: IMDS_DEFAULT;
        _cleanup_(kc_http_response_clear) struct kc_http_response list = {}, doc = {};
        _cleanup_free_ char *url = NULL, *role = NULL, *role_url = NULL;
        _cleanup_secret_ char *token_header = NULL;
        size_t blen = strlen(base);
        int r;

        if (env_true("AWS_EC2_METADATA_DISABLED"))
                return -ENOENT;
        while (blen > 0 && base[blen - 1] == '/')
                blen--;
        r = imds_token_header(h, base, blen, &token_header, err);
        if (r < 0)
                return r;
        if (asprintf(&url, "%.*s/latest/meta-data/iam/security-credentials/", (int) blen, base) < 0)
                return -ENOMEM;
        r = imds_get(h, url, token_header, &list, err);
        if (r >= 0)
                r = kc_aws_response_imds_role(list.status, list.body, list.body_len, &role, err);
        if (r < 0)
                return r;
        if (asprintf(&role_url, "%s%s", url, role) < 0)
                return -ENOMEM;
        r = imds_get(h, role_url, token_header, &doc, err);
        if (r >= 0)
                r = kc_aws_response_credentials("instance metadata", doc.status, doc.body, doc.body_len, c, err);
        return r;
}

static const struct source {
        const char *name;
        int (*load)(struct kc_http *h, struct kc_aws_credentials *c, struct kc_err *err);
} sources[] = {
        { "environment", from_env },
        { "shared-file", from_shared_files },
        { "container", from_container },
        { "imds", from_imds },
};

int kc_aws_credentials_load(struct kc_http *h, struct kc_aws_credentials *ret, struct kc_err *err) {
        for (size_t i = 0; i < ARRAY_SIZE(sources); i++) {
                struct kc_aws_credentials c = {};
                struct kc_err e = {};
                int r = sources[i].load(h, &c, &e);

                if (r == -ENOENT && !e.error) {
                        kc_aws_credentials_clear(&c);
                        continue;
                }
                if (r < 0) {
                        kc_aws_credentials_clear(&c);
                        /* IMDS unreachable is the normal state off EC2: report it as "no credentials". */
                        if (sources[i].load == from_imds && (r == -ETIMEDOUT || r == -ECONNREFUSED ||
                                                              r == -EHOSTUNREACH || r == -ENOENT))
                                break;
                        return kc_err_set(err, r, "AWS credentials (%s): %s", sources[i].name, kc_err_msg(&e, r));
                }
                c.source = sources[i].name;
                log_debug("AWS credentials from %s%s", c.source, c.expiration ? " (temporary)" : "");
                *ret = c;
                return 0;
        }
        return kc_err_set(err, -ENOKEY, "no AWS credentials: none in the environment, the shared files "
                          "(profile %s), the container endpoint or instance metadata", profile_name());
}

/*
 * The refresh window is advice, the expiry is not: a metadata or container
 * endpoint that blinks during the last minutes of a set must not fail the
 * calls those credentials can still sign (the SDKs' advisory refresh).
 * Expired ones are given up, and so are ones KMS said were expired: the
 * caller clears those before asking.
 */
int kc_aws_credentials_refresh(struct kc_http *h, struct kc_aws_credentials *c, time_t now, struct kc_err *err) {
        struct kc_aws_credentials fresh = {};
        struct kc_err e = {};
        int r;

        if (!kc_aws_credentials_stale(c, now))
                return 0;
        r = kc_aws_credentials_load(h, &fresh, &e);
        if (r < 0 && c->access_key_id && now < c->expiration) {
                log_debug("AWS credentials from %s kept for their last %lld s: %s", c->source ?: "?",
                          (long long) (c->expiration - now), kc_err_msg(&e, r));
                return 0;
        }
        if (r < 0)
                return kc_err_set(err, r, "%s", kc_err_msg(&e, r));
        kc_aws_credentials_clear(c);
        *c = fresh;
        return 0;
}
