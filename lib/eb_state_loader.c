/*
 * eb_state_loader.c: applies state records to the in-memory state (dedupe
 * ids, checkpoints), settling each writer session's transactions from the
 * stamps. Pure: the records come from eb_state_restore.c (or a test).
 * Runs on the thread that restores.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_json.h"
#include "eb_state.h"
#include "eb_util.h"

#define MOD "state"

/* Garbage records logged before we only count them. */
#define GARBAGE_LOG_MAX 10

/* ---- the loader ---------------------------------------------------------
 *
 * Per session: the transactions whose records were seen but whose outcome
 * no later stamp has decided yet ("pending", normally one), the seq ranges
 * proven aborted, and the lowest and highest seq seen. A stamp (S, P)
 * settles every pending X < S: X == P committed, P < X aborted; X < P is
 * not decided by it (records out of order) and is taken as committed, as
 * read_committed would have shown it only if it was. */

struct pend {
        uint64_t seq;
        struct eb_fp *fps;
        int64_t *times;
        size_t n, cap;
};

struct range {
        uint64_t lo, hi; /* inclusive */
};

struct sess {
        uint64_t id;
        uint64_t min_seq, max_seq;
        uint64_t tail; /* 0: none (set by seen_done) */
        struct pend *pend;
        size_t npend, cappend;
        struct range *aborted;
        size_t naborted, capaborted;
};

struct cand {
        json_t *cp;
        int64_t ts;
        int32_t partition;
        int64_t offset;
};

struct eb_state_loader_s {
        eb_dedupe_t *dd;
        int64_t cutoff_s; /* ids older than this are expired */
        int distrust_tail;
        struct sess *sess;
        size_t nsess, capsess;
        json_t *cands; /* source -> index into cand (as integer) */
        struct cand *cand;
        size_t ncand, capcand;
        int seen_done;
        uint64_t garbage_logged;
        struct eb_state_restore_stats st;
};

eb_state_loader_t *eb_state_loader_new(eb_dedupe_t *dd, int64_t now_s,
                                       int distrust_tail)
{
        eb_state_loader_t *ld = eb_xcalloc(1, sizeof(*ld));
        int64_t window = eb_dedupe_window(dd);

        ld->dd = dd;
        ld->cutoff_s = window > 0 ? now_s - window : INT64_MIN;
        ld->distrust_tail = distrust_tail;
        ld->cands = json_object();
        return ld;
}

static struct sess *sess_find(eb_state_loader_t *ld, uint64_t id)
{
        size_t i;

        for (i = 0; i < ld->nsess; i++)
                if (ld->sess[i].id == id)
                        return &ld->sess[i];
        return NULL;
}

static struct sess *sess_get(eb_state_loader_t *ld, uint64_t id)
{
        struct sess *s = sess_find(ld, id);

        if (s)
                return s;
        if (ld->nsess == ld->capsess) {
                ld->capsess = ld->capsess ? ld->capsess * 2 : 4;
                ld->sess =
                        eb_xrealloc(ld->sess, ld->capsess * sizeof(*ld->sess));
        }
        s = &ld->sess[ld->nsess++];
        memset(s, 0, sizeof(*s));
        s->id = id;
        return s;
}

static int is_aborted(const struct sess *s, uint64_t seq)
{
        size_t i;

        for (i = s->naborted; i > 0; i--)
                if (seq >= s->aborted[i - 1].lo && seq <= s->aborted[i - 1].hi)
                        return 1;
        return 0;
}

static void add_aborted(struct sess *s, uint64_t lo, uint64_t hi)
{
        struct range *last;

        if (lo > hi)
                return;
        last = s->naborted ? &s->aborted[s->naborted - 1] : NULL;
        if (last && lo <= last->hi + 1 && hi + 1 >= last->lo) {
                /* the usual case: the same or an adjacent range again */
                if (lo < last->lo)
                        last->lo = lo;
                if (hi > last->hi)
                        last->hi = hi;
                return;
        }
        if (s->naborted == s->capaborted) {
                s->capaborted = s->capaborted ? s->capaborted * 2 : 4;
                s->aborted = eb_xrealloc(s->aborted,
                                         s->capaborted * sizeof(*s->aborted));
        }
        s->aborted[s->naborted].lo = lo;
        s->aborted[s->naborted].hi = hi;
        s->naborted++;
}

static void insert_ids(eb_state_loader_t *ld, const struct eb_fp *fps,
                       const int64_t *times, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++) {
                if (times[i] < ld->cutoff_s) {
                        ld->st.ids_expired++;
                        continue;
                }
                if (eb_dedupe_insert(ld->dd, &fps[i], times[i]))
                        ld->st.ids++;
                else
                        ld->st.ids_duplicate++;
        }
}

static void pend_free(struct pend *p)
{
        free(p->fps);
        free(p->times);
        memset(p, 0, sizeof(*p));
}

