#include "eb_poller.h"

#define EB_POLLER_STAGGER_MS   4
#define EB_POLLER_TWIN_WAIT_MS 10

/*
 * Time slices of newest-first walks (docs/operations.md, "Memory"): a
 * walk covers at most slice_ms past its watermark, so what it buffers
 * does not depend on the backlog. A source starts unsliced (one walk up
 * to now, as long as it holds at most poll.max_buffered_events). A walk
 * that would hold more is dropped before anything of it is published and
 * walked again as a slice sized from the density of what it held (about
 * half of poll.max_buffered_events, and at most half the slice it
 * replaces); each slice that ends sizes the next from how many events it
 * held, toward the same half (at most 4 times longer or 2 times shorter).
 */
#define EB_POLLER_SLICE_MIN_MS 1000LL
#define EB_POLLER_SLICE_MAX_MS (400LL * 24 * 3600 * 1000)

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_log.h"
#include "eb_oauth.h"
#include "eb_source_fsm.h"
#include "eb_time.h"
#include "eb_util.h"

struct src {
        struct src *next;
        eb_poller_t *p;
        const struct eb_source_cfg *cfg; /* borrowed */
        const struct eb_provider *prov;
        struct event *timer;
        enum eb_src_fsm_state state; /* eb_source_fsm.h; set_state() */
        /* Retired (reload, removal, shard hand-over) while a request or a
         * publish ran: freed once that settles. A flag, not a state: the
         * state goes on following that request or publish. */
        int removed;

        struct eb_walk walk;
        int in_walk; /* walk holds a cursor: spans fetches and backoffs */
        int walk_had_full_page;
        int64_t walk_started_ms; /* monotonic */
        int trigger_pending;     /* a poll asked for while busy (any state) */
        json_t *committed_cp;    /* last checkpoint acknowledged */
        json_t *snap_cp;         /* walk.cp / walk.state before page_done */
        json_t *snap_state;
        int snap_taken; /* the snapshot covers the buffered pages */
        int page_more;

        /* Pages of a newest-first walk, held until the walk ends (or the
         * buffer cap), then published oldest first, at most
         * opts.publish_max_events per publish: buf[pub_off..] are not
         * handed to the sink yet. */
        struct eb_event **buf;
        size_t buf_cnt, buf_cap, pub_off;
        int64_t slice_ms; /* the next walk's time slice (newest first) */
        int walk_partial; /* part of this walk was published at the cap,
                           * or it resumed a checkpoint's window: it is
                           * not walked again as a shorter slice */

        uint64_t xfer_id;

        /* Kommo OAuth (eb_oauth.h), NULL with a long-lived token. */
        eb_oauth_t *oauth;
        int oauth_fresh;       /* the access token is new: a 401 now is
                                * not an expiry */
        int64_t oauth_hold_ms; /* test hook: persist not before (mono) */

        /* token bucket */
        double rps, burst, tokens;
        /* when this source began to wait for a token of a shared
         * budget (monotonic us; 0: not waiting): the longest waiting
         * source takes the next one */
        int64_t token_wait_us;
        int64_t refill_us;
        int64_t not_before_ms; /* monotonic: pause (429, RateLimit) */

        int64_t backoff_ms;
        struct eb_source_stats st;

        /* The walk running, for its closing line: pages handled, and the
         * events of the publish in flight (counted once it succeeded). */
        int walk_pages;
        uint64_t walk_events;
        int64_t walk_oldest_ms, walk_newest_ms;
        size_t flush_cnt;
        int64_t flush_oldest_ms, flush_newest_ms;
};

struct eb_poller_s {
        struct event_base *base;
        eb_http_t *http;
        struct eb_sink sink;
        struct eb_poller_opts opts;
        struct src *srcs;
        int nsrcs;
        int retiring; /* removed sources whose request or publish runs */
        int stopping;
        uint64_t rng;
};

static void src_schedule(struct src *s, int64_t delay_ms);
static void src_step(struct src *s);
static int oauth_step(struct src *s);
static void buf_clear(struct src *s);

const char *eb_source_state_name(enum eb_source_state st)
{
        switch (st) {
        case EB_SRC_IDLE:
                return "idle";
        case EB_SRC_WAITING:
                return "waiting";
        case EB_SRC_FETCHING:
                return "fetching";
        case EB_SRC_PUBLISHING:
                return "publishing";
        case EB_SRC_BACKOFF:
                return "backoff";
        case EB_SRC_STOPPED:
                return "stopped";
        }
        return "unknown";
}

static uint64_t rnd(eb_poller_t *p)
{
        /* xorshift64*: jitter only, not security. */
        p->rng ^= p->rng >> 12;
        p->rng ^= p->rng << 25;
        p->rng ^= p->rng >> 27;
        return p->rng * 2685821657736338717ULL;
}

/* Every change of a source's state: checked against eb_source_fsm. */
static void set_state(struct src *s, enum eb_src_fsm_state to)
{
        int st = (int)s->state;

        eb_fsm_move(&eb_source_fsm, &st, (int)to, s->cfg->name);
        s->state = (enum eb_src_fsm_state)st;
        s->st.state = eb_source_fsm_public(s->state);
}

/* @p s is to start nothing new: stopped itself, or the poller stops. */
static int src_stopping(const struct src *s)
{
        return s->state == EB_SRCF_STOPPED || s->p->stopping;
}

/* A request or a publish of @p s is in flight. */
static int busy(const struct src *s)
{
        return s->state == EB_SRCF_FETCHING || s->state == EB_SRCF_PUBLISHING;
}

eb_poller_t *eb_poller_new(struct event_base *base, eb_http_t *http,
                           const struct eb_sink *sink,
                           const struct eb_poller_opts *opts)
{
        eb_poller_t *p = eb_xcalloc(1, sizeof(*p));

        p->base = base;
        p->http = http;
        p->sink = *sink;
        if (opts)
                p->opts = *opts;
        if (p->opts.backoff_min_ms <= 0)
                p->opts.backoff_min_ms = 1000;
        if (p->opts.backoff_max_ms <= 0)
                p->opts.backoff_max_ms = 5 * 60 * 1000;
        if (p->opts.auth_backoff_ms <= 0)
                p->opts.auth_backoff_ms = 5 * 60 * 1000;
        if (p->opts.slowdown_remaining <= 0)
                p->opts.slowdown_remaining = 0.1;
        if (p->opts.max_walk_events <= 0)
                p->opts.max_walk_events = 2000;
        if (p->opts.publish_max_events <= 0)
                p->opts.publish_max_events = 5000; /* kafka.batch.max_events */
        p->rng = (uint64_t)eb_mono_us() | 1;
        return p;
}

static struct src *find(const eb_poller_t *p, const char *name)
{
        struct src *s;

        for (s = p->srcs; s; s = s->next)
                if (!s->removed && !strcmp(s->cfg->name, name))
                        return s;
        return NULL;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        src_step(arg);
}

