#include "eb_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "eb_json.h"
#include "eb_kafka.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "state"

/* Bytes before the ids in a seen record: magic, version, flags, session. */
#define SEEN_FIXED 12
/* Largest header: fixed part + three 10-byte varints. */
#define SEEN_HEADER_MAX (SEEN_FIXED + 30)
/* Largest encoded id: fingerprint + a 10-byte varint. */
#define SEEN_ID_MAX 26
/* Smallest encoded id: fingerprint + a 1-byte varint. */
#define SEEN_ID_MIN 17
/* Event times are Unix seconds in 0 .. 2^40. */
#define SEEN_TIME_MAX ((int64_t)1 << 40)
/* Garbage records logged before we only count them. */
#define GARBAGE_LOG_MAX 10
/* Default bound of eb_state_ensure_topics(). */
#define ENSURE_TIMEOUT_MS 30000

/* ---- names ------------------------------------------------------------ */

static const char *prefix_of(const struct eb_config *cfg)
{
        return cfg->state_prefix && *cfg->state_prefix ? cfg->state_prefix
                                                       : "evbridge";
}

char *eb_state_topic_checkpoints(const struct eb_config *cfg)
{
        return eb_xasprintf("%s%s", prefix_of(cfg),
                            EB_STATE_CHECKPOINTS_SUFFIX);
}

char *eb_state_topic_seen(const struct eb_config *cfg)
{
        return eb_xasprintf("%s%s", prefix_of(cfg), EB_STATE_SEEN_SUFFIX);
}

int eb_state_partitions(const struct eb_config *cfg)
{
        return cfg->scale_shards > 0 ? cfg->scale_shards + 1 : 1;
}

int64_t eb_state_seen_retention_ms(const struct eb_config *cfg)
{
        if (cfg->dedupe_window_ms <= 0)
                return -1;
        return cfg->dedupe_window_ms + EB_STATE_RETENTION_MARGIN_MS;
}

/* ---- varints ------------------------------------------------------------
 * LEB128 unsigned varints (7 bits per byte, low first, high bit = more)
 * and zigzag for signed values, as in protobuf. */

static size_t put_uvarint(unsigned char *p, uint64_t v)
{
        size_t n = 0;

        while (v >= 0x80) {
                p[n++] = (unsigned char)(v | 0x80);
                v >>= 7;
        }
        p[n++] = (unsigned char)v;
        return n;
}