static void pend_append(struct pend *p, const struct eb_fp *fps,
                        const int64_t *times, size_t n)
{
        if (!n)
                return;
        if (p->n + n > p->cap) {
                size_t cap = p->cap ? p->cap : 64;

                while (cap < p->n + n)
                        cap *= 2;
                p->fps = eb_xrealloc(p->fps, cap * sizeof(*p->fps));
                p->times = eb_xrealloc(p->times, cap * sizeof(*p->times));
                p->cap = cap;
        }
        memcpy(p->fps + p->n, fps, n * sizeof(*fps));
        memcpy(p->times + p->n, times, n * sizeof(*times));
        p->n += n;
}

/* Settle pending transaction @p i of @p s and remove it. */
static void pend_settle(eb_state_loader_t *ld, struct sess *s, size_t i,
                        int committed)
{
        struct pend *p = &s->pend[i];

        if (committed) {
                insert_ids(ld, p->fps, p->times, p->n);
        } else {
                ld->st.ids_aborted += p->n;
                ld->st.txns_aborted++;
                add_aborted(s, p->seq, p->seq);
        }
        pend_free(p);
        s->pend[i] = s->pend[s->npend - 1];
        s->npend--;
}

static void log_garbage(eb_state_loader_t *ld, const char *what)
{
        ld->st.garbage++;
        if (ld->garbage_logged++ < GARBAGE_LOG_MAX)
                eb_warn(MOD, "restore: skipping an undecodable %s record",
                        what);
}

int eb_state_loader_seen(eb_state_loader_t *ld, const void *value, size_t len)
{
        struct eb_state_txn txn;
        struct eb_fp *fps = NULL;
        int64_t *times = NULL;
        struct sess *s;
        size_t n = 0, i;
        int found = 0;

        ld->st.records++;
        if (eb_state_seen_decode(value, len, &txn, &fps, &times, &n)) {
                log_garbage(ld, "seen");
                return -EINVAL;
        }
        ld->st.seen_records++;
        s = sess_get(ld, txn.session);
        if (!s->min_seq || txn.seq < s->min_seq)
                s->min_seq = txn.seq;

        /* The stamp settles the pending transactions before it. */
        for (i = 0; i < s->npend;) {
                uint64_t x = s->pend[i].seq;

                if (x >= txn.seq) {
                        i++;
                        continue;
                }
                if (x < txn.prev)
                        ld->st.assumed_committed++;
                pend_settle(ld, s, i, x <= txn.prev);
        }
        add_aborted(s, txn.prev + 1, txn.seq - 1);

        if (txn.seq <= s->max_seq) {
                /* Another part of a pending transaction, or late. */
                for (i = 0; i < s->npend; i++) {
                        if (s->pend[i].seq == txn.seq) {
                                pend_append(&s->pend[i], fps, times, n);
                                found = 1;
                                break;
                        }
                }
                if (!found) {
                        if (is_aborted(s, txn.seq)) {
                                ld->st.ids_aborted += n;
                        } else {
                                ld->st.assumed_committed++;
                                insert_ids(ld, fps, times, n);
                        }
                        found = 1;
                }
        }
        if (!found) {
                struct pend *p;

                if (s->npend == s->cappend) {
                        s->cappend = s->cappend ? s->cappend * 2 : 2;
                        s->pend = eb_xrealloc(s->pend,
                                              s->cappend * sizeof(*s->pend));
                }
                p = &s->pend[s->npend++];
                memset(p, 0, sizeof(*p));
                p->seq = txn.seq;
                pend_append(p, fps, times, n);
                s->max_seq = txn.seq;
        }
        free(fps);
        free(times);
        return 0;
}

void eb_state_loader_seen_done(eb_state_loader_t *ld)
{
        size_t k;

        if (ld->seen_done)
                return;
        ld->seen_done = 1;
        for (k = 0; k < ld->nsess; k++) {
                struct sess *s = &ld->sess[k];

                while (s->npend) {
                        size_t i, hi = 0;

                        for (i = 1; i < s->npend; i++)
                                if (s->pend[i].seq > s->pend[hi].seq)
                                        hi = i;
                        if (s->pend[hi].seq != s->max_seq) {
                                /* below the tail, yet undecided */
                                ld->st.assumed_committed++;
                                pend_settle(ld, s, hi, 1);
                                continue;
                        }
                        s->tail = s->max_seq;
                        ld->st.tails++;
                        if (ld->distrust_tail) {
                                ld->st.ids_unconfirmed += s->pend[hi].n;
                                pend_free(&s->pend[hi]);
                                s->pend[hi] = s->pend[s->npend - 1];
                                s->npend--;
                        } else {
                                pend_settle(ld, s, hi, 1);
                        }
                }
        }
}

