/*
 * server.c: the evhttp front end. Routing, authentication, rate limits,
 * fault injection and the held-request machinery (latency, slow responses,
 * connection resets).
 *
 * Order of checks for an API request, so that each signal is testable on
 * its own: route -> (Close: RateLimit header) -> account down -> rate limit
 * / Kommo ban -> authentication -> fault draw -> handler -> fault transform
 * (truncate, corrupt, html) -> send now or after a delay.
 *
 * A response is "served" (ground truth) only when it is sent complete and
 * valid; truncated, malformed, reset and error responses serve nothing.
 *
 * Held requests: evhttp keeps an unanswered request alive even if its
 * client goes away (the request is detached and freed by the reply call),
 * so a timer may answer it later. Connection resets are done from a timer
 * too, never inside evhttp's own callback, by setting SO_LINGER 0 and
 * freeing the connection, which sends RST.
 */
#include "sim.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "eb_time.h"
#include "eb_util.h"

/* ---- sim_req helpers -------------------------------------------------------
 */

static struct sim_req *req_new(struct sim *sim, struct sim_account *a,
                               struct evhttp_request *req)
{
        struct sim_req *sr = eb_xcalloc(1, sizeof(*sr));

        sr->sim = sim;
        sr->acct = a;
        sr->req = req;
        sr->status = 500;
        sr->body = evbuffer_new();
        if (a) {
                a->st.requests++;
                a->st.cur_conc++;
                if (a->st.cur_conc > 1)
                        a->st.overlaps++;
                if (a->st.cur_conc > a->st.max_conc) {
                        a->st.max_conc = a->st.cur_conc;
                        a->st.max_conc_at_ms = eb_now_ms();
                }
        }
        return sr;
}

static void req_free(struct sim_req *sr)
{
        if (sr->acct)
                sr->acct->st.cur_conc--;
        if (sr->timer)
                event_free(sr->timer);
        evbuffer_free(sr->body);
        free(sr->served);
        free(sr);
}

void sim_req_served(struct sim_req *sr, struct sim_version *v)
{
        if (sr->nserved == sr->capserved) {
                sr->capserved = sr->capserved ? sr->capserved * 2 : 64;
                sr->served = eb_xrealloc(sr->served,
                                         sr->capserved * sizeof(*sr->served));
        }
        sr->served[sr->nserved++] = v;
}

void sim_req_status(struct sim_req *sr, int status, const char *ctype)
{
        sr->status = status;
        sr->ctype = ctype;
}

void sim_req_header(struct sim_req *sr, const char *k, const char *v)
{
        evhttp_add_header(evhttp_request_get_output_headers(sr->req), k, v);
}

/* A request-unique id that does not consume the fault stream. */
static uint64_t trace_id(const struct sim_req *sr)
{
        return sim_hash3(sr->sim->seed, sr->acct->name, sr->acct->st.requests);
}

static const char *status_title(int status)
{
        switch (status) {
        case 400:
                return "Bad Request";
        case 401:
                return "Unauthorized";
        case 402:
                return "Payment Required";
        case 403:
                return "Forbidden";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 422:
                return "Unprocessable Entity";
        case 429:
                return "Too Many Requests";
        case 500:
                return "Internal Server Error";
        case 502:
                return "Bad Gateway";
        case 503:
                return "Service Unavailable";
        case 504:
                return "Gateway Timeout";
        default:
                return "Error";
        }
}

void sim_req_problem(struct sim_req *sr, int status, const char *detail,
                     const char *extra_json)
{
        struct evbuffer *b = sr->body;

        evbuffer_drain(b, evbuffer_get_length(b));
        evbuffer_add(b, "{\"title\":", 9);
        sim_json_str(b, status_title(status));
        if (sr->acct && sr->acct->prov == SIM_KOTA) {
                evbuffer_add_printf(b,
                                    ",\"type\":\"https://docs.kota.io/"
                                    "api-reference/errors\",\"status\":%d",
                                    status);
        } else {
                evbuffer_add_printf(b,
                                    ",\"type\":\"https://httpstatus.es/%d\","
                                    "\"status\":%d",
                                    status, status);
        }
        evbuffer_add(b, ",\"detail\":", 10);
        sim_json_str(b, detail);
        if (sr->acct && sr->acct->prov == SIM_KOTA) {
                evbuffer_add(b, ",\"instance\":", 12);
                sim_json_str(b,
                             evhttp_uri_get_path(
                                     evhttp_request_get_evhttp_uri(sr->req)));
                evbuffer_add_printf(b, ",\"trace_id\":\"%016llx\"",
                                    (unsigned long long)trace_id(sr));
        }
        if (extra_json && *extra_json) {
                evbuffer_add(b, ",", 1);
                evbuffer_add(b, extra_json, strlen(extra_json));
        }
        evbuffer_add(b, "}", 1);
        sr->nserved = 0;
        sim_req_status(sr, status, "application/problem+json");
}