static size_t uvarint_len(uint64_t v)
{
        size_t n = 1;

        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

/* @returns bytes read, or 0 if truncated or longer than 10 bytes. */
static size_t get_uvarint(const unsigned char *p, const unsigned char *end,
                          uint64_t *v)
{
        uint64_t r = 0;
        size_t i;

        for (i = 0; i < 10 && p + i < end; i++) {
                uint64_t b = p[i] & 0x7f;

                if (i == 9 && p[i] > 1)
                        return 0; /* more than 64 bits */
                r |= b << (7 * i);
                if (!(p[i] & 0x80)) {
                        *v = r;
                        return i + 1;
                }
        }
        return 0;
}

static uint64_t zigzag(int64_t v)
{
        return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static void put_be64(unsigned char *p, uint64_t v)
{
        int i;

        for (i = 7; i >= 0; i--) {
                p[i] = (unsigned char)v;
                v >>= 8;
        }
}

static uint64_t get_be64(const unsigned char *p)
{
        uint64_t v = 0;
        int i;

        for (i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* ---- seen records --------------------------------------------------------
 *
 *   0   2  magic 0xEB 0x5E
 *   2   1  version (1)
 *   3   1  flags (0; a reader refuses any bit it does not know)
 *   4   8  session, big-endian
 *  12      uvarint seq, uvarint prev, uvarint n
 *          n x { 16 bytes fingerprint (hi, lo; big-endian),
 *                zigzag varint time - previous time (the first: - 0) }
 *
 * Nothing may follow the last id. Times are Unix seconds. */

static size_t seen_header(unsigned char *p, const struct eb_state_txn *txn,
                          size_t n)
{
        size_t off = SEEN_FIXED;

        p[0] = EB_STATE_SEEN_MAGIC0;
        p[1] = EB_STATE_SEEN_MAGIC1;
        p[2] = EB_STATE_SEEN_VERSION;
        p[3] = 0;
        put_be64(p + 4, txn->session);
        off += put_uvarint(p + off, txn->seq);
        off += put_uvarint(p + off, txn->prev);
        off += put_uvarint(p + off, (uint64_t)n);
        return off;
}

static size_t seen_id(unsigned char *p, const struct eb_fp *fp, int64_t t,
                      int64_t prev_t)
{
        put_be64(p, fp->hi);
        put_be64(p + 8, fp->lo);
        return 16 + put_uvarint(p + 16, zigzag(t - prev_t));
}

static int times_ok(const int64_t *times, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (times[i] < 0 || times[i] > SEEN_TIME_MAX)
                        return 0;
        return 1;
}

int eb_state_seen_encode(const struct eb_state_txn *txn,
                         const struct eb_fp *fps, const int64_t *times,
                         size_t n, unsigned char **outp, size_t *lenp)
{
        unsigned char *buf;
        size_t off, i;
        int64_t prev_t = 0;

        *outp = NULL;
        *lenp = 0;
        if (!txn->session || (n && (!fps || !times)) || !times_ok(times, n))
                return -EINVAL;
        buf = eb_xmalloc(SEEN_HEADER_MAX + n * SEEN_ID_MAX);
        off = seen_header(buf, txn, n);
        for (i = 0; i < n; i++) {
                off += seen_id(buf + off, &fps[i], times[i], prev_t);
                prev_t = times[i];
        }
        *outp = buf;
        *lenp = off;
        return 0;
}

int eb_state_seen_decode(const void *buf, size_t len, struct eb_state_txn *txn,
                         struct eb_fp **fpsp, int64_t **timesp, size_t *np)
{
        const unsigned char *p = buf;
        const unsigned char *end = p + len;
        const unsigned char *ids;
        struct eb_fp *fps = NULL;
        int64_t *times = NULL;
        uint64_t seq, prev, n, dt;
        int64_t t = 0;
        size_t used, i;

        *fpsp = NULL;
        *timesp = NULL;
        *np = 0;
        if (!buf || len < SEEN_FIXED + 3 || p[0] != EB_STATE_SEEN_MAGIC0 ||
            p[1] != EB_STATE_SEEN_MAGIC1 || p[2] != EB_STATE_SEEN_VERSION ||
            p[3] != 0)
                return -EINVAL;
        memset(txn, 0, sizeof(*txn));
        txn->session = get_be64(p + 4);
        p += SEEN_FIXED;
        used = get_uvarint(p, end, &seq);
        if (!used)
                return -EINVAL;
        p += used;
        used = get_uvarint(p, end, &prev);
        if (!used)
                return -EINVAL;
        p += used;
        used = get_uvarint(p, end, &n);
        if (!used)
                return -EINVAL;
        p += used;
        if (!txn->session || !seq || prev >= seq ||
            n > (uint64_t)(end - p) / SEEN_ID_MIN)
                return -EINVAL;

        /* Walk once to validate, so garbage never half-fills a table. */
        ids = p;
        for (i = 0; i < n; i++) {
                if (end - p < SEEN_ID_MIN)
                        return -EINVAL;
                int64_t d;

                p += 16;
                used = get_uvarint(p, end, &dt);
                if (!used)
                        return -EINVAL;
                p += used;
                d = unzigzag(dt);
                /* 0 <= t <= 2^40 here, so this cannot overflow */
                if (d < -SEEN_TIME_MAX || d > SEEN_TIME_MAX)
                        return -EINVAL;
                t += d;
                if (t < 0 || t > SEEN_TIME_MAX)
                        return -EINVAL;
        }
        if (p != end)
                return -EINVAL;

        if (n) {
                fps = eb_xmalloc((size_t)n * sizeof(*fps));
                times = eb_xmalloc((size_t)n * sizeof(*times));
        }
        p = ids;
        t = 0;
        for (i = 0; i < n; i++) {
                fps[i].hi = get_be64(p);
                fps[i].lo = get_be64(p + 8);
                p += 16;
                p += get_uvarint(p, end, &dt);
                t += unzigzag(dt);
                times[i] = t;
        }
        txn->seq = seq;
        txn->prev = prev;
        *fpsp = fps;
        *timesp = times;
        *np = (size_t)n;
        return 0;
}

/* ---- the writer ------------------------------------------------------ */

struct eb_state_writer_s {
        char *topic_checkpoints;
        char *topic_seen;
        char *seen_key;
        uint64_t session;
        uint64_t last_seq;  /* last seq handed out */
        uint64_t committed; /* seq of the last committed transaction */
        int open;           /* last_seq is open */
};

static uint64_t random_session(void)
{
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
                /* No entropy source: time, pid and an address, mixed. */
                struct eb_fp fp;
                char seed[64];
                int len = snprintf(seed, sizeof(seed), "%lld/%ld/%p",
                                   (long long)eb_now_ms(), (long)getpid(),
                                   (void *)&v);

                eb_fp_murmur3(seed, (size_t)len, 0x5e55u, &fp);
                v = fp.hi ^ ((uint64_t)eb_mono_ms() << 20);
        }
        return v ? v : 1;
}

eb_state_writer_t *eb_state_writer_new(const struct eb_config *cfg,
                                       uint64_t session)
{
        eb_state_writer_t *w = eb_xcalloc(1, sizeof(*w));

        w->topic_checkpoints = eb_state_topic_checkpoints(cfg);
        w->topic_seen = eb_state_topic_seen(cfg);
        w->seen_key = eb_xstrdup(cfg->transactional_id && *cfg->transactional_id
                                         ? cfg->transactional_id
                                         : prefix_of(cfg));
        w->session = session ? session : random_session();
        return w;
}

void eb_state_writer_free(eb_state_writer_t *w)
{
        if (!w)
                return;
        free(w->topic_checkpoints);
        free(w->topic_seen);
        free(w->seen_key);
        free(w);
}

uint64_t eb_state_writer_begin(eb_state_writer_t *w)
{
        w->open = 1;
        return ++w->last_seq;
}

void eb_state_writer_committed(eb_state_writer_t *w)
{
        if (w->open)
                w->committed = w->last_seq;
        w->open = 0;
}

void eb_state_writer_aborted(eb_state_writer_t *w)
{
        w->open = 0;
}

void eb_state_writer_txn(const eb_state_writer_t *w, struct eb_state_txn *txn)
{
        txn->session = w->session;
        txn->seq = w->open ? w->last_seq : 0;
        txn->prev = w->committed;
}

/* ---- checkpoint records ------------------------------------------------ */

int eb_state_checkpoint_record(const eb_state_writer_t *w, const char *source,
                               const json_t *cp, int64_t ts_ms,
                               struct eb_envelope *env)
{
        struct eb_state_txn txn;
        char session[17];
        json_t *root;
        char *value;

        memset(env, 0, sizeof(*env));
        eb_state_writer_txn(w, &txn);
        if (!txn.seq || !source || !*source || !cp)
                return -EINVAL;
        snprintf(session, sizeof(session), "%016" PRIx64, txn.session);
        root = json_pack("{s:i, s:s, s:O, s:I, s:s, s:I, s:I}", "v", 1,
                         "source", source, "checkpoint", (json_t *)cp, "ts",
                         (json_int_t)ts_ms, "w", session, "seq",
                         (json_int_t)txn.seq, "prev", (json_int_t)txn.prev);
        if (!root)
                return -EINVAL;
        value = eb_json_dumps(root);
        json_decref(root);
        if (!value)
                return -EINVAL;
        env->topic = eb_xstrdup(w->topic_checkpoints);
        env->key = eb_xstrdup(source);
        env->key_len = strlen(source);
        env->value = value;
        env->value_len = strlen(value);
        return 0;
}

static int get_u64(const json_t *v, uint64_t *out)
{
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -1;
        *out = (uint64_t)json_integer_value(v);
        return 0;
}

int eb_state_checkpoint_decode(const void *buf, size_t len, char **sourcep,
                               json_t **cpp, int64_t *ts_msp,
                               struct eb_state_txn *txn)
{
        json_t *root = NULL;
        json_t *src, *cp, *ts, *w;
        json_error_t jerr;
        int rc = -EINVAL;

        *sourcep = NULL;
        *cpp = NULL;
        *ts_msp = 0;
        memset(txn, 0, sizeof(*txn));
        if (!buf || !len || len > EB_STATE_MAX_CHECKPOINT)
                return -EINVAL;
        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(root))
                goto out;
        src = json_object_get(root, "source");
        cp = json_object_get(root, "checkpoint");
        ts = json_object_get(root, "ts");
        w = json_object_get(root, "w");
        if (!json_is_string(src) || !*json_string_value(src) || !cp)
                goto out;
        if (json_object_get(root, "v") &&
            (!json_is_integer(json_object_get(root, "v")) ||
             json_integer_value(json_object_get(root, "v")) != 1))
                goto out; /* a format this reader does not know */
        if (ts && !json_is_integer(ts))
                goto out;
        if (w) {
                const char *hex = json_string_value(w);
                char *end = NULL;

                if (!hex || strlen(hex) != 16)
                        goto out;
                errno = 0;
                txn->session = strtoull(hex, &end, 16);
                if (errno || !end || *end || !txn->session ||
                    get_u64(json_object_get(root, "seq"), &txn->seq) ||
                    get_u64(json_object_get(root, "prev"), &txn->prev) ||
                    !txn->seq || txn->prev >= txn->seq) {
                        memset(txn, 0, sizeof(*txn));
                        goto out;
                }
        }
        *sourcep = eb_xstrdup(json_string_value(src));
        *cpp = json_incref(cp);
        *ts_msp = ts ? (int64_t)json_integer_value(ts) : 0;
        rc = 0;
out:
        json_decref(root);
        return rc;
}

/* ---- splitting -------------------------------------------------------- */

static void seen_env(const eb_state_writer_t *w, unsigned char *value,
                     size_t len, struct eb_envelope *env)
{
        memset(env, 0, sizeof(*env));
        env->topic = eb_xstrdup(w->topic_seen);
        env->key = eb_xstrdup(w->seen_key);
        env->key_len = strlen(w->seen_key);
        env->value = (char *)value;
        env->value_len = len;
}

int eb_state_seen_records(const eb_state_writer_t *w, const struct eb_fp *fps,
                          const int64_t *times, size_t n, size_t max_bytes,
                          struct eb_envelope **envsp, size_t *cntp)
{
        struct eb_envelope *envs = NULL;
        struct eb_state_txn txn;
        size_t cnt = 0, cap = 0, i = 0;

        *envsp = NULL;
        *cntp = 0;
        if (!max_bytes)
                max_bytes = EB_STATE_MAX_RECORD;
        eb_state_writer_txn(w, &txn);
        if (!txn.seq || max_bytes < EB_STATE_MIN_RECORD ||
            (n && (!fps || !times)) || !times_ok(times, n))
                return -EINVAL;
        do {
                /*
                 * Take as many ids as fit: the header's count varint is
                 * sized for the ids still to go (an upper bound).
                 */
                size_t hdr = SEEN_FIXED + uvarint_len(txn.seq) +
                             uvarint_len(txn.prev) + uvarint_len(n - i);
                size_t size = hdr, j = i, off;
                int64_t prev_t = 0;
                unsigned char *buf;

                while (j < n) {
                        size_t one =
                                16 + uvarint_len(zigzag(times[j] - prev_t));

                        if (size + one > max_bytes)
                                break;
                        size += one;
                        prev_t = times[j];
                        j++;
                }
                if (j == i && i < n) {
                        /* cannot happen with max_bytes >= MIN_RECORD */
                        for (j = 0; j < cnt; j++)
                                eb_envelope_fini(&envs[j]);
                        free(envs);
                        return -EINVAL;
                }
                buf = eb_xmalloc(size);
                off = seen_header(buf, &txn, j - i);
                prev_t = 0;
                for (; i < j; i++) {
                        off += seen_id(buf + off, &fps[i], times[i], prev_t);
                        prev_t = times[i];
                }
                if (cnt == cap) {
                        cap = cap ? cap * 2 : 4;
                        envs = eb_xrealloc(envs, cap * sizeof(*envs));
                }
                seen_env(w, buf, off, &envs[cnt++]);
        } while (i < n);
        *envsp = envs;
        *cntp = cnt;
        return 0;
}

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

/* ---- topic creation ---------------------------------------------------- */

struct topic_spec {
        char *name;
        int partitions;
        const char *policy;
        char retention[32]; /* "" for none */
};

static void specs_init(const struct eb_config *cfg, int partitions_seen,
                       struct topic_spec spec[2])
{
        int64_t ret = eb_state_seen_retention_ms(cfg);

        memset(spec, 0, 2 * sizeof(*spec));
        spec[0].name = eb_state_topic_checkpoints(cfg);
        /* Sharded: partition 0 for records written before the topics
         * were partitioned, partition n + 1 for shard n's. */
        if (cfg->scale_shards > 0)
                partitions_seen = eb_state_partitions(cfg);
        spec[0].partitions = cfg->scale_shards > 0 ? partitions_seen : 1;
        spec[0].policy = "compact";
        spec[1].name = eb_state_topic_seen(cfg);
        spec[1].partitions = partitions_seen > 0 ? partitions_seen : 1;
        spec[1].policy = "delete";
        snprintf(spec[1].retention, sizeof(spec[1].retention), "%lld",
                 (long long)ret);
}

static void specs_fini(struct topic_spec spec[2])
{
        free(spec[0].name);
        free(spec[1].name);
}

/* "Create them yourself: ..." with every name, partition count and config. */
static void what_to_create(const struct topic_spec spec[2], char *buf,
                           size_t size)
{
        snprintf(buf, size,
                 "create them before starting evbridge (or grant it CREATE "
                 "on the cluster): %s with partitions=%d "
                 "cleanup.policy=%s; %s with partitions=%d "
                 "cleanup.policy=%s retention.ms=%s (e.g. kafka-topics.sh "
                 "--create --topic %s --partitions %d --config "
                 "cleanup.policy=%s; kafka-topics.sh --create --topic %s "
                 "--partitions %d --config cleanup.policy=%s --config "
                 "retention.ms=%s)",
                 spec[0].name, spec[0].partitions, spec[0].policy, spec[1].name,
                 spec[1].partitions, spec[1].policy, spec[1].retention,
                 spec[0].name, spec[0].partitions, spec[0].policy, spec[1].name,
                 spec[1].partitions, spec[1].policy, spec[1].retention);
}

static int ensure_on_mock(rd_kafka_mock_cluster_t *mock,
                          const struct topic_spec spec[2], char *errstr,
                          size_t errstr_size)
{
        int i;

        for (i = 0; i < 2; i++) {
                rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
                        mock, spec[i].name, spec[i].partitions, 1);

                if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                        snprintf(errstr, errstr_size,
                                 "state topic %s: embedded cluster: %s",
                                 spec[i].name, rd_kafka_err2str(err));
                        return -EIO;
                }
                eb_info(MOD,
                        "state topic %s on the embedded cluster "
                        "(partitions=%d; it keeps no topic configs)",
                        spec[i].name, spec[i].partitions);
        }
        return 0;
}