int eb_poller_add(eb_poller_t *p, const struct eb_source_cfg *src, json_t *cp,
                  char *errstr, size_t errstr_size)
{
        const struct eb_provider *prov = eb_provider_lookup(src->provider);
        struct src *s;
        json_t *blob = NULL;

        if (!prov) {
                snprintf(errstr, errstr_size, "source %s: unknown provider %s",
                         src->name, src->provider);
                return -EINVAL;
        }
        if (find(p, src->name)) {
                snprintf(errstr, errstr_size, "source %s: already added",
                         src->name);
                return -EEXIST;
        }
        s = eb_xcalloc(1, sizeof(*s));
        s->p = p;
        s->cfg = src;
        s->prov = prov;
        s->timer = evtimer_new(p->base, on_timer, s);
        if (!s->timer) {
                free(s);
                snprintf(errstr, errstr_size, "cannot create timer");
                return -ENOMEM;
        }
        /* A checkpoint may carry the source's persisted OAuth pair. */
        s->committed_cp = eb_oauth_split(cp, &blob);
        if (eb_oauth_configured(src)) {
                char note[256];

                s->oauth = eb_oauth_new(src, blob, note, sizeof(note));
                if (s->oauth)
                        eb_info("poller", "source=%s OAuth: %s", src->name,
                                note);
        }
        json_decref(blob);
        s->rps = src->rate_rps > 0 ? src->rate_rps : prov->default_rps;
        s->burst = src->rate_burst > 0       ? src->rate_burst
                   : prov->default_burst > 0 ? prov->default_burst
                                             : 1;
        s->slice_ms = EB_POLLER_SLICE_MAX_MS;
        s->tokens = 1; /* start with one token: no burst at start-up */
        s->refill_us = eb_mono_us();
        s->next = p->srcs;
        p->srcs = s;
        p->nsrcs++;
        s->state = EB_SRCF_IDLE; /* the machine's start */
        s->st.state = EB_SRC_IDLE;
        /* Stagger first walks so five hundred sources don't all connect
         * in the same millisecond: 4 ms per source added so far, at most
         * one interval and 2 s. A handful of sources starts at once. */
        {
                int64_t spread = (int64_t)p->nsrcs * EB_POLLER_STAGGER_MS;

                if (spread > src->poll_interval_ms)
                        spread = src->poll_interval_ms;
                if (spread > 2000)
                        spread = 2000;
                src_schedule(s, spread > 0
                                        ? (int64_t)(rnd(p) % (uint64_t)spread)
                                        : 0);
        }
        return 0;
}

static void src_free(struct src *s)
{
        buf_clear(s);
        free(s->buf);
        if (s->timer)
                event_free(s->timer);
        if (s->in_walk)
                eb_walk_fini(&s->walk);
        json_decref(s->committed_cp);
        json_decref(s->snap_cp);
        json_decref(s->snap_state);
        eb_oauth_free(s->oauth);
        free(s);
}

static void unlink_src(eb_poller_t *p, struct src *s)
{
        struct src **pp;

        for (pp = &p->srcs; *pp; pp = &(*pp)->next) {
                if (*pp == s) {
                        *pp = s->next;
                        p->nsrcs--;
                        return;
                }
        }
}

/* Forget @p s now, or once its request or publish settles: the upstream
 * is still answering that request, so a successor with the same name
 * waits for it (busy_twin()). */
static void src_retire(eb_poller_t *p, struct src *s)
{
        evtimer_del(s->timer);
        if (busy(s)) {
                s->removed = 1;
                p->retiring++;
                return;
        }
        set_state(s, EB_SRCF_STOPPED);
        unlink_src(p, s);
        src_free(s);
}

/* The retired source @p s settled: free it. */
static void src_retired(eb_poller_t *p, struct src *s)
{
        p->retiring--;
        unlink_src(p, s);
        src_free(s);
}

void eb_poller_remove(eb_poller_t *p, const char *name)
{
        struct src *s = find(p, name);

        if (s)
                src_retire(p, s);
}

int eb_poller_replace(eb_poller_t *p, const struct eb_source_cfg *o,
                      const struct eb_source_cfg *n, json_t *cp,
                      struct eb_reload_tally *tally, char *errstr,
                      size_t errstr_size)
{
        struct eb_reload_tally none;
        struct eb_source_stats kept;
        struct src *cur, *ns;
        eb_oauth_t *carry = NULL;
        int have = 0;
        int rc;

        if (!tally)
                tally = &none;
        if (!n) {
                eb_poller_remove(p, o->name);
                eb_info("poller", "reload: source=%s removed", o->name);
                tally->removed++;
                return 0;
        }
        if (o)
                tally->changed++;
        else
                tally->added++;
        /* From where it is, else from @p cp (the last committed one). */
        cur = find(p, n->name);
        if (cur && cur->committed_cp)
                cp = cur->committed_cp;
        if (cur) {
                kept = cur->st;
                have = 1;
        }
        if (cur && cur->oauth) {
                /* The running pair goes on (the one configured is spent
                 * by now), unless the new configuration re-authorized. */
                json_t *blob = eb_oauth_blob(cur->oauth, 0), *old, *bare;

                bare = eb_oauth_split(cp, &old);
                cp = eb_oauth_wrap(bare, blob ? blob : old);
                json_decref(bare);
                json_decref(old);
                json_decref(blob);
        } else {
                json_incref(cp);
        }
        if (cur && cur->oauth && eb_oauth_pending(cur->oauth) && !busy(cur)) {
                /* A pair received and not yet persisted goes to the
                 * successor, which persists it before using it. (A busy
                 * one hands it over when its request or publish ends.) */
                carry = cur->oauth;
                cur->oauth = NULL;
        }
        if (o)
                eb_poller_remove(p, o->name);
        rc = eb_poller_add(p, n, cp, errstr, errstr_size);
        json_decref(cp);
        ns = rc ? NULL : find(p, n->name);
        if (carry) {
                if (ns && ns->oauth && eb_oauth_adopt(ns->oauth, carry))
                        eb_info("poller",
                                "reload: source=%s takes over the new OAuth "
                                "token pair, persisting it first",
                                n->name);
                eb_oauth_free(carry);
        }
        if (ns && have) {
                /* A changed source's counters carry on, like the
                 * pipeline's published and duplicates do: one series per
                 * source across reloads. Its gauges are the new run's (a
                 * reload lifts a ban). */
                kept.state = ns->st.state;
                kept.banned = 0;
                kept.oauth_refused = 0;
                kept.backoff_ms = 0;
                kept.next_poll_ms = ns->st.next_poll_ms;
                ns->st = kept;
        }
        if (rc)
                eb_error("poller", "reload: source=%s cannot start: %s",
                         n->name, errstr);
        else
                eb_info("poller", "reload: source=%s %s", n->name,
                        o ? "changed" : "added");
        return rc;
}

/* A retired source named like @p s with a request or publish in flight. */
static const struct src *busy_twin(const struct src *s)
{
        const struct src *t;

        if (!s->p->retiring)
                return NULL;
        for (t = s->p->srcs; t; t = t->next)
                if (t != s && t->removed && busy(t) &&
                    !strcmp(t->cfg->name, s->cfg->name))
                        return t;
        return NULL;
}

int eb_poller_busy(const eb_poller_t *p, const char *name)
{
        const struct src *s;

        for (s = p->srcs; s; s = s->next)
                if (busy(s) && !strcmp(s->cfg->name, name))
                        return 1;
        return 0;
}

void eb_poller_cancel(eb_poller_t *p, const char *name)
{
        struct src *s, *next;

        for (s = p->srcs; s; s = next) {
                next = s->next;
                if (strcmp(s->cfg->name, name))
                        continue;
                if (!s->removed && !busy(s)) {
                        src_retire(p, s); /* frees it */
                        continue;
                }
                if (!s->removed)
                        src_retire(p, s);
                if (s->state == EB_SRCF_FETCHING) {
                        eb_http_cancel(p->http, s->xfer_id);
                        set_state(s, EB_SRCF_STOPPED);
                        src_retired(p, s);
                }
        }
}

/* The last failure of a source, for /status (the log has it too). */
static void note_error(struct src *s, const char *fmt, ...) EB_PRINTF(2, 3);

static void note_error(struct src *s, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->st.last_error, sizeof(s->st.last_error), fmt, ap);
        va_end(ap);
        s->st.last_error_ms = eb_now_ms();
}

static void src_schedule(struct src *s, int64_t delay_ms)
{
        struct timeval tv;

        if (delay_ms < 0)
                delay_ms = 0;
        s->st.next_poll_ms = eb_now_ms() + delay_ms;
        tv.tv_sec = (time_t)(delay_ms / 1000);
        tv.tv_usec = (suseconds_t)((delay_ms % 1000) * 1000);
        evtimer_add(s->timer, &tv);
}

/* Exponential backoff with full jitter in [d/2, d]. */
static int64_t next_backoff(struct src *s, int64_t min_ms, int64_t max_ms)
{
        int64_t d = s->backoff_ms ? s->backoff_ms * 2 : min_ms;

        if (d > max_ms)
                d = max_ms;
        s->backoff_ms = d;
        s->st.backoff_ms = d;
        return d / 2 + (int64_t)(rnd(s->p) % (uint64_t)(d / 2 + 1));
}