void sim_req_close_error(struct sim_req *sr, int status, const char *msg)
{
        struct evbuffer *b = sr->body;

        evbuffer_drain(b, evbuffer_get_length(b));
        evbuffer_add(b, "{\"error\":", 9);
        sim_json_str(b, msg);
        evbuffer_add(b, ",\"errors\":[],\"field-errors\":{}}", 31);
        sr->nserved = 0;
        sim_req_status(sr, status, "application/json");
}

const char *sim_query_get(const struct evkeyvalq *q, const char *key)
{
        return evhttp_find_header(q, key);
}

static int hexv(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decode %XX and '+' in place; control characters are refused. */
static int form_decode(char *s)
{
        char *o = s;

        for (; *s; s++) {
                int c = (unsigned char)*s;

                if (c == '+') {
                        c = ' ';
                } else if (c == '%') {
                        if (hexv(s[1]) < 0 || hexv(s[2]) < 0)
                                return -1;
                        c = hexv(s[1]) * 16 + hexv(s[2]);
                        s += 2;
                }
                if (c < 0x20 || c == 0x7f)
                        return -1;
                *o++ = (char)c;
        }
        *o = '\0';
        return 0;
}

int sim_query_parse(const char *rawq, struct evkeyvalq *q)
{
        char *copy, *save = NULL, *tok;
        int rc = 0;

        TAILQ_INIT(q);
        if (!rawq)
                return 0;
        copy = eb_xstrdup(rawq);
        for (tok = strtok_r(copy, "&", &save); tok && rc == 0;
             tok = strtok_r(NULL, "&", &save)) {
                char *eq = strchr(tok, '=');
                char *val = tok + strlen(tok); /* "" inside the copy */

                if (eq) {
                        *eq = '\0';
                        val = eq + 1;
                }
                if (!*tok || form_decode(tok) < 0 || form_decode(val) < 0 ||
                    evhttp_add_header(q, tok, val) < 0)
                        rc = -1;
        }
        free(copy);
        if (rc < 0)
                evhttp_clear_headers(q);
        return rc;
}

/* Provider-shaped error of @p status (used by faults and "down"). */
static void provider_error(struct sim_req *sr, int status, const char *msg)
{
        if (sr->acct->prov == SIM_CLOSE) {
                sim_req_close_error(sr, status, msg);
        } else if (sr->acct->prov == SIM_KOMMO && status == 500) {
                struct evbuffer *b = sr->body;
                evbuffer_drain(b, evbuffer_get_length(b));
                evbuffer_add_printf(b,
                                    "{\"title\":\"ErrInternalServer\","
                                    "\"status\":500,\"detail\":\"%s\","
                                    "\"trace_id\":\"%016llx\"}",
                                    msg, (unsigned long long)trace_id(sr));
                sr->nserved = 0;
                sim_req_status(sr, 500, "application/problem+json");
        } else {
                char extra[64];
                snprintf(extra, sizeof(extra), "\"error_code\":\"%s\"",
                         status == 503 ? "service_unavailable"
                                       : "internal_error");
                sim_req_problem(sr, status, msg,
                                sr->acct->prov == SIM_KOTA ? extra : NULL);
        }
}

static void html_body(struct sim_req *sr, int status, const char *title)
{
        evbuffer_drain(sr->body, evbuffer_get_length(sr->body));
        evbuffer_add_printf(sr->body,
                            "<html>\r\n<head><title>%s</title></head>\r\n"
                            "<body>\r\n<center><h1>%s</h1></center>\r\n"
                            "<hr><center>nginx</center>\r\n</body>\r\n"
                            "</html>\r\n",
                            title, title);
        sr->nserved = 0;
        sim_req_status(sr, status, "text/html");
}

/* ---- sending ------------------------------------------------------------ */

static void count_status(struct sim_account *a, int status)
{
        if (!a)
                return;
        if (status >= 200 && status < 300)
                a->st.s2xx++;
        if (status == 204)
                a->st.s204++;
        if (status >= 400 && status < 500)
                a->st.s4xx++;
        if (status == 401)
                a->st.s401++;
        if (status == 403)
                a->st.s403++;
        if (status == 404)
                a->st.s404++;
        if (status == 429)
                a->st.s429++;
        if (status >= 500)
                a->st.s5xx++;
}

static void unlink_held(struct sim_req *sr)
{
        if (sr->prev)
                sr->prev->next = sr->next;
        else if (sr->sim->held == sr)
                sr->sim->held = sr->next;
        if (sr->next)
                sr->next->prev = sr->prev;
        sr->next = sr->prev = NULL;
}

static void req_send(struct sim_req *sr)
{
        struct evkeyvalq *oh = evhttp_request_get_output_headers(sr->req);
        size_t i;
        int valid = sr->fault == SIM_F_NONE || sr->fault == SIM_F_SLOW;

        if (sr->ctype && sr->status != 204)
                evhttp_add_header(oh, "Content-Type", sr->ctype);
        if (sr->status == 204)
                evbuffer_drain(sr->body, evbuffer_get_length(sr->body));
        count_status(sr->acct, sr->status);
        if (valid && sr->status >= 200 && sr->status < 300) {
                /* The response is sent whole: its versions were served. A
                 * client that already timed out (slow) never reads it;
                 * "served" is therefore an upper bound of what clients
                 * saw, never a lower one. */
                for (i = 0; i < sr->nserved; i++)
                        sr->served[i]->served = 1;
        }
        evhttp_send_reply(sr->req, sr->status, NULL, sr->body);
        req_free(sr);
}

static void reset_finish(struct sim_req *sr);

static void on_held(evutil_socket_t fd, short what, void *arg)
{
        struct sim_req *sr = arg;

        (void)fd;
        (void)what;
        unlink_held(sr);
        if (sr->fault == SIM_F_RESET)
                reset_finish(sr);
        else
                req_send(sr);
}

static void hold(struct sim_req *sr, int64_t delay_ms)
{
        struct timeval tv;

        if (!sr->timer)
                sr->timer = evtimer_new(sr->sim->base, on_held, sr);
        tv.tv_sec = (time_t)(delay_ms / 1000);
        tv.tv_usec = (suseconds_t)((delay_ms % 1000) * 1000);
        evtimer_add(sr->timer, &tv);
        sr->prev = NULL;
        sr->next = sr->sim->held;
        if (sr->next)
                sr->next->prev = sr;
        sr->sim->held = sr;
}

/*
 * Abort the connection. @p started: headers and part of the body went out
 * through evhttp_send_reply_start/chunk; wait (a few ms at a time) until
 * they are flushed so the client sees a partial response, then RST.
 */
static void reset_finish(struct sim_req *sr)
{
        int started = sr->reset_started;
        struct evhttp_connection *evcon =
                evhttp_request_get_connection(sr->req);
        struct bufferevent *bev;
        struct linger lg;
        evutil_socket_t fd;

        if (!evcon) {
                /* the client is already gone; the request is detached */
                if (started)
                        evhttp_send_reply_end(sr->req);
                else
                        evhttp_send_error(sr->req, 503, NULL);
                if (sr->acct)
                        sr->acct->st.resets++;
                req_free(sr);
                return;
        }
        bev = evhttp_connection_get_bufferevent(evcon);
        if (started && bev &&
            evbuffer_get_length(bufferevent_get_output(bev)) &&
            sr->reset_tries++ < 100) {
                hold(sr, 5);
                return;
        }
        fd = bev ? bufferevent_getfd(bev) : -1;
        if (fd >= 0) {
                lg.l_onoff = 1;
                lg.l_linger = 0;
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        if (sr->acct)
                sr->acct->st.resets++;
        /* frees the request too (it is still on the connection) */
        evhttp_connection_free(evcon);
        sr->req = NULL;
        req_free(sr);
}

static void reset_start(struct sim_req *sr)
{
        struct evkeyvalq *oh = evhttp_request_get_output_headers(sr->req);
        struct evbuffer *part = evbuffer_new();
        size_t len = evbuffer_get_length(sr->body);
        char num[32];

        if (len < 16) {
                evbuffer_add(sr->body, "{\"padding\":\"0123456789abcdef\"}",
                             30);
                len = evbuffer_get_length(sr->body);
        }
        snprintf(num, sizeof(num), "%zu", len);
        evhttp_add_header(oh, "Content-Type",
                          sr->ctype ? sr->ctype : "application/json");
        evhttp_add_header(oh, "Content-Length", num);
        evhttp_send_reply_start(sr->req, 200, NULL);
        evbuffer_remove_buffer(sr->body, part, len / 2);
        evhttp_send_reply_chunk(sr->req, part);
        evbuffer_free(part);
        sr->reset_tries = 0;
        sr->reset_started = 1;
        hold(sr, 5);
}

static void corrupt(struct sim_req *sr)
{
        struct evbuffer *b = sr->body;
        size_t len = evbuffer_get_length(b);

        if (sr->fault == SIM_F_TRUNCATED) {
                if (len < 2) {
                        evbuffer_drain(b, len);
                        evbuffer_add(b, "{\"", 2);
                } else {
                        struct evbuffer *t = evbuffer_new();
                        evbuffer_remove_buffer(b, t, len / 2);
                        evbuffer_drain(b, evbuffer_get_length(b));
                        evbuffer_add_buffer(b, t);
                        evbuffer_free(t);
                }
                sr->status = 200;
                sr->acct->st.truncated++;
        } else if (sr->fault == SIM_F_MALFORMED) {
                /* Replace the first ':' (always after a key) with ';',
                 * which no JSON parser accepts. */
                unsigned char *p = evbuffer_pullup(b, -1);
                size_t i;
                int done = 0;

                for (i = 0; p && i < len && !done; i++)
                        if (p[i] == ':') {
                                p[i] = ';';
                                done = 1;
                        }
                if (!done) {
                        evbuffer_drain(b, len);
                        evbuffer_add(b, "{\"_embedded\";[}", 15);
                }
                sr->status = 200;
                sr->acct->st.malformed++;
        } else if (sr->fault == SIM_F_HTML) {
                evbuffer_drain(b, len);
                evbuffer_add_printf(
                        b, "<!DOCTYPE html>\n<html><head><title>We'll be "
                           "right back</title></head>\n<body><h1>Scheduled "
                           "maintenance</h1><p>Please try again in a few "
                           "minutes.</p></body></html>\n");
                sr->ctype = "text/html; charset=utf-8";
                sr->status = 200;
                sr->acct->st.html++;
        }
}

/* Finish an API request: apply the drawn fault, then send or hold. */
static void finish(struct sim_req *sr)
{
        struct sim_account *a = sr->acct;
        int64_t delay = a ? a->set.latency_ms : 0;

        if (sr->fault == SIM_F_TRUNCATED || sr->fault == SIM_F_MALFORMED ||
            sr->fault == SIM_F_HTML) {
                if (sr->status >= 200 && sr->status < 300)
                        corrupt(sr);
                else
                        sr->fault = SIM_F_NONE; /* errors stay as they are */
        }
        if (sr->fault == SIM_F_RESET) {
                reset_start(sr);
                return;
        }
        if (sr->fault == SIM_F_SLOW) {
                delay += a->set.slow_ms;
                a->st.slow++;
        }
        if (delay > 0)
                hold(sr, delay);
        else
                req_send(sr);
}

void sim_server_flush_held(struct sim *sim)
{
        while (sim->held) {
                struct sim_req *sr = sim->held;

                unlink_held(sr);
                event_free(sr->timer);
                sr->timer = NULL;
                if (sr->fault == SIM_F_RESET) {
                        sr->reset_tries = 1000;
                        reset_finish(sr);
                } else {
                        req_send(sr);
                }
        }
}

/* ---- auth, limits, faults ------------------------------------------------ */

static int b64_dec_std(const char *in, char *out, size_t outsz)
{
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                  "qrstuvwxyz0123456789+/";
        unsigned acc = 0;
        int bits = 0;
        size_t n = 0;

        for (; *in && *in != '='; in++) {
                const char *p = strchr(tbl, *in);
                if (!p)
                        return -EINVAL;
                acc = (acc << 6) | (unsigned)(p - tbl);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (n + 1 >= outsz)
                                return -EINVAL;
                        out[n++] = (char)((acc >> bits) & 0xff);
                }
        }
        out[n] = '\0';
        return (int)n;
}

static int auth_ok(struct sim_req *sr)
{
        struct sim_account *a = sr->acct;
        const char *h = evhttp_find_header(
                evhttp_request_get_input_headers(sr->req), "Authorization");
        const char *cred = sim_account_credential(a);
        size_t clen = strlen(cred);

        if (!h)
                return 0;
        if (a->prov == SIM_CLOSE) {
                char dec[512];
                int n;

                if (strncasecmp(h, "Basic ", 6))
                        return 0;
                n = b64_dec_std(h + 6, dec, sizeof(dec));
                /* "<api key>:" with an empty password */
                return n > 0 && (size_t)n == clen + 1 && dec[clen] == ':' &&
                       eb_ct_equal(dec, clen, cred, clen);
        }
        if (strncasecmp(h, "Bearer ", 7))
                return 0;
        if (a->prov == SIM_KOMMO &&
            sim_oauth_access_ok(a, h + 7, strlen(h + 7), eb_now_ms()))
                return 1;
        return eb_ct_equal(h + 7, strlen(h + 7), cred, clen);
}

static void ring_resize(int64_t **ring, size_t *cap, size_t *head, size_t *cnt,
                        size_t want)
{
        if (*cap == want && *ring)
                return;
        free(*ring);
        *ring = eb_xcalloc(want ? want : 1, sizeof(**ring));
        *cap = want ? want : 1;
        *head = 0;
        *cnt = 0;
}

static void ring_prune(int64_t *ring, size_t cap, size_t *head, size_t *cnt,
                       int64_t older_than)
{
        while (*cnt && ring[*head] <= older_than) {
                *head = (*head + 1) % cap;
                (*cnt)--;
        }
}

static void ring_push(int64_t *ring, size_t cap, size_t *head, size_t *cnt,
                      int64_t v)
{
        if (*cnt == cap) {
                *head = (*head + 1) % cap;
                (*cnt)--;
        }
        ring[(*head + *cnt) % cap] = v;
        (*cnt)++;
}

/* Sliding one-second window. @returns 0 (allowed) or ms until a slot. */
static int64_t window_take(struct sim_account *a, int rps, int64_t now)
{
        ring_resize(&a->rl_ring, &a->rl_cap, &a->rl_head, &a->rl_cnt,
                    (size_t)rps);
        ring_prune(a->rl_ring, a->rl_cap, &a->rl_head, &a->rl_cnt, now - 1000);
        if (a->rl_cnt >= (size_t)rps) {
                int64_t wait = a->rl_ring[a->rl_head] + 1000 - now;
                return wait > 0 ? wait : 1;
        }
        ring_push(a->rl_ring, a->rl_cap, &a->rl_head, &a->rl_cnt, now);
        return 0;
}

/* The ban slot (monotonic ms, 0: none) of the client address of @p sr:
 * Kommo bans the IP address, so every account asked from it is blocked. */
static int64_t *addr_ban(struct sim_req *sr, int64_t now)
{
        struct sim *sim = sr->sim;
        struct evhttp_connection *conn = evhttp_request_get_connection(sr->req);
        const char *host = NULL;
        ev_uint16_t port = 0;
        size_t i;

        if (conn)
                evhttp_connection_get_peer(conn, (char **)&host, &port);
        if (!host)
                host = "?";
        for (i = 0; i < sim->nbans; i++)
                if (!strcmp(sim->bans[i].addr, host))
                        return &sim->bans[i].until;
        /* reuse an expired slot, else the oldest */
        for (i = 0; i < sim->nbans; i++)
                if (sim->bans[i].until <= now)
                        break;
        if (i == sim->nbans &&
            sim->nbans < sizeof(sim->bans) / sizeof(sim->bans[0]))
                sim->nbans++;
        else if (i == sim->nbans)
                i = 0;
        snprintf(sim->bans[i].addr, sizeof(sim->bans[i].addr), "%s", host);
        sim->bans[i].until = 0;
        return &sim->bans[i].until;
}

/* @returns 0 to go on, or -1 after answering. */
static int limits(struct sim_req *sr)
{
        struct sim_account *a = sr->acct;
        struct sim_settings *s = &a->set;
        int64_t now = eb_mono_ms(), wait, *ban;
        char buf[160];

        if (a->prov == SIM_CLOSE) {
                int64_t left;
                double reset;
                int limited = 0;

                if (!a->cw_start || now >= a->cw_start + s->close_window_ms) {
                        a->cw_start = now;
                        a->cw_count = 0;
                }
                if (s->limits && a->cw_count >= s->close_limit)
                        limited = 1;
                else if (s->limits)
                        a->cw_count++;
                left = a->cw_start + s->close_window_ms - now;
                reset = (double)(left > 0 ? left : 1) / 1000.0;
                snprintf(buf, sizeof(buf), "limit=%d, remaining=%d, reset=%.3f",
                         s->close_limit,
                         s->limits ? s->close_limit - a->cw_count
                                   : s->close_limit,
                         reset);
                /* trim trailing zeros: reset=0.734, reset=1 */
                {
                        size_t n = strlen(buf);
                        while (n && buf[n - 1] == '0')
                                buf[--n] = '\0';
                        if (n && buf[n - 1] == '.')
                                buf[--n] = '\0';
                }
                sim_req_header(sr, "RateLimit", buf);
                if (limited) {
                        snprintf(buf, sizeof(buf), "%lld",
                                 (long long)ceil(reset));
                        sim_req_header(sr, "Retry-After", buf);
                        sim_req_close_error(
                                sr, 429,
                                "API call count exceeded for this period");
                        return -1;
                }
                return 0;
        }
        if (!s->limits)
                return 0;
        if (a->prov == SIM_KOTA) {
                wait = window_take(a, s->kota_rps, now);
                if (wait) {
                        sim_req_problem(sr, 429,
                                        "Rate limit exceeded. Retry with "
                                        "exponential backoff.",
                                        "\"error_code\":"
                                        "\"rate_limit_exceeded\"");
                        return -1;
                }
                return 0;
        }
        /* Kommo: 7 rps, 429 with retry_after, repeated 429s -> 403 ban of
         * the client's address (or, kommo_ban_scope account, the account) */
        ban = s->kommo_ban_account ? &a->banned_until : addr_ban(sr, now);
        if (*ban && now < *ban) {
                snprintf(buf, sizeof(buf), "\"retry_after\":%lld",
                         (long long)((*ban - now + 999) / 1000));
                sim_req_problem(sr, 403,
                                s->kommo_ban_account
                                        ? "Access denied: the account is "
                                          "blocked for repeatedly exceeding "
                                          "the request limit."
                                        : "Access denied: your IP address is "
                                          "blocked for repeatedly exceeding "
                                          "the request limit.",
                                buf);
                return -1;
        }
        if (*ban) {
                *ban = 0;
                a->ban_cnt = 0;
        }
        wait = window_take(a, s->kommo_rps, now);
        if (!wait)
                return 0;
        if (s->kommo_ban_after > 0) {
                ring_resize(&a->ban_ring, &a->ban_cap, &a->ban_head,
                            &a->ban_cnt, (size_t)s->kommo_ban_after);
                ring_prune(a->ban_ring, a->ban_cap, &a->ban_head, &a->ban_cnt,
                           now - s->kommo_ban_window_ms);
                ring_push(a->ban_ring, a->ban_cap, &a->ban_head, &a->ban_cnt,
                          now);
                if (a->ban_cnt >= (size_t)s->kommo_ban_after) {
                        *ban = now + s->kommo_ban_ms;
                        a->banned_until = *ban;
                        eb_warn(SIM_MOD,
                                "kommo account %s: %s banned for %lld ms",
                                a->name,
                                s->kommo_ban_account ? "account"
                                                     : "client address",
                                (long long)s->kommo_ban_ms);
                }
        }
        snprintf(buf, sizeof(buf), "\"retry_after\":%lld",
                 (long long)(s->kommo_retry_after ? s->kommo_retry_after
                                                  : (wait + 999) / 1000));
        sim_req_problem(sr, 429,
                        "You have sent too many requests in a given amount "
                        "of time. Please try again later.",
                        buf);
        return -1;
}

static int pick_fault(struct sim_account *a, int64_t now_ms)
{
        size_t i;
        int hit = SIM_F_NONE;

        for (i = 0; i < a->set.nfaults; i++) {
                struct sim_fault_rule *r = &a->set.faults[i];
                int on = 0;

                switch (r->mode) {
                case SIM_FM_PROB:
                        on = sim_rng_unit(&a->frng) < r->prob;
                        break;
                case SIM_FM_EVERY:
                        on = ++r->counter % r->n == 0;
                        break;
                case SIM_FM_NEXT:
                        if (!hit && r->n > 0) {
                                r->n--;
                                on = 1;
                        }
                        break;
                default:
                        on = now_ms >= r->from_ms && now_ms < r->until_ms;
                        break;
                }
                if (on && !hit)
                        hit = r->kind;
        }
        return hit;
}

/* ---- dispatch
 * ---------------------------------------------------------------- */

static void api_request(struct sim *sim, struct sim_account *a,
                        struct evhttp_request *req, const char *rest)
{
        struct sim_req *sr = req_new(sim, a, req);

        if (a->prov == SIM_KOMMO && !strcmp(rest, "/oauth2/access_token")) {
                /* token renewal: its own authentication (client secret and
                 * refresh token in the body) */
                if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
                        sim_req_problem(sr, 405, "Method not allowed.", NULL);
                        sim_req_header(sr, "Allow", "POST");
                } else if (a->set.down == SIM_DOWN_503) {
                        /* an outage takes the token endpoint down too;
                         * nothing is rotated */
                        provider_error(sr, 503,
                                       "Service temporarily unavailable");
                } else {
                        sim_oauth_handle(sr, eb_now_ms());
                }
                finish(sr);
                return;
        }
        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
                if (a->prov == SIM_CLOSE)
                        sim_req_close_error(sr, 405, "Method not allowed.");
                else
                        sim_req_problem(sr, 405, "Method not allowed.", NULL);
                sim_req_header(sr, "Allow", "GET");
                finish(sr);
                return;
        }
        if (a->prov == SIM_CLOSE && limits(sr) < 0) {
                finish(sr);
                return;
        }
        if (a->set.down == SIM_DOWN_RESET) {
                sr->fault = SIM_F_RESET;
                sr->reset_tries = 1000;
                sr->reset_started = 0;
                hold(sr, 0);
                return;
        }
        if (a->set.down == SIM_DOWN_503) {
                provider_error(sr, 503, "Service temporarily unavailable");
                sim_req_header(sr, "Retry-After", "1");
                finish(sr);
                return;
        }
        if (a->prov != SIM_CLOSE && limits(sr) < 0) {
                finish(sr);
                return;
        }
        if (!auth_ok(sr)) {
                if (a->prov == SIM_CLOSE) {
                        sim_req_header(sr, "WWW-Authenticate",
                                       "Basic realm=\"api\"");
                        sim_req_close_error(sr, 401,
                                            "The API key is invalid or "
                                            "missing.");
                } else if (a->prov == SIM_KOTA) {
                        sim_req_problem(sr, 401, "Missing or invalid API key.",
                                        "\"error_code\":\"unauthorized\"");
                } else {
                        sim_req_problem(sr, 401, "Unauthorized", NULL);
                }
                finish(sr);
                return;
        }
        sr->fault = pick_fault(a, eb_now_ms());
        switch (sr->fault) {
        case SIM_F_500:
                provider_error(sr, 500, "Internal server error");
                sr->fault = SIM_F_NONE;
                finish(sr);
                return;
        case SIM_F_503:
                provider_error(sr, 503, "Service temporarily unavailable");
                sim_req_header(sr, "Retry-After", "1");
                sr->fault = SIM_F_NONE;
                finish(sr);
                return;
        case SIM_F_502:
        case SIM_F_504:
                html_body(sr, sr->fault == SIM_F_502 ? 502 : 504,
                          sr->fault == SIM_F_502 ? "502 Bad Gateway"
                                                 : "504 Gateway Time-out");
                sr->fault = SIM_F_NONE;
                finish(sr);
                return;
        default:
                break;
        }
        switch (a->prov) {
        case SIM_KOMMO:
                sim_kommo_handle(sr, rest);
                break;
        case SIM_CLOSE:
                sim_close_handle(sr, rest);
                break;
        default:
                sim_kota_handle(sr, rest);
                break;
        }
        finish(sr);
}