static int is_auth_error(rd_kafka_resp_err_t err);

static int64_t left_ms(int64_t deadline)
{
        int64_t left = deadline - eb_mono_ms();

        return left > 0 ? left : 0;
}

/*
 * Best effort: read the configs of existing topics and complain about the
 * ones that break the contract. Brokers that refuse DescribeConfigs (ACLs)
 * or do not answer in time are only noted: the topics may be fine.
 */
static int check_configs(rd_kafka_t *rk, rd_kafka_queue_t *q,
                         const struct topic_spec spec[2], const int exists[2],
                         const struct eb_config *cfg, int64_t deadline,
                         char *errstr, size_t errstr_size)
{
        rd_kafka_ConfigResource_t *res[2] = {NULL, NULL};
        const rd_kafka_ConfigResource_t **rres;
        rd_kafka_AdminOptions_t *opts = NULL;
        rd_kafka_event_t *ev = NULL;
        char msg[256];
        size_t cnt = 0, nr = 0, i;
        int64_t left = left_ms(deadline);
        int rc = 0;

        for (i = 0; i < 2; i++)
                if (exists[i])
                        res[cnt++] = rd_kafka_ConfigResource_new(
                                RD_KAFKA_RESOURCE_TOPIC, spec[i].name);
        if (!cnt)
                return 0;
        if (left > 5000)
                left = 5000;
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
        (void)rd_kafka_AdminOptions_set_request_timeout(opts, (int)left + 1,
                                                        msg, sizeof(msg));
        rd_kafka_DescribeConfigs(rk, res, cnt, opts, q);
        ev = rd_kafka_queue_poll(q, (int)left + 1000);
        if (!ev || rd_kafka_event_error(ev)) {
                eb_info(MOD,
                        "state topics exist; could not read their configs "
                        "(%s), not checked",
                        ev ? rd_kafka_event_error_string(ev) : "timed out");
                goto out;
        }
        rres = rd_kafka_DescribeConfigs_result_resources(
                rd_kafka_event_DescribeConfigs_result(ev), &nr);
        for (i = 0; i < nr; i++) {
                const char *name = rd_kafka_ConfigResource_name(rres[i]);
                const rd_kafka_ConfigEntry_t **ents;
                const char *policy = NULL;
                const char *retention = NULL;
                int is_seen = !strcmp(name, spec[1].name);
                size_t ne = 0, j;

                if (rd_kafka_ConfigResource_error(rres[i])) {
                        eb_info(MOD, "state topic %s: configs not readable: %s",
                                name,
                                rd_kafka_ConfigResource_error_string(rres[i]));
                        continue;
                }
                ents = rd_kafka_ConfigResource_configs(rres[i], &ne);
                for (j = 0; j < ne; j++) {
                        const char *k = rd_kafka_ConfigEntry_name(ents[j]);

                        if (!strcmp(k, "cleanup.policy"))
                                policy = rd_kafka_ConfigEntry_value(ents[j]);
                        else if (!strcmp(k, "retention.ms"))
                                retention = rd_kafka_ConfigEntry_value(ents[j]);
                }
                if (is_seen && policy && strstr(policy, "compact")) {
                        snprintf(errstr, errstr_size,
                                 "state topic %s has cleanup.policy=%s: it "
                                 "must be delete (compaction would keep one "
                                 "record per transactional.id and forget "
                                 "the dedupe ids): kafka-configs.sh --alter "
                                 "--entity-type topics --entity-name %s "
                                 "--add-config cleanup.policy=delete",
                                 name, policy, name);
                        rc = -EINVAL;
                } else if (!is_seen && policy && !strstr(policy, "compact")) {
                        eb_warn(MOD,
                                "state topic %s has cleanup.policy=%s, not "
                                "compact: checkpoints of quiet sources are "
                                "deleted by retention and such sources "
                                "restart from poll.start",
                                name, policy);
                } else if (is_seen && retention && cfg->dedupe_window_ms > 0) {
                        char *end = NULL;
                        long long r = strtoll(retention, &end, 10);

                        if (end && !*end && r >= 0 && r < cfg->dedupe_window_ms)
                                eb_warn(MOD,
                                        "state topic %s has retention.ms=%s, "
                                        "shorter than the dedupe window "
                                        "(%lld ms): ids older than that are "
                                        "forgotten at restart",
                                        name, retention,
                                        (long long)cfg->dedupe_window_ms);
                }
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        for (i = 0; i < cnt; i++)
                rd_kafka_ConfigResource_destroy(res[i]);
        return rc;
}

int eb_state_topics_exist(rd_kafka_t *rk, const struct eb_config *cfg)
{
        const struct rd_kafka_metadata *md = NULL;
        char *names[2];
        int found = 0, i, j;

        if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        names[0] = eb_state_topic_checkpoints(cfg);
        names[1] = eb_state_topic_seen(cfg);
        for (j = 0; j < 2; j++)
                for (i = 0; i < md->topic_cnt; i++)
                        if (!md->topics[i].err &&
                            !strcmp(md->topics[i].topic, names[j])) {
                                found++;
                                break;
                        }
        rd_kafka_metadata_destroy(md);
        free(names[0]);
        free(names[1]);
        return found == 2;
}

int eb_state_ensure_topics(rd_kafka_t *rk, rd_kafka_mock_cluster_t *mock,
                           const struct eb_config *cfg, int partitions_seen,
                           int timeout_ms, char *errstr, size_t errstr_size)
{
        struct topic_spec spec[2];
        struct eb_kafka_topic_spec kt[2];
        const char *conf_cp[] = {"cleanup.policy", NULL, NULL};
        const char *conf_seen[] = {"cleanup.policy", NULL, "retention.ms", NULL,
                                   NULL};
        rd_kafka_queue_t *q = NULL;
        int64_t deadline;
        char howto[1536];
        char msg[512];
        int exists[2] = {0, 0};
        size_t i;
        int rc = -EIO;

        if (timeout_ms <= 0)
                timeout_ms = ENSURE_TIMEOUT_MS;
        deadline = eb_mono_ms() + timeout_ms;
        specs_init(cfg, partitions_seen, spec);
        what_to_create(spec, howto, sizeof(howto));
        if (mock) {
                rc = ensure_on_mock(mock, spec, errstr, errstr_size);
                goto out;
        }
        conf_cp[1] = spec[0].policy;
        conf_seen[1] = spec[1].policy;
        conf_seen[3] = spec[1].retention;
        memset(kt, 0, sizeof(kt));
        for (i = 0; i < 2; i++) {
                kt[i].name = spec[i].name;
                kt[i].partitions = spec[i].partitions;
                kt[i].configs = i == 0 ? conf_cp : conf_seen;
        }
        rc = eb_kafka_create_topics(rk, kt, 2, timeout_ms, msg, sizeof(msg));
        if (rc) {
                snprintf(errstr, errstr_size, "state topics: %s; %s", msg,
                         howto);
                goto out;
        }
        for (i = 0; i < 2; i++) {
                rd_kafka_resp_err_t err = kt[i].err;

                if (!err) {
                        eb_info(MOD, "created state topic %s (partitions=%d)",
                                kt[i].name, kt[i].partitions);
                        continue;
                }
                if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                        exists[i] = 1;
                        continue;
                }
                snprintf(errstr, errstr_size,
                         "state topic %s: cannot create it: %s (%s); %s",
                         kt[i].name, kt[i].errstr, rd_kafka_err2name(err),
                         howto);
                rc = is_auth_error(err)                    ? -EACCES
                     : err == RD_KAFKA_RESP_ERR__TIMED_OUT ? -ETIMEDOUT
                                                           : -EIO;
                goto out;
        }
        q = rd_kafka_queue_new(rk);
        rc = check_configs(rk, q, spec, exists, cfg, deadline, errstr,
                           errstr_size);
out:
        if (q)
                rd_kafka_queue_destroy(q);
        specs_fini(spec);
        return rc;
}