static void reset_backoff(struct src *s)
{
        s->backoff_ms = 0;
        s->st.backoff_ms = 0;
}

/* "https://ACME.kommo.com/" and "https://acme.kommo.com": one account. */
static int same_base(const struct src *a, const struct src *b)
{
        const char *x = a->cfg->base_url, *y = b->cfg->base_url;
        size_t nx, ny;

        if (!x || !y)
                return !x && !y;
        nx = strlen(x);
        ny = strlen(y);
        while (nx && x[nx - 1] == '/')
                nx--;
        while (ny && y[ny - 1] == '/')
                ny--;
        return nx == ny && !strncasecmp(x, y, nx);
}

/*
 * The source whose token bucket paces @p s. A provider with a documented
 * per-account limit (Kommo: 7 requests/s) counts every request to the
 * account against it, so sources of one account (same base_url) share
 * one bucket: the first such source in the list owns it. Otherwise each
 * source has its own.
 */
static struct src *budget_of(struct src *s)
{
        struct src *t;

        if (s->prov->max_per_second <= 0)
                return s;
        for (t = s->p->srcs; t; t = t->next)
                if (!t->removed && t->prov == s->prov && same_base(t, s))
                        return t;
        return s;
}

/* Another source of @p b's shared budget that has waited for a token
 * longer than @p s: it goes first. */
static int other_waits_longer(const struct src *b, const struct src *s)
{
        const struct src *t;

        for (t = s->p->srcs; t; t = t->next) {
                if (t == s || t->removed || !t->token_wait_us ||
                    t->state != EB_SRCF_WAITING ||
                    budget_of((struct src *)t) != b)
                        continue;
                if (!s->token_wait_us || t->token_wait_us < s->token_wait_us)
                        return 1;
        }
        return 0;
}

/*
 * @returns 0 if a token was taken, else the ms to wait for one. Sources
 * that share a budget take turns: when several wait, the one that has
 * waited longest takes the next token. Without that, whichever timer
 * fired first at each refill took it, and on a loaded machine one source
 * of an account could get nearly all of them.
 */
static int64_t take_token(struct src *s)
{
        int64_t now = eb_mono_us();
        struct src *b = budget_of(s);
        double need;

        if (b->rps <= 0)
                return 0;
        b->tokens += (double)(now - b->refill_us) / 1e6 * b->rps;
        if (b->tokens > b->burst)
                b->tokens = b->burst;
        b->refill_us = now;
        if (b->tokens >= 1.0 && !other_waits_longer(b, s)) {
                b->tokens -= 1.0;
                s->token_wait_us = 0;
                return 0;
        }
        if (!s->token_wait_us)
                s->token_wait_us = now;
        need = b->tokens >= 1.0 ? 0 : (1.0 - b->tokens) / b->rps * 1000.0;
        /* behind another waiter: come back after its turn */
        if (b->tokens >= 1.0 || other_waits_longer(b, s))
                need += 1000.0 / b->rps;
        return (int64_t)need + 1;
}

static void buf_clear(struct src *s)
{
        size_t i;

        for (i = s->pub_off; i < s->buf_cnt; i++)
                eb_event_free(s->buf[i]);
        s->buf_cnt = 0;
        s->pub_off = 0;
}

static void walk_reset(struct src *s)
{
        if (s->in_walk)
                eb_walk_fini(&s->walk);
        s->in_walk = 0;
        s->walk_partial = 0;
        buf_clear(s);
        json_decref(s->snap_cp);
        json_decref(s->snap_state);
        s->snap_cp = s->snap_state = NULL;
        s->snap_taken = 0;
}

static void backoff_retry(struct src *s, int64_t delay_ms)
{
        set_state(s, EB_SRCF_BACKOFF);
        src_schedule(s, delay_ms);
}

static void on_published(void *arg, int err);

/* A publish failed: stop when stopping (@returns -1), else retry after
 * the next backoff (@returns it, in ms). */
static int64_t retry_or_stop(struct src *s)
{
        int64_t wait;

        if (src_stopping(s)) {
                set_state(s, EB_SRCF_STOPPED);
                return -1;
        }
        wait = next_backoff(s, s->p->opts.backoff_min_ms,
                            s->p->opts.backoff_max_ms);
        backoff_retry(s, wait);
        return wait;
}

struct sortent {
        struct eb_event *evt;
        size_t seq;
};

static int cmp_oldest_first(const void *a, const void *b)
{
        const struct sortent *x = a, *y = b;

        if (x->evt->time_ms != y->evt->time_ms)
                return x->evt->time_ms < y->evt->time_ms ? -1 : 1;
        /* Same time: the API listed the newer one first. */
        return x->seq > y->seq ? -1 : x->seq < y->seq ? 1 : 0;
}

/* Newest-first APIs list an entity's later events before its earlier
 * ones; put the buffered walk back in the order things happened. */
static void sort_oldest_first(struct eb_event **evts, size_t cnt)
{
        struct sortent *tmp;
        size_t i;

        if (cnt < 2)
                return;
        tmp = eb_xmalloc(cnt * sizeof(*tmp));
        for (i = 0; i < cnt; i++) {
                tmp[i].evt = evts[i];
                tmp[i].seq = i;
        }
        qsort(tmp, cnt, sizeof(*tmp), cmp_oldest_first);
        for (i = 0; i < cnt; i++)
                evts[i] = tmp[i].evt;
        free(tmp);
}

/* Hand the next part of the buffer to the sink: at most
 * opts.publish_max_events, so no more than that is rendered and held for
 * Kafka at a time. Only the last part carries the checkpoint; the parts
 * before it commit first (each waits for the previous one), so the
 * checkpoint still moves only once every event behind it is in Kafka,
 * and a retry after a failure finds the committed parts in the dedupe. */
static void publish_next(struct src *s)
{
        eb_poller_t *p = s->p;
        size_t n = s->buf_cnt - s->pub_off;
        struct eb_event **evts;
        json_t *cp = NULL;
        int rc;

        if (n > (size_t)p->opts.publish_max_events)
                n = (size_t)p->opts.publish_max_events;
        /* The sink owns this array and its events from here on. */
        evts = eb_xmalloc((n ? n : 1) * sizeof(*evts));
        if (n)
                memcpy(evts, s->buf + s->pub_off, n * sizeof(*evts));
        s->pub_off += n;
        if (s->pub_off == s->buf_cnt) {
                cp = s->walk.cp;
                s->buf_cnt = s->pub_off = 0;
        }
        set_state(s, EB_SRCF_PUBLISHING);
        if (cp && s->oauth) {
                /* Every checkpoint record carries the newest durable
                 * token pair: compaction keeps only the last record. */
                json_t *blob = eb_oauth_blob(s->oauth, 0);

                cp = eb_oauth_wrap(cp, blob);
                json_decref(blob);
        } else {
                json_incref(cp);
        }
        rc = p->sink.publish(p->sink.opaque, s->cfg, evts, n, cp, on_published,
                             s);
        json_decref(cp);
        if (rc)
                on_published(s, rc);
}

static void flush_buffer(struct src *s)
{
        struct eb_event **evts = s->buf;
        size_t cnt = s->buf_cnt, i;

        if (s->prov->newest_first)
                sort_oldest_first(evts, cnt);
        s->flush_cnt = cnt;
        s->flush_oldest_ms = s->flush_newest_ms = 0;
        for (i = 0; i < cnt; i++) {
                int64_t t = evts[i]->time_ms;

                if (t > 0 && (!s->flush_oldest_ms || t < s->flush_oldest_ms))
                        s->flush_oldest_ms = t;
                if (t > s->flush_newest_ms)
                        s->flush_newest_ms = t;
        }
        s->st.events += cnt;
        s->pub_off = 0;
        publish_next(s);
}

/* The most events a newest-first walk buffers: the source's
 * poll.max_buffered_events, else the poller's default. */
static size_t walk_limit(const struct src *s)
{
        if (s->cfg->max_buffered_events > 0)
                return (size_t)s->cfg->max_buffered_events;
        return (size_t)s->p->opts.max_walk_events;
}