enum txn_status {
        ST_COMMITTED,
        ST_ABORTED,
        ST_TAIL,    /* last of its session, unconfirmed */
        ST_UNKNOWN, /* no .seen record tells (expired, or none) */
};

static enum txn_status status_of(const eb_state_loader_t *ld,
                                 const struct eb_state_txn *txn)
{
        const struct sess *s;

        if (!txn->session)
                return ST_UNKNOWN;
        s = sess_find((eb_state_loader_t *)ld, txn->session);
        if (!s)
                return ST_UNKNOWN;
        if (is_aborted(s, txn->seq))
                return ST_ABORTED;
        if (s->tail && txn->seq == s->tail)
                return ST_TAIL;
        if (txn->seq > s->max_seq)
                return ST_TAIL; /* newer than any .seen record: unconfirmed */
        if (txn->seq < s->min_seq)
                return ST_UNKNOWN;
        return ST_COMMITTED;
}

int eb_state_loader_checkpoint(eb_state_loader_t *ld, const void *key,
                               size_t key_len, const void *value, size_t len,
                               int32_t partition, int64_t offset)
{
        struct eb_state_txn txn;
        struct cand *c;
        json_t *idx;
        json_t *cp = NULL;
        char *source = NULL;
        int64_t ts = 0;

        ld->st.records++;
        if (!value || !len) {
                /* tombstone: the source's checkpoint is gone */
                char *k;

                if (!key || !key_len) {
                        log_garbage(ld, "checkpoint");
                        return -EINVAL;
                }
                k = eb_xmalloc(key_len + 1);
                memcpy(k, key, key_len);
                k[key_len] = '\0';
                idx = json_object_get(ld->cands, k);
                if (idx) {
                        c = &ld->cand[json_integer_value(idx)];
                        json_decref(c->cp);
                        c->cp = NULL;
                }
                free(k);
                ld->st.checkpoint_records++;
                return 0;
        }
        if (eb_state_checkpoint_decode(value, len, &source, &cp, &ts, &txn) ||
            (key &&
             (key_len != strlen(source) || memcmp(key, source, key_len)))) {
                free(source);
                json_decref(cp);
                log_garbage(ld, "checkpoint");
                return -EINVAL;
        }
        ld->st.checkpoint_records++;
        switch (status_of(ld, &txn)) {
        case ST_ABORTED:
                ld->st.checkpoints_aborted++;
                goto out;
        case ST_TAIL:
                if (ld->distrust_tail) {
                        ld->st.checkpoints_unconfirmed++;
                        goto out;
                }
                break;
        case ST_COMMITTED:
        case ST_UNKNOWN:
                break;
        }
        idx = json_object_get(ld->cands, source);
        if (!idx) {
                if (ld->ncand == ld->capcand) {
                        ld->capcand = ld->capcand ? ld->capcand * 2 : 16;
                        ld->cand =
                                eb_xrealloc(ld->cand, ld->capcand * sizeof(*c));
                }
                c = &ld->cand[ld->ncand];
                memset(c, 0, sizeof(*c));
                json_object_set_new(ld->cands, source,
                                    json_integer((json_int_t)ld->ncand));
                ld->ncand++;
        } else {
                c = &ld->cand[json_integer_value(idx)];
                /*
                 * Later in the same partition is later; across partitions
                 * (the topic was repartitioned) the record's time decides.
                 */
                if (c->cp && c->partition != partition && ts < c->ts)
                        goto out;
        }
        json_decref(c->cp);
        c->cp = cp;
        cp = NULL;
        c->ts = ts;
        c->partition = partition;
        c->offset = offset;
out:
        free(source);
        json_decref(cp);
        return 0;
}

void eb_state_loader_finish(eb_state_loader_t *ld, json_t *checkpoints_out,
                            struct eb_state_restore_stats *st)
{
        const char *source;
        json_t *idx;
        int64_t ms = st ? st->ms : 0;

        eb_state_loader_seen_done(ld);
        ld->st.checkpoints = 0;
        json_object_foreach(ld->cands, source, idx)
        {
                struct cand *c = &ld->cand[json_integer_value(idx)];

                if (!c->cp)
                        continue;
                if (checkpoints_out)
                        json_object_set(checkpoints_out, source, c->cp);
                ld->st.checkpoints++;
        }
        if (st) {
                *st = ld->st;
                st->ms = ms;
        }
}

void eb_state_loader_free(eb_state_loader_t *ld)
{
        size_t i, j;

        if (!ld)
                return;
        for (i = 0; i < ld->nsess; i++) {
                for (j = 0; j < ld->sess[i].npend; j++)
                        pend_free(&ld->sess[i].pend[j]);
                free(ld->sess[i].pend);
                free(ld->sess[i].aborted);
        }
        free(ld->sess);
        for (i = 0; i < ld->ncand; i++)
                json_decref(ld->cand[i].cp);
        free(ld->cand);
        json_decref(ld->cands);
        free(ld);
}