/* ---- restore: reading the topics ---------------------------------------- */

/* Properties that only a producer understands: left out of the restore
 * consumer's config (librdkafka would warn about each). */
static const char *const producer_only[] = {
        "acks",
        "request.required.acks",
        "enable.idempotence",
        "enable.gapless.guarantee",
        "transactional.id",
        "transaction.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "linger.ms",
        "queue.buffering.max.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "queue.buffering.backpressure.threshold",
        "batch.num.messages",
        "batch.size",
        "compression.codec",
        "compression.type",
        "compression.level",
        "retries",
        "message.send.max.retries",
        "partitioner",
        "sticky.partitioning.linger.ms",
        "request.timeout.ms",
        "queuing.strategy",
        "produce.offset.report",
        "delivery.report.only.error",
        "dr_cb",
        "dr_msg_cb",
        NULL,
};

static int is_producer_only(const char *key)
{
        size_t i;

        for (i = 0; producer_only[i]; i++)
                if (!strcmp(key, producer_only[i]))
                        return 1;
        return 0;
}

static int cset(rd_kafka_conf_t *conf, const char *what, const char *key,
                const char *val, char *errstr, size_t errstr_size)
{
        char why[600];

        if (!eb_kafka_conf_set(conf, what, key, val, why, sizeof(why)))
                return 0;
        snprintf(errstr, errstr_size, "state restore: %s", why);
        return -EINVAL;
}