/* The most events a walk gathers before it publishes: a newest-first
 * walk all of its slice; an oldest-first one (Kota), pages that are
 * published in order anyway, at most one publish part. */
static size_t gather_limit(const struct src *s)
{
        size_t lim = walk_limit(s);

        if (!s->prov->newest_first &&
            lim > (size_t)s->p->opts.publish_max_events)
                lim = (size_t)s->p->opts.publish_max_events;
        return lim;
}

/* A walk would hold more than poll.max_buffered_events: drop what it
 * holds (nothing of it was published) and walk a shorter slice from the
 * same checkpoint, as long as the newest part seen held half the cap.
 * @returns 1, or 0 when the slice cannot get shorter. */
static int split_slice(struct src *s, const struct eb_page *page)
{
        size_t cnt = s->buf_cnt + page->events_cnt, i;
        int64_t lo = INT64_MAX, hi = INT64_MIN, t, ms;

        if (!s->prov->newest_first || s->slice_ms <= EB_POLLER_SLICE_MIN_MS)
                return 0;
        for (i = 0; i < cnt; i++) {
                t = i < s->buf_cnt ? s->buf[i]->time_ms
                                   : page->events[i - s->buf_cnt]->time_ms;
                if (t < lo)
                        lo = t;
                if (t > hi)
                        hi = t;
        }
        ms = (int64_t)((double)(hi - lo + 1) * ((double)walk_limit(s) / 2) /
                       (double)cnt);
        if (ms > s->slice_ms / 2)
                ms = s->slice_ms / 2;
        if (ms < EB_POLLER_SLICE_MIN_MS)
                ms = EB_POLLER_SLICE_MIN_MS;
        s->slice_ms = ms;
        s->st.slice_splits++;
        eb_info("poller",
                "source=%s walk holds over %zu events: walking it again "
                "in slices of %llds",
                s->cfg->name, cnt, (long long)(s->slice_ms / 1000));
        walk_reset(s);
        s->page_more = 0;
        src_step(s);
        return 1;
}

/* A slice ended holding @p cnt events: size the next one to hold about
 * half of poll.max_buffered_events. */
static void adapt_slice(struct src *s, size_t cnt)
{
        double want = (double)walk_limit(s) / 2, f;
        int64_t ms;

        if (!s->walk.cut)
                return;
        f = cnt ? want / (double)cnt : 4.0;
        if (f > 4.0)
                f = 4.0;
        if (f < 0.5)
                f = 0.5;
        ms = (int64_t)((double)s->slice_ms * f);
        if (ms < EB_POLLER_SLICE_MIN_MS)
                ms = EB_POLLER_SLICE_MIN_MS;
        if (ms > EB_POLLER_SLICE_MAX_MS)
                ms = EB_POLLER_SLICE_MAX_MS;
        s->slice_ms = ms;
}

static void handle_page(struct src *s, struct eb_page *page)
{
        size_t i;

        s->st.pages++;
        s->walk_pages++;
        if (page->full)
                s->walk_had_full_page = 1;
        if (page->more && s->prov->newest_first && !s->walk_partial &&
            s->buf_cnt + page->events_cnt >= walk_limit(s) &&
            split_slice(s, page))
                return; /* on_response frees the page */
        if (!s->snap_taken) {
                /* Snapshot so a failed publish can roll the walk back to
                 * the first page it has not yet committed. */
                json_decref(s->snap_cp);
                json_decref(s->snap_state);
                s->snap_cp = s->walk.cp ? json_deep_copy(s->walk.cp) : NULL;
                s->snap_state =
                        s->walk.state ? json_deep_copy(s->walk.state) : NULL;
                s->snap_taken = 1;
        }
        s->page_more = page->more;
        s->prov->page_done(&s->walk);
        if (!page->more)
                s->prov->walk_end(&s->walk);

        if (s->buf_cnt + page->events_cnt > s->buf_cap) {
                size_t cap = s->buf_cap ? s->buf_cap : 64;
                while (cap < s->buf_cnt + page->events_cnt)
                        cap *= 2;
                s->buf = eb_xrealloc(s->buf, cap * sizeof(*s->buf));
                s->buf_cap = cap;
        }
        for (i = 0; i < page->events_cnt; i++)
                s->buf[s->buf_cnt++] = page->events[i];
        free(page->events);
        page->events = NULL;
        page->events_cnt = 0;

        if (page->more && s->buf_cnt < gather_limit(s)) {
                /* Newest first: keep walking before publishing anything.
                 * Oldest first (Kota): gather pages up to one part, so a
                 * backlog is not one transaction per page. */
                src_step(s);
                return;
        }
        if (page->more && s->prov->newest_first) {
                s->walk_partial = 1;
                eb_warn("poller",
                        "source=%s walk buffer full (%zu events): publishing "
                        "part of the walk; per-entity order across this "
                        "boundary is not guaranteed",
                        s->cfg->name, s->buf_cnt);
        }
        flush_buffer(s);
}

static void restore_snapshot(struct src *s)
{
        json_decref(s->walk.cp);
        json_decref(s->walk.state);
        s->walk.cp = s->snap_cp;
        s->walk.state = s->snap_state;
        s->snap_cp = s->snap_state = NULL;
}

/* One line per finished walk: what it brought and how long it took. */
static void log_walk(const struct src *s)
{
        char from[40] = "-", to[40] = "-";

        if (s->walk_oldest_ms)
                eb_rfc3339_format(s->walk_oldest_ms, 0, from, sizeof(from));
        if (s->walk_newest_ms)
                eb_rfc3339_format(s->walk_newest_ms, 0, to, sizeof(to));
        eb_info("poller",
                "source=%s walk done: %llu event(s) in %d page(s), event "
                "times %s .. %s, %lld ms",
                s->cfg->name, (unsigned long long)s->walk_events, s->walk_pages,
                from, to, (long long)(eb_mono_ms() - s->walk_started_ms));
}

static void on_published(void *arg, int err)
{
        struct src *s = arg;
        eb_poller_t *p = s->p;
        int cut;

        set_state(s, EB_SRCF_PUBLISHED);
        if (s->removed) {
                src_retired(p, s);
                return;
        }
        if (err) {
                int64_t wait;

                s->st.errors_publish++;
                note_error(s, "publish failed (%s)", strerror(-err));
                buf_clear(s);
                restore_snapshot(s);
                s->snap_taken = 0;
                wait = retry_or_stop(s);
                if (wait < 0)
                        eb_warn("poller",
                                "source=%s publish failed (%s); page will be "
                                "fetched again on the next start",
                                s->cfg->name, strerror(-err));
                else
                        eb_warn("poller",
                                "source=%s publish failed (%s); page will be "
                                "fetched again in %lld ms",
                                s->cfg->name, strerror(-err), (long long)wait);
                return;
        }
        reset_backoff(s);
        if (s->pub_off < s->buf_cnt) {
                if (!src_stopping(s)) {
                        publish_next(s); /* the next part of the buffer */
                        return;
                }
                /* Stopping between parts: the checkpoint stays; the parts
                 * already in Kafka are dropped as duplicates next time. */
                buf_clear(s);
                restore_snapshot(s);
                s->snap_taken = 0;
                set_state(s, EB_SRCF_STOPPED);
                return;
        }
        if (s->walk.cp &&
            !(s->committed_cp && json_equal(s->walk.cp, s->committed_cp)))
                s->st.checkpoints++;
        s->walk_events += s->flush_cnt;
        if (s->flush_oldest_ms &&
            (!s->walk_oldest_ms || s->flush_oldest_ms < s->walk_oldest_ms))
                s->walk_oldest_ms = s->flush_oldest_ms;
        if (s->flush_newest_ms > s->walk_newest_ms)
                s->walk_newest_ms = s->flush_newest_ms;
        if (s->flush_newest_ms > s->st.newest_event_ms)
                s->st.newest_event_ms = s->flush_newest_ms;
        if (s->flush_oldest_ms && (!s->st.oldest_event_ms ||
                                   s->flush_oldest_ms < s->st.oldest_event_ms))
                s->st.oldest_event_ms = s->flush_oldest_ms;
        s->flush_cnt = 0;
        json_decref(s->committed_cp);
        s->committed_cp = s->walk.cp ? json_incref(s->walk.cp) : NULL;
        json_decref(s->snap_cp);
        json_decref(s->snap_state);
        s->snap_cp = s->snap_state = NULL;
        s->snap_taken = 0;
        if (src_stopping(s)) {
                set_state(s, EB_SRCF_STOPPED);
                return;
        }
        if (s->page_more) {
                src_step(s);
                return;
        }
        /* Walk complete. */
        s->st.walks++;
        s->st.last_walk_end_ms = eb_now_ms();
        cut = s->walk.cut;
        adapt_slice(s, (size_t)s->walk_events);
        log_walk(s);
        walk_reset(s);
        set_state(s, EB_SRCF_IDLE);
        if (cut) {
                /* A slice of a backlog: the next one follows at once. */
                src_schedule(s, p->opts.catchup_delay_ms);
        } else if (s->trigger_pending) {
                /* A webhook asked for a poll while this walk ran. */
                s->trigger_pending = 0;
                src_schedule(s, p->opts.catchup_delay_ms);
        } else {
                /* Walks start one interval apart. A walk that took longer
                 * than the interval (a backlog: every page was full) is
                 * followed at once by the next: catch-up mode, until a
                 * walk is quick again. Every walk itself keeps going while
                 * pages are full, so this never skips anything. */
                int64_t took = eb_mono_ms() - s->walk_started_ms;
                int64_t delay = s->cfg->poll_interval_ms - took;
                if (delay < p->opts.catchup_delay_ms)
                        delay = p->opts.catchup_delay_ms;
                src_schedule(s, delay);
        }
        s->walk_had_full_page = 0;
}