static void on_request(struct evhttp_request *req, void *arg)
{
        struct sim *sim = arg;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        const char *p, *slash, *acct_end;
        struct sim_account *a;
        int prov;

        if (!path || path[0] != '/') {
                evhttp_send_error(req, 400, NULL);
                return;
        }
        if (!strncmp(path, "/_sim/", 6)) {
                sim_control_handle(sim, req, path);
                return;
        }
        /* /<provider>/<account>/<rest> */
        p = path + 1;
        slash = strchr(p, '/');
        prov = slash ? sim_prov_parse(p, (size_t)(slash - p)) : -1;
        if (prov < 0) {
                evhttp_send_error(req, 404, NULL);
                return;
        }
        acct_end = strchr(slash + 1, '/');
        if (!acct_end)
                acct_end = slash + 1 + strlen(slash + 1);
        a = sim_find_account(sim, prov, slash + 1,
                             (size_t)(acct_end - slash - 1));
        if (!a) {
                evhttp_send_error(req, 404, "Unknown account");
                return;
        }
        api_request(sim, a, req, acct_end);
}

int sim_server_start(struct sim *sim, const char *listen, char *err,
                     size_t errsz)
{
        char host[64];
        const char *colon = strrchr(listen, ':');
        int64_t port;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        evutil_socket_t fd;

        if (!colon || (size_t)(colon - listen) >= sizeof(host) ||
            eb_parse_i64(colon + 1, &port) < 0 || port < 0 || port > 65535) {
                snprintf(err, errsz, "--listen: expected ADDR:PORT, got '%s'",
                         listen);
                return -EINVAL;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        sim->http = evhttp_new(sim->base);
        if (!sim->http) {
                snprintf(err, errsz, "evhttp_new failed");
                return -ENOMEM;
        }
        evhttp_set_max_body_size(sim->http, (ev_ssize_t)sim->max_body);
        evhttp_set_max_headers_size(sim->http, 64 * 1024);
        evhttp_set_timeout(sim->http, 3600);
        evhttp_set_allowed_methods(
                sim->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
        evhttp_set_gencb(sim->http, on_request, sim);
        sim->bound =
                evhttp_bind_socket_with_handle(sim->http, host, (uint16_t)port);
        if (!sim->bound) {
                snprintf(err, errsz, "cannot listen on %s", listen);
                return -EADDRINUSE;
        }
        fd = evhttp_bound_socket_get_fd(sim->bound);
        {
                /* Accepted sockets inherit TCP_NODELAY on Linux; without it
                 * Nagle plus the client's delayed ACK adds ~40 ms to every
                 * multi-segment response on a keep-alive connection. */
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
                snprintf(err, errsz, "getsockname: %s", strerror(errno));
                return -errno;
        }
        if (ss.ss_family == AF_INET)
                sim->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else
                sim->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !*host)
                snprintf(sim->host, sizeof(sim->host), "127.0.0.1");
        else
                snprintf(sim->host, sizeof(sim->host), "%s", host);
        if (strchr(sim->host, ':'))
                snprintf(sim->origin, sizeof(sim->origin), "http://[%s]:%d",
                         sim->host, sim->port);
        else
                snprintf(sim->origin, sizeof(sim->origin), "http://%s:%d",
                         sim->host, sim->port);
        return 0;
}