rd_kafka_t *eb_state_consumer_new(const char *bootstrap,
                                  const struct eb_config *cfg,
                                  const char *group, const char *role,
                                  const char *const *extra,
                                  rd_kafka_conf_t *conf, char *errstr,
                                  size_t errstr_size)
{
        char *client_id = NULL;
        char msg[512];
        rd_kafka_t *rk = NULL;
        size_t i;

        if (!conf)
                conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        /* A default (properties may change it): don't let the broker hold
         * a fetch at the end of a partition for long, start-up waits on
         * it. */
        if (cset(conf, "fetch.wait.max.ms", "fetch.wait.max.ms", "50", errstr,
                 errstr_size))
                goto fail;
        for (i = 0; i < cfg->properties_cnt; i++) {
                const struct eb_kv *kv = &cfg->properties[i];
                char what[300];

                if (!kv->key || !kv->value || is_producer_only(kv->key))
                        continue;
                snprintf(what, sizeof(what), "kafka.properties.%s", kv->key);
                if (cset(conf, what, kv->key, kv->value, errstr, errstr_size))
                        goto fail;
        }
        client_id = eb_xasprintf("evbridge-%s", role);
        if ((bootstrap && *bootstrap &&
             cset(conf, "bootstrap.servers", "bootstrap.servers", bootstrap,
                  errstr, errstr_size)) ||
            cset(conf, "client.id", "client.id", client_id, errstr,
                 errstr_size) ||
            cset(conf, "group.id", "group.id", group, errstr, errstr_size) ||
            cset(conf, "isolation.level", "isolation.level", "read_committed",
                 errstr, errstr_size) ||
            cset(conf, "auto.offset.reset", "auto.offset.reset", "earliest",
                 errstr, errstr_size) ||
            cset(conf, "enable.auto.commit", "enable.auto.commit", "false",
                 errstr, errstr_size) ||
            cset(conf, "enable.auto.offset.store", "enable.auto.offset.store",
                 "false", errstr, errstr_size))
                goto fail;
        for (i = 0; extra && extra[i] && extra[i + 1]; i += 2)
                if (cset(conf, extra[i], extra[i], extra[i + 1], errstr,
                         errstr_size))
                        goto fail;
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, msg, sizeof(msg));
        if (!rk) {
                char red[512];

                eb_log_redact(msg, red, sizeof(red));
                snprintf(errstr, errstr_size, "%s: %s", role, red);
                goto fail;
        }
        conf = NULL; /* rk owns it */