/* The host part of a source's base URL ("acme.kommo.com", "127.0.0.1:80"),
 * as a pointer into it and a length; 0 when there is none. */
static size_t url_host(const struct src *s, const char **host)
{
        const char *u =
                s->cfg->base_url ? s->cfg->base_url : s->prov->default_base_url;
        const char *p = u ? strstr(u, "://") : NULL;

        if (!p)
                return 0;
        *host = p + 3;
        return strcspn(*host, "/");
}

/*
 * A 429 is about the host as much as the source: Kommo bans the client's
 * address after repeated 429s, whichever account they came from. Every
 * other source of the same provider on the same host holds its next
 * request as long as the limited one does (counted as a slowdown).
 */
static void host_slowdown(struct src *s, int64_t until_ms)
{
        const char *h, *th;
        size_t n = url_host(s, &h), tn;
        struct src *t;

        if (!n)
                return;
        for (t = s->p->srcs; t; t = t->next) {
                if (t == s || t->removed || t->prov != s->prov)
                        continue;
                tn = url_host(t, &th);
                if (tn != n || strncasecmp(th, h, n))
                        continue;
                if (t->not_before_ms < until_ms) {
                        t->not_before_ms = until_ms;
                        t->st.slowdowns++;
                }
        }
}

/* A request ended without an answer (connection, timeout, a body over
 * http.max_body): back off, or stop when stopping. */
static void on_request_failed(struct src *s, const struct eb_http_result *res)
{
        eb_poller_t *p = s->p;
        int64_t wait;

        /* A body over http.max_body is the upstream's answer being
         * unacceptable, like an unparseable one: a body error. */
        if (res->err == -E2BIG)
                s->st.errors_body++;
        else
                s->st.errors_http++;
        wait = next_backoff(s, p->opts.backoff_min_ms, p->opts.backoff_max_ms);
        note_error(s, "request failed: %s", res->errstr);
        if (!s->st.stuck_since_ms)
                s->st.stuck_since_ms = eb_mono_ms();
        eb_warn("poller",
                "source=%s request failed: %s; retry in "
                "%lldms (stuck for %llds)",
                s->cfg->name, res->errstr, (long long)wait,
                (long long)((eb_mono_ms() - s->st.stuck_since_ms) / 1000));
        if (p->stopping)
                set_state(s, EB_SRCF_STOPPED);
        else
                backoff_retry(s, wait);
}

/* Let the provider read an answer into @p page. */
static void parse_response(struct src *s, const struct eb_http_result *res,
                           struct eb_page *page)
{
        struct eb_response resp;
        char *ct, *ra, *rl;

        memset(&resp, 0, sizeof(resp));
        resp.status = res->status;
        resp.body = res->body;
        resp.body_len = res->body_len;
        /* eb_http_result_header returns a buffer reused by the next call:
         * copy what we need. */
        ct = eb_xstrdup(eb_http_result_header(res, "content-type"));
        ra = eb_xstrdup(eb_http_result_header(res, "retry-after"));
        rl = eb_xstrdup(eb_http_result_header(res, "ratelimit"));
        resp.content_type = ct;
        resp.retry_after = ra;
        resp.ratelimit = rl;
        resp.now_ms = eb_now_ms();
        memset(page, 0, sizeof(*page));
        s->prov->handle_response(&s->walk, &resp, page);
        free(ct);
        free(ra);
        free(rl);
}

/* A page: pause first when the upstream's budget is nearly spent. */
static void on_page_ok(struct src *s, struct eb_page *page)
{
        eb_poller_t *p = s->p;

        if (page->retry_after_ms <= 0 && page->ratelimit_limit > 0 &&
            page->ratelimit_remaining >= 0 && page->ratelimit_reset_ms > 0 &&
            page->ratelimit_remaining <
                    page->ratelimit_limit * p->opts.slowdown_remaining) {
                /* Close: the window's budget is nearly spent. Spread what
                 * is left over the time to reset instead of running into
                 * a 429. */
                double left = page->ratelimit_remaining + 1;
                page->retry_after_ms =
                        (int64_t)((double)page->ratelimit_reset_ms / left) + 1;
        }
        if (page->retry_after_ms > 0) {
                /* The upstream says its budget is nearly spent (Close
                 * RateLimit): pause before the next call. */
                s->not_before_ms = eb_mono_ms() + page->retry_after_ms;
                s->st.slowdowns++;
        }
        handle_page(s, page);
}

static void on_rate_limited(struct src *s, const struct eb_page *page)
{
        eb_poller_t *p = s->p;
        int64_t wait;

        s->st.rate_limited++;
        wait = page->retry_after_ms > 0
                       ? page->retry_after_ms
                       : next_backoff(s, p->opts.backoff_min_ms,
                                      p->opts.backoff_max_ms);
        note_error(s, "rate limited (429): %s", page->detail);
        eb_warn("poller", "source=%s rate limited (429): waiting %lldms (%s)",
                s->cfg->name, (long long)wait, page->detail);
        s->not_before_ms = eb_mono_ms() + wait;
        host_slowdown(s, s->not_before_ms);
        set_state(s, EB_SRCF_WAITING);
        src_schedule(s, wait);
}

/* Banned (@p refused 0) or refused for good (1): stop this source. */
static void on_stop_answer(struct src *s, const struct eb_http_result *res,
                           const struct eb_page *page, int refused)
{
        if (refused) {
                s->st.errors_client++;
                s->st.refused = 1;
        } else {
                s->st.banned = 1;
        }
        set_state(s, EB_SRCF_STOPPED);
        if (refused) {
                eb_error("poller",
                         "source=%s request REFUSED by upstream, which says "
                         "not to repeat it: polling of this source is "
                         "STOPPED (checkpoint kept). Fix the source's "
                         "options and restart or reload. %s",
                         s->cfg->name, page->detail);
                return;
        }
        note_error(s, "banned by upstream (HTTP %ld): stopped", res->status);
        eb_error("poller",
                 "source=%s BANNED by upstream (HTTP %ld): polling "
                 "of this source is STOPPED to avoid a longer ban. "
                 "Check the rate limit and restart or reload. %s",
                 s->cfg->name, res->status, page->detail);
}

