/*
 * oauth.c: Kommo OAuth 2.0 token renewal, as Kommo documents it
 * (docs/providers.md, "Real-world behaviour"):
 *
 *   POST <base>/oauth2/access_token
 *   {"client_id","client_secret","grant_type":"refresh_token",
 *    "refresh_token","redirect_uri"}
 *   -> 200 {"token_type":"Bearer","expires_in","server_time",
 *           "access_token","refresh_token"}
 *
 * Every refresh returns a new refresh token and the old one is refused
 * from then on (the harsher reading: Kommo describes refresh tokens as
 * single-use). Access tokens expire after kommo_token_ttl; the account's
 * long-lived token (credentials.token) keeps working.
 */
#include "sim.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_time.h"
#include "eb_util.h"

#define NACCESS                                                                \
        (sizeof(((struct sim_account *)0)->access) /                           \
         sizeof(((struct sim_account *)0)->access[0]))

void sim_oauth_client(const struct sim_account *a, char *id, size_t idsz,
                      char *secret, size_t secretsz, char *redirect,
                      size_t redirectsz)
{
        snprintf(id, idsz, "kommo-client-%s", a->name);
        snprintf(secret, secretsz, "kommo-client-secret-%s", a->name);
        snprintf(redirect, redirectsz, "https://evbridge.example/oauth/%s",
                 a->name);
}

/* A new token "<prefix><account>-<gen>-<hash>": unique, unguessable
 * enough for tests, deterministic for a seed. */
static char *new_token(struct sim_account *a, const char *prefix)
{
        char label[96];
        uint64_t h;

        snprintf(label, sizeof(label), "oauth:%s:%s", prefix, a->name);
        h = sim_hash3(a->sim->seed, label, a->oauth_gen);
        return eb_xasprintf("%s%s-%llu-%016llx", prefix, a->name,
                            (unsigned long long)a->oauth_gen,
                            (unsigned long long)h);
}

const char *sim_oauth_refresh_token(struct sim_account *a)
{
        if (!a->refresh_token) {
                a->refresh_token = new_token(a, "kommo-refresh-");
                eb_log_add_secret(a->refresh_token);
        }
        return a->refresh_token;
}

void sim_oauth_revoke(struct sim_account *a)
{
        size_t i;

        for (i = 0; i < NACCESS; i++) {
                free(a->access[i].token);
                a->access[i].token = NULL;
                a->access[i].expires_ms = 0;
        }
}

const char *sim_oauth_reauthorize(struct sim_account *a)
{
        /* The account's owner authorized the integration again: a new
         * refresh token, every earlier one and every access token void. */
        sim_oauth_revoke(a);
        a->oauth_gen++;
        free(a->refresh_token);
        a->refresh_token = new_token(a, "kommo-refresh-");
        eb_log_add_secret(a->refresh_token);
        return a->refresh_token;
}

int sim_oauth_access_ok(struct sim_account *a, const char *token, size_t len,
                        int64_t now_ms)
{
        size_t i;

        for (i = 0; i < NACCESS; i++) {
                const struct sim_access *x = &a->access[i];
                if (x->token && now_ms < x->expires_ms &&
                    eb_ct_equal(token, len, x->token, strlen(x->token)))
                        return 1;
        }
        return 0;
}

static int str_is(const json_t *o, const char *k, const char *want)
{
        const char *v = json_string_value(json_object_get(o, k));

        return v && want && eb_ct_equal(v, strlen(v), want, strlen(want));
}

void sim_oauth_handle(struct sim_req *sr, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        struct evbuffer *in = evhttp_request_get_input_buffer(sr->req);
        size_t n = evbuffer_get_length(in);
        char id[128], secret[128], redirect[160];
        json_t *body = NULL, *out;
        char *acc, *ref, *text;
        size_t i, slot = 0;

        sim_oauth_client(a, id, sizeof(id), secret, sizeof(secret), redirect,
                         sizeof(redirect));
        if (n && n < 65536)
                body = json_loadb((const char *)evbuffer_pullup(in, (ssize_t)n),
                                  n, 0, NULL);
        if (!json_is_object(body)) {
                sim_req_problem(sr, 400, "The request body must be JSON.",
                                NULL);
                goto out;
        }
        if (!str_is(body, "grant_type", "refresh_token")) {
                sim_req_problem(sr, 400,
                                "Unsupported grant_type (the simulator "
                                "renews tokens only: refresh_token).",
                                NULL);
                goto out;
        }
        if (!str_is(body, "client_id", id) ||
            !str_is(body, "client_secret", secret) ||
            !str_is(body, "redirect_uri", redirect)) {
                a->refresh_refused++;
                sim_req_problem(sr, 401, "Client authentication failed.",
                                "\"hint\":\"invalid client\"");
                goto out;
        }
        if (!str_is(body, "refresh_token", sim_oauth_refresh_token(a))) {
                /* spent (rotated away) or never issued */
                a->refresh_refused++;
                sim_req_problem(sr, 400, "Token has been revoked.",
                                "\"hint\":\"Token has been revoked\"");
                goto out;
        }
        a->oauth_gen++;
        /* never logged by the simulator, so not registered with the
         * redactor (which would grow with every refresh) */
        acc = new_token(a, "kommo-access-");
        ref = new_token(a, "kommo-refresh-");
        for (i = 1; i < NACCESS; i++)
                if (!a->access[i].token ||
                    a->access[i].expires_ms < a->access[slot].expires_ms)
                        slot = i;
        if (a->access[0].token && a->access[slot].token &&
            a->access[0].expires_ms < a->access[slot].expires_ms)
                slot = 0;
        free(a->access[slot].token);
        a->access[slot].token = acc;
        a->access[slot].expires_ms = now_ms + a->set.kommo_token_ttl_ms;
        free(a->refresh_token);
        a->refresh_token = ref;
        a->refreshes++;
        out = json_pack("{s:s,s:I,s:I,s:s,s:s}", "token_type", "Bearer",
                        "expires_in",
                        (json_int_t)(a->set.kommo_token_ttl_ms / 1000),
                        "server_time", (json_int_t)(now_ms / 1000),
                        "access_token", acc, "refresh_token", ref);
        text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        json_decref(out);
        if (text) {
                evbuffer_add(sr->body, text, strlen(text));
                free(text);
        }
        sim_req_status(sr, 200, "application/json");
out:
        json_decref(body);
}

void sim_oauth_free(struct sim_account *a)
{
        size_t i;

        for (i = 0; i < NACCESS; i++) {
                free(a->access[i].token);
                a->access[i].token = NULL;
        }
        free(a->refresh_token);
        a->refresh_token = NULL;
}