fail:
        if (conf)
                rd_kafka_conf_destroy(conf);
        free(client_id);
        return rk;
}

static rd_kafka_t *restore_client(const char *bootstrap,
                                  const struct eb_config *cfg,
                                  const char *isolation, const char *role,
                                  char *errstr, size_t errstr_size)
{
        const char *extra[] = {"isolation.level", isolation,
                               "enable.partition.eof", "true", NULL};
        char *group = eb_xasprintf(
                "%s-restore", cfg->transactional_id && *cfg->transactional_id
                                      ? cfg->transactional_id
                                      : prefix_of(cfg));
        rd_kafka_t *rk = eb_state_consumer_new(
                bootstrap, cfg, group, role, extra, NULL, errstr, errstr_size);

        free(group);
        return rk;
}

/* One partition to read. */
struct rpart {
        const char *topic; /* borrowed */
        int32_t partition;
        int64_t lo, hi; /* watermarks at start */
        int64_t pos;    /* next offset to read */
        int done;
};

struct rtopic {
        char *name;
        struct rpart *parts;
        int cnt;
        int missing;
        int by_shard; /* partitioned by shard: only 0 and the shard's own */
};

static int is_auth_error(rd_kafka_resp_err_t err)
{
        return err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
               err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED;
}

/* Partition count of @p t (0 and missing=1 if the topic does not exist). */
static int describe_topic(rd_kafka_t *rk, struct rtopic *t, int64_t deadline,
                          char *errstr, size_t errstr_size)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t->name, NULL);
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        int rc = -ETIMEDOUT;
        int i;

        while (left_ms(deadline) > 0) {
                const struct rd_kafka_metadata *md = NULL;
                const struct rd_kafka_metadata_topic *mt;
                int64_t left = left_ms(deadline);
                int leaderless = 0;

                err = rd_kafka_metadata(rk, 0, rkt, &md,
                                        (int)(left > 5000 ? 5000 : left));
                if (err) {
                        if (is_auth_error(err)) {
                                rc = -EACCES;
                                break;
                        }
                        usleep(100 * 1000);
                        continue;
                }
                mt = md->topic_cnt == 1 ? &md->topics[0] : NULL;
                err = mt ? mt->err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                    err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
                        rd_kafka_metadata_destroy(md);
                        t->missing = 1;
                        t->cnt = 0;
                        rc = 0;
                        break;
                }
                if (err) {
                        rd_kafka_metadata_destroy(md);
                        if (is_auth_error(err)) {
                                rc = -EACCES;
                                break;
                        }
                        usleep(100 * 1000); /* e.g. LEADER_NOT_AVAILABLE */
                        continue;
                }
                for (i = 0; i < mt->partition_cnt; i++)
                        if (mt->partitions[i].leader < 0)
                                leaderless = 1;
                if (leaderless || mt->partition_cnt <= 0) {
                        rd_kafka_metadata_destroy(md);
                        usleep(100 * 1000);
                        continue;
                }
                t->cnt = mt->partition_cnt;
                t->parts = eb_xcalloc((size_t)t->cnt, sizeof(*t->parts));
                for (i = 0; i < t->cnt; i++) {
                        t->parts[i].topic = t->name;
                        t->parts[i].partition = mt->partitions[i].id;
                }
                rd_kafka_metadata_destroy(md);
                rc = 0;
                break;
        }
        rd_kafka_topic_destroy(rkt);
        if (rc)
                snprintf(errstr, errstr_size,
                         "state restore: metadata of %s: %s", t->name,
                         rc == -ETIMEDOUT && !err ? "timed out"
                                                  : rd_kafka_err2str(err));
        return rc;
}