static void on_auth_refused(struct src *s, const struct eb_http_result *res)
{
        eb_poller_t *p = s->p;
        int64_t wait;

        s->st.errors_auth++;
        if (s->oauth && res->status == 401) {
                /* Expired or revoked early: renew it (before the same page
                 * is asked again), once. A token just issued and refused
                 * again is an error; after a backoff the source renews
                 * again. */
                int fresh = s->oauth_fresh;

                eb_oauth_invalidate(s->oauth);
                s->oauth_fresh = 0;
                if (!fresh) {
                        eb_info("poller",
                                "source=%s access token refused "
                                "(HTTP 401): renewing it",
                                s->cfg->name);
                        src_step(s);
                        return;
                }
                /* The upstream refuses a token it has just issued: an
                 * error, retried (with a renewal) after the usual growing
                 * backoff. */
                wait = next_backoff(s, p->opts.backoff_min_ms,
                                    p->opts.backoff_max_ms);
                note_error(s, "access token refused right after its "
                              "renewal (HTTP 401)");
                eb_error("poller",
                         "source=%s Kommo refuses the access token "
                         "it has just issued (HTTP 401); renewing "
                         "again in %lld ms",
                         s->cfg->name, (long long)wait);
                backoff_retry(s, wait);
                return;
        }
        wait = next_backoff(s, p->opts.auth_backoff_ms,
                            p->opts.auth_backoff_ms * 4);
        note_error(s, "authentication failed (HTTP %ld)", res->status);
        eb_error("poller",
                 "source=%s authentication failed (HTTP %ld): check "
                 "its credentials; retry in %lldms",
                 s->cfg->name, res->status, (long long)wait);
        backoff_retry(s, wait);
}

/* A 5xx, an unreadable body, another 4xx: back off and ask again. */
static void on_answer_error(struct src *s, const struct eb_http_result *res,
                            const struct eb_page *page)
{
        eb_poller_t *p = s->p;
        int64_t wait;

        if (page->kind == EB_RESP_RETRY)
                s->st.errors_5xx++;
        else if (page->kind == EB_RESP_BAD_BODY)
                s->st.errors_body++;
        else
                s->st.errors_client++;
        wait = next_backoff(s, p->opts.backoff_min_ms, p->opts.backoff_max_ms);
        note_error(s, "HTTP %ld: %s", res->status, page->detail);
        if (!s->st.stuck_since_ms)
                s->st.stuck_since_ms = eb_mono_ms();
        eb_warn("poller",
                "source=%s HTTP %ld: %s; retry in %lldms (stuck for "
                "%llds)",
                s->cfg->name, res->status, page->detail, (long long)wait,
                (long long)((eb_mono_ms() - s->st.stuck_since_ms) / 1000));
        backoff_retry(s, wait);
}

static void on_response(const struct eb_http_result *res, void *opaque)
{
        struct src *s = opaque;
        eb_poller_t *p = s->p;
        struct eb_page page;

        set_state(s, EB_SRCF_FETCHED);
        if (s->removed) {
                /* Retired while this request ran: its answer is dropped
                 * (the checkpoint did not move; a successor fetches it
                 * again). */
                src_retired(p, s);
                return;
        }
        if (res->err) {
                on_request_failed(s, res);
                return;
        }
        parse_response(s, res, &page);
        if (page.kind == EB_RESP_OK) {
                s->st.stuck_since_ms = 0;
                s->oauth_fresh = 0;
        }
        switch (page.kind) {
        case EB_RESP_OK:
                on_page_ok(s, &page);
                break;
        case EB_RESP_RATE_LIMITED:
                on_rate_limited(s, &page);
                break;
        case EB_RESP_BANNED:
                on_stop_answer(s, res, &page, 0);
                break;
        case EB_RESP_REFUSED:
                on_stop_answer(s, res, &page, 1);
                break;
        case EB_RESP_AUTH:
                on_auth_refused(s, res);
                break;
        case EB_RESP_RETRY:
        case EB_RESP_BAD_BODY:
        case EB_RESP_CLIENT_ERROR:
                on_answer_error(s, res, &page);
                break;
        }
        eb_page_fini(&page);
        if (p->stopping && s->state != EB_SRCF_PUBLISHING &&
            s->state != EB_SRCF_STOPPED) {
                evtimer_del(s->timer);
                set_state(s, EB_SRCF_STOPPED);
        }
}

/* ---- Kommo OAuth ------------------------------------------------------ */

static void oauth_persist(struct src *s);

/*
 * A retired incarnation holds a new pair (the platform has spent the old
 * refresh token): never drop it. A successor of the same name (a reload)
 * takes it over and persists it before its first request (it waits for
 * this one: busy_twin). Without one (removed, or its shard handed over),
 * it is persisted from here; the source stays busy meanwhile, so a shard
 * hand-over waits for it. @returns 1 when the source must stay alive.
 */
static int oauth_handover(struct src *s)
{
        struct src *n;

        if (!s->oauth || !eb_oauth_pending(s->oauth))
                return 0;
        n = find(s->p, s->cfg->name);
        if (n && n->oauth && eb_oauth_adopt(n->oauth, s->oauth)) {
                eb_info("poller",
                        "source=%s the restarted source takes over the new "
                        "OAuth token pair",
                        s->cfg->name);
                return 0;
        }
        if (n || s->p->stopping)
                return 0; /* re-authorized successor, or the end */
        oauth_persist(s);
        return s->state == EB_SRCF_PUBLISHING;
}

static void on_oauth_persisted(void *arg, int err)
{
        struct src *s = arg;
        eb_poller_t *p = s->p;
        int64_t wait;

        set_state(s, EB_SRCF_PUBLISHED);
        if (s->removed) {
                if (!err)
                        eb_oauth_persisted(s->oauth);
                else if (oauth_handover(s))
                        return;
                src_retired(p, s);
                return;
        }
        if (err) {
                s->st.errors_publish++;
                note_error(s, "cannot persist the new OAuth token pair (%s)",
                           strerror(-err));
                wait = retry_or_stop(s);
                if (wait < 0)
                        /* Spent upstream and not durable: the next start
                         * has only the previous (now refused) token. */
                        eb_error("poller",
                                 "source=%s the new OAuth token pair could "
                                 "not be persisted (%s) before stopping: the "
                                 "next start will have to be re-authorized "
                                 "(new credentials.refresh_token)",
                                 s->cfg->name, strerror(-err));
                else
                        eb_warn("poller",
                                "source=%s cannot persist the new OAuth token "
                                "pair (%s): it is not used until it is "
                                "durable; retry in %lld ms",
                                s->cfg->name, strerror(-err), (long long)wait);
                return;
        }
        eb_oauth_persisted(s->oauth);
        s->st.oauth_refreshes++;
        s->oauth_fresh = 1;
        reset_backoff(s);
        eb_info("poller", "source=%s OAuth token pair renewed and persisted",
                s->cfg->name);
        if (src_stopping(s)) {
                set_state(s, EB_SRCF_STOPPED);
                return;
        }
        set_state(s, EB_SRCF_WAITING);
        src_step(s);
}

/* Hand the pending pair to the sink inside the source's checkpoint
 * record (its last committed checkpoint, unchanged). */
static void oauth_persist(struct src *s)
{
        eb_poller_t *p = s->p;
        json_t *blob = eb_oauth_blob(s->oauth, 1), *cp;
        struct eb_event **evts;
        int rc;

        if (!blob) {
                eb_error("poller",
                         "source=%s cannot encrypt the new OAuth token pair",
                         s->cfg->name);
                if (s->state == EB_SRCF_STOPPED)
                        return; /* eb_poller_stop(): nothing is retried */
                backoff_retry(s, next_backoff(s, p->opts.backoff_min_ms,
                                              p->opts.backoff_max_ms));
                return;
        }
        cp = eb_oauth_wrap(s->committed_cp, blob);
        json_decref(blob);
        evts = eb_xmalloc(sizeof(*evts)); /* the sink owns it */
        set_state(s, EB_SRCF_PUBLISHING);
        rc = p->sink.publish(p->sink.opaque, s->cfg, evts, 0, cp,
                             on_oauth_persisted, s);
        json_decref(cp);
        if (rc)
                on_oauth_persisted(s, rc);
}

static void on_oauth_response(const struct eb_http_result *res, void *opaque)
{
        struct src *s = opaque;
        eb_poller_t *p = s->p;
        char detail[400];
        int64_t wait, hold;

        set_state(s, EB_SRCF_FETCHED);
        if (s->removed) {
                /* A new pair answered to a retired source goes to its
                 * successor or to Kafka, never nowhere. */
                if (!res->err &&
                    eb_oauth_response(s->oauth, res->status, res->body,
                                      res->body_len, eb_now_ms(), detail,
                                      sizeof(detail)) == EB_OAUTH_OK &&
                    oauth_handover(s))
                        return;
                src_retired(p, s);
                return;
        }
        if (res->err) {
                s->st.errors_http++;
                wait = next_backoff(s, p->opts.backoff_min_ms,
                                    p->opts.backoff_max_ms);
                note_error(s, "OAuth token renewal failed: %s", res->errstr);
                eb_warn("poller",
                        "source=%s OAuth token renewal failed: %s; retry in "
                        "%lld ms",
                        s->cfg->name, res->errstr, (long long)wait);
                if (p->stopping)
                        set_state(s, EB_SRCF_STOPPED);
                else
                        backoff_retry(s, wait);
                return;
        }
        switch (eb_oauth_response(s->oauth, res->status, res->body,
                                  res->body_len, eb_now_ms(), detail,
                                  sizeof(detail))) {
        case EB_OAUTH_REFUSED:
                s->st.errors_auth++;
                s->st.oauth_refused = 1;
                set_state(s, EB_SRCF_STOPPED);
                note_error(s,
                           "OAuth refresh refused (%s): re-authorize and set "
                           "credentials.refresh_token",
                           detail);
                eb_error("poller",
                         "source=%s Kommo REFUSED to renew the OAuth token "
                         "(%s): polling of this source is STOPPED (checkpoint "
                         "kept). Re-authorize the integration in Kommo, put "
                         "the new refresh token in credentials.refresh_token "
                         "and restart or reload.",
                         s->cfg->name, detail);
                return;
        case EB_OAUTH_RETRY:
                if (res->status >= 500 || res->status == 429)
                        s->st.errors_5xx += res->status >= 500;
                else
                        s->st.errors_body++;
                if (res->status == 429)
                        s->st.rate_limited++;
                wait = next_backoff(s, p->opts.backoff_min_ms,
                                    p->opts.backoff_max_ms);
                note_error(s, "OAuth token renewal failed (%s)", detail);
                eb_warn("poller",
                        "source=%s OAuth token renewal failed (%s); retry in "
                        "%lld ms",
                        s->cfg->name, detail, (long long)wait);
                if (p->stopping)
                        set_state(s, EB_SRCF_STOPPED);
                else
                        backoff_retry(s, wait);
                return;
        case EB_OAUTH_OK:
                break;
        }
        if (p->stopping) {
                /* Not persisted: the upstream has spent the old token. */
                eb_info("poller",
                        "source=%s received a new OAuth token pair while "
                        "stopping; persisting it before exit",
                        s->cfg->name);
        }
        hold = eb_oauth_test_hold_ms();
        if (hold > 0 && !p->stopping) {
                s->oauth_hold_ms = eb_mono_ms() + hold;
                eb_warn("poller",
                        "source=%s oauth test hold: new token pair received, "
                        "persisting it in %lld ms",
                        s->cfg->name, (long long)hold);
                set_state(s, EB_SRCF_WAITING);
                src_schedule(s, hold);
                return;
        }
        oauth_persist(s);
}

/* Before a request of an OAuth source: persist a pending pair, or renew
 * an access token that is missing or near its expiry.
 * @returns 1 when that is under way (the page request waits), else 0. */
static int oauth_step(struct src *s)
{
        eb_poller_t *p = s->p;
        struct eb_http_request req;
        const char *headers[3];
        char *url = NULL, *body = NULL;
        const char *base;
        int rc;

        if (eb_oauth_pending(s->oauth)) {
                oauth_persist(s);
                return 1;
        }
        if (eb_oauth_access(s->oauth, eb_now_ms()))
                return 0;
        base = s->cfg->base_url ? s->cfg->base_url : s->prov->default_base_url;
        if (!base || eb_oauth_request(s->oauth, base, &url, &body)) {
                backoff_retry(s, next_backoff(s, p->opts.backoff_min_ms,
                                              p->opts.backoff_max_ms));
                return 1;
        }
        headers[0] = "Content-Type: application/json";
        headers[1] = "Accept: application/json";
        headers[2] = NULL;
        memset(&req, 0, sizeof(req));
        req.url = url;
        req.method = "POST";
        req.body = body;
        req.body_len = strlen(body);
        req.headers = headers;
        req.timeout_ms = s->cfg->timeout_ms;
        req.connect_timeout_ms = s->cfg->connect_timeout_ms;
        req.max_body = 64 * 1024;
        eb_debug("poller", "source=%s POST %s (OAuth token renewal)",
                 s->cfg->name, url);
        rc = eb_http_start(p->http, &req, on_oauth_response, s, &s->xfer_id);
        free(url);
        memset(body, 0, strlen(body));
        free(body);
        if (rc) {
                backoff_retry(s, next_backoff(s, p->opts.backoff_min_ms,
                                              p->opts.backoff_max_ms));
                return 1;
        }
        s->st.requests++;
        set_state(s, EB_SRCF_FETCHING);
        return 1;
}

/* Whatever the next request waits for: a retired twin's request, a
 * rate-limit pause, the OAuth test hold, a token. @returns 1 when it
 * waits (rescheduled), else 0 with a token taken. */
static int src_pace(struct src *s)
{
        int64_t now = eb_mono_ms(), wait;

        if (busy_twin(s) || s->not_before_ms > now ||
            (s->oauth && s->oauth_hold_ms > now))
                s->token_wait_us = 0; /* waits for something else first */
        if (busy_twin(s)) {
                /* The source was restarted (reload, shard moved back)
                 * while its previous incarnation's request still runs:
                 * one request at a time per account, always. */
                set_state(s, EB_SRCF_WAITING);
                src_schedule(s, EB_POLLER_TWIN_WAIT_MS);
                return 1;
        }
        if (s->not_before_ms > now) {
                set_state(s, EB_SRCF_WAITING);
                src_schedule(s, s->not_before_ms - now);
                return 1;
        }
        if (s->oauth && s->oauth_hold_ms > now) {
                set_state(s, EB_SRCF_WAITING);
                src_schedule(s, s->oauth_hold_ms - now);
                return 1;
        }
        wait = take_token(s);
        if (wait > 0) {
                set_state(s, EB_SRCF_WAITING);
                src_schedule(s, wait);
                return 1;
        }
        return 0;
}

/* Begin a walk from the committed checkpoint. @returns 0, or -1 when
 * the source stopped or backs off instead. */
static int walk_start(struct src *s)
{
        eb_poller_t *p = s->p;
        int rc;

        eb_walk_init(&s->walk, s->prov, s->cfg, s->committed_cp, eb_now_ms());
        if (s->prov->newest_first)
                s->walk.slice_ms = s->slice_ms;
        rc = s->prov->walk_begin(&s->walk);
        if (rc == -EINVAL) {
                /* A corrupt checkpoint, or one written by another
                 * provider: starting over could re-publish or skip
                 * a month of events. Stop and say so. */
                eb_walk_fini(&s->walk);
                set_state(s, EB_SRCF_STOPPED);
                eb_error("poller",
                         "source=%s has an unusable checkpoint; "
                         "polling of this source is STOPPED. Fix or "
                         "delete its checkpoint and restart.",
                         s->cfg->name);
                return -1;
        }
        if (rc) {
                eb_error("poller",
                         "source=%s cannot start a walk "
                         "(%s); retrying",
                         s->cfg->name, strerror(-rc));
                eb_walk_fini(&s->walk);
                backoff_retry(s, next_backoff(s, p->opts.backoff_min_ms,
                                              p->opts.backoff_max_ms));
                return -1;
        }
        s->in_walk = 1;
        /* A resumed window cannot be cut any shorter. */
        s->walk_partial = s->walk.resumed;
        s->walk_had_full_page = 0;
        s->walk_started_ms = eb_mono_ms();
        s->walk_pages = 0;
        s->walk_events = 0;
        s->walk_oldest_ms = s->walk_newest_ms = 0;
        if (!s->st.start_ms)
                s->st.start_ms = s->walk.start_ms;
        return 0;
}