static int query_watermarks(rd_kafka_t *rk, struct rtopic *t, int64_t deadline,
                            char *errstr, size_t errstr_size)
{
        int i;

        for (i = 0; i < t->cnt; i++) {
                struct rpart *p = &t->parts[i];
                rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;

                while (left_ms(deadline) > 0) {
                        int64_t left = left_ms(deadline);

                        err = rd_kafka_query_watermark_offsets(
                                rk, t->name, p->partition, &p->lo, &p->hi,
                                (int)(left > 5000 ? 5000 : left));
                        if (!err || is_auth_error(err))
                                break;
                        usleep(100 * 1000);
                }
                if (err) {
                        snprintf(errstr, errstr_size,
                                 "state restore: watermarks of %s[%d]: %s",
                                 t->name, (int)p->partition,
                                 rd_kafka_err2str(err));
                        return is_auth_error(err) ? -EACCES
                               : err == RD_KAFKA_RESP_ERR__TIMED_OUT
                                       ? -ETIMEDOUT
                                       : -EIO;
                }
                p->pos = p->lo;
                p->done = p->hi <= p->lo;
        }
        return 0;
}

/*
 * Have @p rk learn @p topic's leaders now. A consumer handle asks for the
 * metadata of a topic it was not bootstrapped with only on its 1 s topic
 * scan, and a partition without a known leader is not fetched before
 * then: that was a second of every restore. Best effort: reading still
 * works without it, just later.
 */
static void prefetch_metadata(rd_kafka_t *rk, const char *topic,
                              int64_t deadline)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = left_ms(deadline);

        if (!rkt)
                return;
        if (rd_kafka_metadata(rk, 0, rkt, &md,
                              (int)(left > 5000 ? 5000 : left)) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR &&
            md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
}

/* A topic partitioned by shard: keep only partition 0 (records written
 * before it was partitioned) and the shard's own. */
static void keep_shard_parts(struct rtopic *t, int32_t shard_partition)
{
        int i, k = 0;

        for (i = 0; i < t->cnt; i++)
                if (t->parts[i].partition == 0 ||
                    t->parts[i].partition == shard_partition)
                        t->parts[k++] = t->parts[i];
        t->cnt = k;
}

static struct rpart *find_rpart(struct rtopic *t, int32_t partition)
{
        int i;

        for (i = 0; i < t->cnt; i++)
                if (t->parts[i].partition == partition)
                        return &t->parts[i];
        return NULL;
}

static int left_to_read(const struct rtopic *t)
{
        int i, n = 0;

        for (i = 0; i < t->cnt; i++)
                n += !t->parts[i].done;
        return n;
}

/* Read every partition of @p t to its start-time high watermark. */
/* Sharding filters (eb_state_restore_opts): 1 if the record is wanted. */
static int key_in(const char *const *keys, const void *key, size_t len)
{
        size_t i;

        if (!keys)
                return 1;
        for (i = 0; keys[i]; i++)
                if (key && strlen(keys[i]) == len && !memcmp(keys[i], key, len))
                        return 1;
        return 0;
}

static int want_record(const struct eb_state_restore_opts *o,
                       const struct rtopic *t, int is_seen,
                       const rd_kafka_message_t *m)
{
        char name[EB_STATE_KEY_MAX + 1];

        /* The shard's own partition holds only its records, whatever
         * their kind or key: no filter (a per-source record need not be
         * keyed by the bare source name). */
        if (t->by_shard && m->partition == o->shard_partition)
                return 1;
        if (is_seen)
                return key_in(o->seen_keys, m->key, m->key_len);
        if (!o->want_source || !m->key || m->key_len > EB_STATE_KEY_MAX)
                return 1; /* garbage is the loader's to count */
        memcpy(name, m->key, m->key_len);
        name[m->key_len] = '\0';
        return o->want_source(name, o->want_opaque);
}

static int read_topic(rd_kafka_t *rk, struct rtopic *t, int is_seen,
                      eb_state_loader_t *ld,
                      const struct eb_state_restore_opts *o, int64_t deadline,
                      char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *tpl;
        rd_kafka_resp_err_t err;
        int rc = 0;
        int i;

        if (!left_to_read(t))
                return 0;
        /* From the low watermark read at the start, not BEGINNING: a
         * logical offset is resolved by a ListOffsets that librdkafka 2.0.2
         * puts on a 500 ms timer when the partition's leader is not known
         * yet, as it never is on a fresh handle (it was half of every
         * restore, per topic). If the log start moved meanwhile,
         * auto.offset.reset=earliest takes over. */
        tpl = rd_kafka_topic_partition_list_new(t->cnt);
        for (i = 0; i < t->cnt; i++)
                if (!t->parts[i].done)
                        rd_kafka_topic_partition_list_add(tpl, t->name,
                                                          t->parts[i].partition)
                                ->offset = t->parts[i].pos;
        err = rd_kafka_assign(rk, tpl);
        rd_kafka_topic_partition_list_destroy(tpl);
        if (err) {
                snprintf(errstr, errstr_size, "state restore: assign %s: %s",
                         t->name, rd_kafka_err2str(err));
                return -EIO;
        }
        while (left_to_read(t)) {
                rd_kafka_message_t *m;
                struct rpart *p;
                int64_t left = left_ms(deadline);

                if (!left) {
                        char *b = errstr;
                        size_t sz = errstr_size;
                        int n = snprintf(b, sz,
                                         "state restore: timed out reading "
                                         "%s:",
                                         t->name);

                        for (i = 0; i < t->cnt && n > 0 && (size_t)n < sz;
                             i++) {
                                const struct rpart *q = &t->parts[i];

                                if (q->done)
                                        continue;
                                b += n;
                                sz -= (size_t)n;
                                n = snprintf(b, sz,
                                             " partition %d at offset %lld "
                                             "of %lld;",
                                             (int)q->partition,
                                             (long long)q->pos,
                                             (long long)q->hi);
                        }
                        rc = -ETIMEDOUT;
                        break;
                }
                m = rd_kafka_consumer_poll(rk, (int)(left > 200 ? 200 : left));
                if (!m)
                        continue;
                p = m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), t->name)
                            ? find_rpart(t, m->partition)
                            : NULL;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (p) {
                                if (m->offset > p->pos)
                                        p->pos = m->offset;
                                if (p->pos >= p->hi)
                                        p->done = 1;
                        }
                } else if (m->err) {
                        if (is_auth_error(m->err) ||
                            m->err == RD_KAFKA_RESP_ERR__FATAL) {
                                snprintf(errstr, errstr_size,
                                         "state restore: reading %s: %s",
                                         t->name, rd_kafka_message_errstr(m));
                                rc = is_auth_error(m->err) ? -EACCES : -EIO;
                                rd_kafka_message_destroy(m);
                                break;
                        }
                        eb_debug(MOD, "restore: %s: %s", t->name,
                                 rd_kafka_message_errstr(m));
                } else if (p && !p->done && m->offset < p->hi) {
                        if (!want_record(o, t, is_seen, m))
                                ; /* another shard's */
                        else if (is_seen)
                                (void)eb_state_loader_seen(ld, m->payload,
                                                           m->len);
                        else
                                (void)eb_state_loader_checkpoint(
                                        ld, m->key, m->key_len, m->payload,
                                        m->len, m->partition, m->offset);
                        p->pos = m->offset + 1;
                        if (p->pos >= p->hi)
                                p->done = 1;
                }
                rd_kafka_message_destroy(m);
        }
        (void)rd_kafka_assign(rk, NULL);
        return rc;
}