/* Advance the source: begin a walk if needed, then send the next request
 * once the rate limit allows. */
static void src_step(struct src *s)
{
        eb_poller_t *p = s->p;
        struct eb_http_request req;
        char *url = NULL, *auth = NULL;
        const char *headers[3];
        int rc;

        if (s->state == EB_SRCF_STOPPED || p->stopping || s->removed || busy(s))
                return;
        if (src_pace(s))
                return;
        if (s->oauth && oauth_step(s))
                return; /* renewing or persisting the token pair first */
        if (!s->in_walk && walk_start(s))
                return;
        rc = s->prov->next_request(&s->walk, &url, &auth);
        if (rc) {
                eb_error("poller", "source=%s cannot build a request (%s)",
                         s->cfg->name, strerror(-rc));
                walk_reset(s);
                backoff_retry(s, next_backoff(s, p->opts.backoff_min_ms,
                                              p->opts.backoff_max_ms));
                return;
        }
        if (s->oauth) {
                /* The adapter knows only credentials.token: send the
                 * current OAuth access token instead. */
                if (auth) {
                        memset(auth, 0, strlen(auth));
                        free(auth);
                }
                auth = eb_auth_bearer(eb_oauth_access(s->oauth, eb_now_ms()));
        }
        headers[0] = auth;
        headers[1] = "Accept: application/json";
        headers[2] = NULL;
        memset(&req, 0, sizeof(req));
        req.url = url;
        req.headers = auth ? headers : headers + 1;
        req.timeout_ms = s->cfg->timeout_ms;
        req.connect_timeout_ms = s->cfg->connect_timeout_ms;
        req.max_body = s->cfg->max_body;
        eb_debug("poller", "source=%s GET %s", s->cfg->name, url);
        rc = eb_http_start(p->http, &req, on_response, s, &s->xfer_id);
        free(url);
        if (auth) {
                /* Scrub the credential from the heap block before free. */
                memset(auth, 0, strlen(auth));
                free(auth);
        }
        if (rc) {
                backoff_retry(s, next_backoff(s, p->opts.backoff_min_ms,
                                              p->opts.backoff_max_ms));
                return;
        }
        s->st.requests++;
        set_state(s, EB_SRCF_FETCHING);
}

int eb_poller_trigger(eb_poller_t *p, const char *name)
{
        struct src *s = find(p, name);

        if (!s)
                return -ENOENT;
        if (s->state == EB_SRCF_STOPPED)
                return 0;
        if (s->state == EB_SRCF_IDLE) {
                src_schedule(s, 0); /* the token bucket still applies */
        } else {
                s->trigger_pending = 1; /* coalesced: one walk follows */
        }
        return 0;
}

void eb_poller_stop(eb_poller_t *p)
{
        struct src *s;

        p->stopping = 1;
        for (s = p->srcs; s; s = s->next) {
                if (s->oauth && eb_oauth_pending(s->oauth) && !s->removed &&
                    !busy(s)) {
                        /* Spent upstream already: make it durable. */
                        evtimer_del(s->timer);
                        oauth_persist(s);
                        continue;
                }
                if (!busy(s)) {
                        evtimer_del(s->timer);
                        set_state(s, EB_SRCF_STOPPED);
                }
        }
}

int eb_poller_idle(const eb_poller_t *p)
{
        const struct src *s;

        for (s = p->srcs; s; s = s->next)
                if (busy(s))
                        return 0;
        return 1;
}

const struct eb_source_stats *eb_poller_stats(const eb_poller_t *p,
                                              const char *name)
{
        const struct src *s = find(p, name);

        return s ? &s->st : NULL;
}

static json_t *time_or_null(int64_t ms)
{
        char buf[40];

        if (ms <= 0)
                return json_null();
        eb_rfc3339_format(ms, 0, buf, sizeof(buf));
        return json_string(buf);
}

json_t *eb_poller_status(const eb_poller_t *p)
{
        json_t *arr = json_array();
        const struct src *s;
        int64_t now = eb_now_ms();

        for (s = p->srcs; s; s = s->next) {
                const struct eb_source_stats *st = &s->st;
                char red[sizeof(st->last_error) + 64];
                json_t *o;

                if (s->removed)
                        continue;
                o = json_object();
                json_object_set_new(o, "name", json_string(s->cfg->name));
                json_object_set_new(o, "provider", json_string(s->prov->name));
                json_object_set_new(
                        o, "state",
                        json_string(eb_source_state_name(st->state)));
                json_object_set_new(o, "oldest_event_time",
                                    time_or_null(st->oldest_event_ms));
                json_object_set_new(o, "newest_event_time",
                                    time_or_null(st->newest_event_ms));
                json_object_set_new(o, "backfill_target",
                                    time_or_null(st->start_ms));
                json_object_set_new(
                        o, "lag_seconds",
                        st->newest_event_ms > 0
                                ? json_integer((now - st->newest_event_ms) /
                                               1000)
                                : json_null());
                json_object_set_new(o, "next_poll",
                                    s->state == EB_SRCF_STOPPED
                                            ? json_null()
                                            : time_or_null(st->next_poll_ms));
                json_object_set_new(o, "last_walk_end",
                                    time_or_null(st->last_walk_end_ms));
                eb_log_redact(st->last_error, red, sizeof(red));
                json_object_set_new(o, "last_error",
                                    red[0] ? json_string(red) : json_null());
                json_object_set_new(o, "last_error_time",
                                    time_or_null(st->last_error_ms));
                json_object_set_new(o, "walks",
                                    json_integer((json_int_t)st->walks));
                json_object_set_new(o, "polls",
                                    json_integer((json_int_t)st->requests));
                json_object_set_new(o, "events",
                                    json_integer((json_int_t)st->events));
                if (s->oauth) {
                        json_object_set_new(
                                o, "oauth",
                                json_string(st->oauth_refused
                                                    ? "refused: re-authorize"
                                                    : "ok"));
                        json_object_set_new(
                                o, "oauth_refreshes",
                                json_integer((json_int_t)st->oauth_refreshes));
                }
                json_array_append_new(arr, o);
        }
        return arr;
}

int eb_poller_oauth_refused(const eb_poller_t *p, char *buf, size_t size)
{
        const struct src *s;
        size_t o = 0;
        int n = 0;

        if (size)
                buf[0] = '\0';
        for (s = p->srcs; s; s = s->next) {
                if (s->removed || !s->st.oauth_refused)
                        continue;
                if (size > o) {
                        int w = snprintf(buf + o, size - o, "%s%s",
                                         n ? ", " : "", s->cfg->name);
                        if (w > 0)
                                o += (size_t)w;
                }
                n++;
        }
        return n;
}

json_t *eb_poller_checkpoint(const eb_poller_t *p, const char *name)
{
        const struct src *s = find(p, name);

        return s ? s->committed_cp : NULL;
}

void eb_poller_foreach(const eb_poller_t *p,
                       void (*fn)(const char *name, const char *provider,
                                  const struct eb_source_stats *st,
                                  void *opaque),
                       void *opaque)
{
        const struct src *s;

        for (s = p->srcs; s; s = s->next)
                if (!s->removed)
                        fn(s->cfg->name, s->cfg->provider, &s->st, opaque);
}

void eb_poller_free(eb_poller_t *p)
{
        if (!p)
                return;
        while (p->srcs) {
                struct src *s = p->srcs;
                p->srcs = s->next;
                if (s->state == EB_SRCF_FETCHING)
                        eb_http_cancel(p->http, s->xfer_id);
                src_free(s);
        }
        free(p);
}