int eb_state_restore(const char *bootstrap, const struct eb_config *cfg,
                     const struct eb_state_restore_opts *opts, eb_dedupe_t *dd,
                     json_t *checkpoints_out, struct eb_state_restore_stats *st,
                     char *errstr, size_t errstr_size)
{
        struct eb_state_restore_opts o;
        struct eb_state_restore_stats stats;
        struct rtopic topics[2];
        eb_state_loader_t *ld = NULL;
        rd_kafka_t *meta = NULL;
        rd_kafka_t *rk = NULL;
        int64_t start = eb_mono_ms();
        int64_t deadline;
        int nparts[2] = {0, 0}, partitioned = 0;
        int rc = -EIO;
        int i;

        memset(&o, 0, sizeof(o));
        if (opts)
                o = *opts;
        if (o.timeout_ms <= 0)
                o.timeout_ms = EB_STATE_RESTORE_TIMEOUT_MS;
        if (o.now_s <= 0)
                o.now_s = eb_now_ms() / 1000;
        deadline = start + o.timeout_ms;
        memset(topics, 0, sizeof(topics));
        memset(&stats, 0, sizeof(stats));
        if (!dd || !json_is_object(checkpoints_out)) {
                snprintf(errstr, errstr_size,
                         "state restore: no table or checkpoint map");
                return -EINVAL;
        }
        topics[0].name = eb_state_topic_seen(cfg);
        topics[1].name = eb_state_topic_checkpoints(cfg);

        /* Watermarks from a read_uncommitted handle: the true ends. */
        meta = restore_client(bootstrap, cfg, "read_uncommitted",
                              "restore-meta", errstr, errstr_size);
        if (!meta) {
                rc = -EINVAL;
                goto out;
        }
        for (i = 0; i < 2; i++) {
                rc = describe_topic(meta, &topics[i], deadline, errstr,
                                    errstr_size);
                if (rc)
                        goto out;
                if (topics[i].missing) {
                        eb_warn(MOD,
                                "state topic %s does not exist: starting "
                                "with no %s",
                                topics[i].name,
                                i == 0 ? "dedupe ids" : "checkpoints");
                        continue;
                }
                nparts[i] = topics[i].cnt;
                if (o.shard_partition > 0 && o.partitions > 1 &&
                    topics[i].cnt == o.partitions) {
                        keep_shard_parts(&topics[i], o.shard_partition);
                        topics[i].by_shard = 1;
                        partitioned |= 1 << i;
                }
                rc = query_watermarks(meta, &topics[i], deadline, errstr,
                                      errstr_size);
                if (rc)
                        goto out;
        }
        rd_kafka_destroy(meta);
        meta = NULL;

        rk = restore_client(bootstrap, cfg, "read_committed", "restore", errstr,
                            errstr_size);
        if (!rk) {
                rc = -EINVAL;
                goto out;
        }
        for (i = 0; i < 2; i++)
                if (!topics[i].missing && left_to_read(&topics[i]))
                        prefetch_metadata(rk, topics[i].name, deadline);
        ld = eb_state_loader_new(dd, o.now_s, o.distrust_tail);
        /* .seen first: checkpoints are judged by what it proves. */
        rc = read_topic(rk, &topics[0], 1, ld, &o, deadline, errstr,
                        errstr_size);
        if (rc)
                goto out;
        eb_state_loader_seen_done(ld);
        rc = read_topic(rk, &topics[1], 0, ld, &o, deadline, errstr,
                        errstr_size);
        if (rc)
                goto out;
        eb_state_loader_finish(ld, checkpoints_out, &stats);
        stats.ms = eb_mono_ms() - start;
        eb_info(MOD,
                "restored %llu ids (%llu expired, %llu of aborted "
                "transactions skipped) and %llu checkpoints from %llu "
                "records in %lld ms%s",
                (unsigned long long)stats.ids,
                (unsigned long long)stats.ids_expired,
                (unsigned long long)stats.ids_aborted,
                (unsigned long long)stats.checkpoints,
                (unsigned long long)stats.records, (long long)stats.ms,
                stats.garbage ? " (some records were undecodable)" : "");
        rc = 0;
out:
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        if (meta)
                rd_kafka_destroy(meta);
        if (ld && rc) {
                eb_state_loader_finish(ld, NULL, &stats);
                stats.ms = eb_mono_ms() - start;
        }
        eb_state_loader_free(ld);
        for (i = 0; i < 2; i++) {
                free(topics[i].name);
                free(topics[i].parts);
        }
        stats.partitions_seen = nparts[0];
        stats.partitions_checkpoints = nparts[1];
        stats.partitioned = partitioned;
        if (st)
                *st = stats;
        return rc;
}
