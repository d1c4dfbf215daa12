/*
 * store.c: accounts, the event store and its indexes, and the ground truth.
 *
 * Per account, events live in one array in creation order, which is also
 * created-time order because generated times are forced monotonic; Kommo
 * and Kota windows are binary searches on it. Close keeps a second array in
 * date_updated order: consolidation gives an event a new, newest version,
 * so it moves to the end of that array (recent events sit near the end,
 * which keeps the move cheap). Every version ever produced is kept for the
 * ground truth and never freed before shutdown, so rendered JSON can be
 * handed to responses without copies going stale.
 */
#include "sim.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_time.h"
#include "eb_util.h"

static const char *const prov_names[SIM_NPROV] = {"kommo", "close", "kota"};

const char *sim_prov_name(int prov)
{
        return (prov >= 0 && prov < SIM_NPROV) ? prov_names[prov] : "?";
}

int sim_prov_parse(const char *s, size_t n)
{
        int p;

        for (p = 0; p < SIM_NPROV; p++)
                if (strlen(prov_names[p]) == n && !strncmp(s, prov_names[p], n))
                        return p;
        return -1;
}

/* ---- account lifecycle ----------------------------------------------------
 */

struct sim_account *sim_account_new(struct sim *sim, int prov, int index)
{
        struct sim_account *a = eb_xcalloc(1, sizeof(*a));
        unsigned char mac[32];
        char hex[65];
        char *msg;

        a->sim = sim;
        a->prov = prov;
        a->index = index;
        snprintf(a->name, sizeof(a->name), "%s-%d", sim_prov_name(prov), index);
        a->base_path = eb_xasprintf("/%s/%s", sim_prov_name(prov), a->name);
        sim_settings_default(&a->set, prov);
        sim_rng_seed(&a->gen, sim->seed, a->name);
        msg = eb_xasprintf("faults:%s", a->name);
        sim_rng_seed(&a->frng, sim->seed, msg);
        free(msg);
        switch (prov) {
        case SIM_KOMMO:
                a->dflt_credential = eb_xasprintf("kommo-token-%s", a->name);
                a->dflt_secret = eb_xasprintf("kommo-hook-%s", a->name);
                break;
        case SIM_CLOSE:
                a->dflt_credential = eb_xasprintf("close-key-%s", a->name);
                msg = eb_xasprintf("%llu:%s", (unsigned long long)sim->seed,
                                   a->name);
                if (eb_hmac_sha256("evbridge-sim", 12, msg, strlen(msg), mac) <
                    0)
                        memset(mac, 0x5a, sizeof(mac));
                free(msg);
                eb_hex_encode(mac, sizeof(mac), hex);
                a->dflt_secret = eb_xstrdup(hex);
                break;
        default:
                a->dflt_credential = eb_xasprintf("pk_test_%s", a->name);
                a->dflt_secret = eb_xasprintf("whsec_%s", a->name);
                break;
        }
        a->ids.cap = 1024;
        a->ids.slots = eb_xcalloc(a->ids.cap, sizeof(*a->ids.slots));
        a->cum = eb_xcalloc(1, sizeof(*a->cum));
        return a;
}

static void sim_evt_free(struct sim_event *evt)
{
        free(evt->id);
        free(evt->type);
        free(evt->eid);
        free(evt->hook);
        free(evt->c_lead_id);
        free(evt->c_request_id);
        free(evt);
}

void sim_account_free(struct sim_account *a)
{
        size_t i;

        if (!a)
                return;
        sim_oauth_free(a);
        for (i = 0; i < a->nvers; i++) {
                free(a->vers[i]->json);
                free(a->vers[i]->alt);
                free(a->vers[i]->version);
                free(a->vers[i]);
        }
        free(a->vers);
        for (i = 0; i < a->nevts; i++)
                sim_evt_free(a->evts[i]);
        free(a->evts);
        free(a->order);
        free(a->cum);
        free(a->ids.slots);
        for (i = 0; i < a->nents; i++) {
                free(a->ents[i].id);
                free(a->ents[i].name);
                json_decref(a->ents[i].snap);
        }
        free(a->ents);
        for (i = 0; a->users && a->users[i]; i++)
                free(a->users[i]);
        free(a->users);
        free(a->kusers);
        free(a->org_id);
        free(a->sub_id);
        free(a->platform_id);
        free(a->rl_ring);
        free(a->ban_ring);
        free(a->base_path);
        free(a->base_url);
        free(a->dflt_credential);
        free(a->dflt_secret);
        sim_settings_fini(&a->set);
        free(a);
}

const char *sim_account_credential(const struct sim_account *a)
{
        return a->set.credential ? a->set.credential : a->dflt_credential;
}

const char *sim_account_secret(const struct sim_account *a)
{
        return a->set.webhook_secret ? a->set.webhook_secret : a->dflt_secret;
}

static int64_t next_gap_ms(struct sim_account *a)
{
        /* Arrivals are deterministic, evenly spaced at 1/rate with +-50%
         * jitter from the account's own stream. */
        double base = 1000.0 / a->set.rate;
        double j = 0.5 + sim_rng_unit(&a->gen);
        int64_t gap = (int64_t)(base * j);

        return gap < 1 ? 1 : gap;
}

void sim_account_start(struct sim_account *a, int64_t now_ms)
{
        int64_t n = a->set.backlog, span = a->set.backlog_span_ms, i;

        a->base_url = eb_xasprintf("%s%s", a->sim->origin, a->base_path);
        switch (a->prov) {
        case SIM_KOMMO:
                sim_kommo_init(a);
                break;
        case SIM_CLOSE:
                sim_close_init(a);
                break;
        default:
                sim_kota_init(a);
                break;
        }
        for (i = 0; i < n; i++) {
                int64_t slot = span / n;
                int64_t t = now_ms - span + (span * i) / n;

                if (slot > 1)
                        t += (int64_t)sim_rng_below(&a->gen, (uint64_t)slot);
                if (t >= now_ms)
                        t = now_ms - 1;
                sim_generate(a, t, 0);
        }
        a->next_due_ms = a->set.rate > 0 ? now_ms + next_gap_ms(a) : 0;
}

void sim_account_tick(struct sim_account *a, int64_t now_ms)
{
        int budget = 100000; /* keep the loop responsive at absurd rates */

        if (a->set.rate <= 0) {
                a->next_due_ms = 0;
                return;
        }
        if (!a->next_due_ms) {
                a->next_due_ms = now_ms + next_gap_ms(a);
                return;
        }
        while (a->next_due_ms <= now_ms && budget-- > 0) {
                sim_generate(a, a->next_due_ms, 1);
                a->next_due_ms += next_gap_ms(a);
        }
        if (a->next_due_ms < now_ms - 1000)
                a->next_due_ms = now_ms; /* fell far behind: do not burst */
}

struct sim_account *sim_find_account(struct sim *sim, int prov,
                                     const char *name, size_t namelen)
{
        size_t i;

        for (i = 0; i < sim->nacct; i++) {
                struct sim_account *a = sim->accts[i];
                if (a->prov == prov && strlen(a->name) == namelen &&
                    !memcmp(a->name, name, namelen))
                        return a;
        }
        return NULL;
}

struct sim_account *sim_find_account_name(struct sim *sim, const char *name)
{
        size_t i;

        for (i = 0; i < sim->nacct; i++)
                if (!strcmp(sim->accts[i]->name, name))
                        return sim->accts[i];
        return NULL;
}

/* ---- id map ---------------------------------------------------------------
 */

static uint64_t id_hash(const char *s)
{
        return eb_fnv1a64(s, strlen(s));
}

static void map_put(struct sim_map *m, struct sim_event *evt)
{
        size_t mask, i;

        if ((m->cnt + 1) * 2 > m->cap) {
                struct sim_event **old = m->slots;
                size_t oldcap = m->cap, j;

                m->cap *= 2;
                m->slots = eb_xcalloc(m->cap, sizeof(*m->slots));
                m->cnt = 0;
                for (j = 0; j < oldcap; j++)
                        if (old[j])
                                map_put(m, old[j]);
                free(old);
        }
        mask = m->cap - 1;
        i = (size_t)id_hash(evt->id) & mask;
        while (m->slots[i])
                i = (i + 1) & mask;
        m->slots[i] = evt;
        m->cnt++;
}

struct sim_event *sim_event_find(struct sim_account *a, const char *id)
{
        size_t mask = a->ids.cap - 1;
        size_t i = (size_t)id_hash(id) & mask;

        while (a->ids.slots[i]) {
                if (!strcmp(a->ids.slots[i]->id, id))
                        return a->ids.slots[i];
                i = (i + 1) & mask;
        }
        return NULL;
}

/* ---- events and versions ----------------------------------------------- */

struct sim_event *sim_event_new(struct sim_account *a, char *id,
                                int64_t created_ms)
{
        struct sim_event *evt = eb_xcalloc(1, sizeof(*evt));

        evt->acct = a;
        evt->id = id;
        evt->created_ms = created_ms;
        evt->seq = a->nevts;
        return evt;
}

void sim_event_publish(struct sim_event *evt)
{
        struct sim_account *a = evt->acct;

        if (a->nevts == a->capevts) {
                a->capevts = a->capevts ? a->capevts * 2 : 1024;
                a->evts = eb_xrealloc(a->evts, a->capevts * sizeof(*a->evts));
                a->cum =
                        eb_xrealloc(a->cum, (a->capevts + 1) * sizeof(*a->cum));
        }
        a->evts[a->nevts] = evt;
        a->cum[a->nevts + 1] = a->cum[a->nevts] + (evt->kota_v1 ? 1 : 0);
        a->nevts++;
        map_put(&a->ids, evt);
        if (a->prov == SIM_CLOSE) {
                if (a->norder == a->caporder) {
                        a->caporder = a->caporder ? a->caporder * 2 : 1024;
                        a->order = eb_xrealloc(a->order,
                                               a->caporder * sizeof(*a->order));
                }
                evt->opos = a->norder;
                a->order[a->norder++] = evt;
        }
        a->st.events++;
}

struct sim_version *sim_version_add(struct sim_event *evt, char *json,
                                    size_t len, char *alt, size_t alt_len,
                                    char *ver, int64_t updated_ms)
{
        struct sim_account *a = evt->acct;
        struct sim_version *v = eb_xcalloc(1, sizeof(*v));
        int published = evt->cur != NULL;

        v->evt = evt;
        v->json = json;
        v->len = len;
        v->alt = alt;
        v->alt_len = alt_len;
        v->version = ver;
        v->updated_ms = updated_ms;
        v->uorder = ++a->next_uorder;
        if (evt->cur)
                evt->cur->superseded = 1;
        evt->cur = v;
        if (a->nvers == a->capvers) {
                a->capvers = a->capvers ? a->capvers * 2 : 1024;
                a->vers = eb_xrealloc(a->vers, a->capvers * sizeof(*a->vers));
        }
        a->vers[a->nvers++] = v;
        a->st.versions++;
        if (published && a->prov == SIM_CLOSE) {
                /* Move to the newest end of the date_updated index. */
                size_t i, pos = evt->opos;

                memmove(&a->order[pos], &a->order[pos + 1],
                        (a->norder - pos - 1) * sizeof(*a->order));
                for (i = pos; i < a->norder - 1; i++)
                        a->order[i]->opos = i;
                a->order[a->norder - 1] = evt;
                evt->opos = a->norder - 1;
                a->st.consolidations++;
        }
        return v;
}

size_t sim_lower_bound_created(struct sim_account *a, int64_t ms)
{
        size_t lo = 0, hi = a->nevts;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (a->evts[mid]->created_ms < ms)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

size_t sim_lower_bound_updated(struct sim_account *a, int64_t ms)
{
        size_t lo = 0, hi = a->norder;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (a->order[mid]->cur->updated_ms < ms)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

size_t sim_lower_bound_uorder(struct sim_account *a, uint64_t u)
{
        size_t lo = 0, hi = a->norder;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (a->order[mid]->cur->uorder < u)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

struct sim_event *sim_generate(struct sim_account *a, int64_t ms, int live)
{
        struct sim_event *evt;

        if (ms < a->last_ms)
                ms = a->last_ms;
        a->last_ms = ms;
        switch (a->prov) {
        case SIM_KOMMO:
                evt = sim_kommo_generate(a, ms);
                break;
        case SIM_CLOSE:
                evt = sim_close_generate(a, ms);
                break;
        default:
                evt = sim_kota_generate(a, ms);
                break;
        }
        if (evt && live && a->sim->hook)
                sim_hook_event(a->sim->hook, evt);
        return evt;
}

size_t sim_consolidate_now(struct sim_account *a, size_t n, int64_t ms,
                           json_t *ids)
{
        struct sim_event **cand = NULL;
        size_t ncand = 0, done = 0, i, scanned = 0;
        int pass;

        if (a->prov != SIM_CLOSE || !n)
                return 0;
        if (ms < a->last_ms)
                ms = a->last_ms;
        a->last_ms = ms;
        cand = eb_xcalloc(n, sizeof(*cand));
        /* Newest first; prefer "updated" events (what Close folds), then
         * any event that is still its entity's latest. */
        for (pass = 0; pass < 2 && ncand < n; pass++) {
                for (i = a->norder; i > 0 && ncand < n; i--) {
                        struct sim_event *evt = a->order[i - 1];
                        size_t j;
                        int dup = 0;

                        if (++scanned > 20000)
                                break;
                        if (!evt->ent || !evt->ent->snap || evt->ent->deleted ||
                            evt->ent->last != evt)
                                continue;
                        if (pass == 0 && strcmp(evt->c_action, "updated"))
                                continue;
                        for (j = 0; j < ncand; j++)
                                dup |= cand[j] == evt;
                        if (!dup)
                                cand[ncand++] = evt;
                }
        }
        for (i = 0; i < ncand; i++) {
                if (sim_close_fold(a, cand[i], ms) == 0) {
                        done++;
                        if (ids)
                                json_array_append_new(ids,
                                                      json_string(cand[i]->id));
                }
        }
        free(cand);
        return done;
}

/* ---- ground truth ------------------------------------------------------- */

void sim_json_str(struct evbuffer *out, const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        const unsigned char *run = p;

        evbuffer_add(out, "\"", 1);
        for (; *p; p++) {
                if (*p >= 0x20 && *p != '"' && *p != '\\')
                        continue;
                evbuffer_add(out, run, (size_t)(p - run));
                if (*p == '"')
                        evbuffer_add(out, "\\\"", 2);
                else if (*p == '\\')
                        evbuffer_add(out, "\\\\", 2);
                else
                        evbuffer_add_printf(out, "\\u%04x", *p);
                run = p + 1;
        }
        evbuffer_add(out, run, (size_t)(p - run));
        evbuffer_add(out, "\"", 1);
}

static void truth_line(struct sim_account *a, struct sim_version *v,
                       struct evbuffer *out)
{
        struct sim_event *evt = v->evt;

        evbuffer_add_printf(out, "{\"provider\":\"%s\",\"account\":",
                            sim_prov_name(a->prov));
        sim_json_str(out, a->name);
        evbuffer_add(out, ",\"id\":", 6);
        sim_json_str(out, evt->id);
        evbuffer_add(out, ",\"version\":", 11);
        if (v->version)
                sim_json_str(out, v->version);
        else
                evbuffer_add(out, "null", 4);
        evbuffer_add(out, ",\"type\":", 8);
        sim_json_str(out, evt->type);
        evbuffer_add(out, ",\"entity_type\":", 15);
        sim_json_str(out, evt->etype);
        evbuffer_add(out, ",\"entity_id\":", 13);
        sim_json_str(out, evt->eid);
        evbuffer_add_printf(
                out,
                ",\"created_ms\":%lld,\"updated_ms\":%lld,"
                "\"visible_ms\":%lld,"
                "\"served\":%s,\"superseded\":%s,%s\"native\":",
                (long long)evt->created_ms, (long long)v->updated_ms,
                (long long)sim_visible_ms(evt, v), v->served ? "true" : "false",
                v->superseded ? "true" : "false",
                v->poison ? "\"poison\":true," : "");
        evbuffer_add(out, v->json, v->len);
        if (a->prov == SIM_KOTA) {
                evbuffer_add(out, ",\"native_v1\":", 13);
                if (v->alt)
                        evbuffer_add(out, v->alt, v->alt_len);
                else
                        evbuffer_add(out, "null", 4);
        }
        evbuffer_add(out, "}\n", 2);
}

void sim_truth_account(struct sim_account *a, struct evbuffer *out,
                       int only_served)
{
        size_t i;

        for (i = 0; i < a->nvers; i++) {
                if (only_served && !a->vers[i]->served)
                        continue;
                truth_line(a, a->vers[i], out);
        }
}

int sim_dump_write(struct sim *sim)
{
        char *tmp = NULL;
        FILE *fp = NULL;
        struct evbuffer *buf = NULL;
        size_t i;
        int rc = -EIO;

        if (!sim->dump_path)
                return 0;
        tmp = eb_xasprintf("%s.tmp", sim->dump_path);
        fp = fopen(tmp, "w");
        if (!fp) {
                rc = -errno;
                eb_error(SIM_MOD, "dump: cannot open %s: %s", tmp,
                         strerror(errno));
                goto out;
        }
        buf = evbuffer_new();
        for (i = 0; i < sim->nacct; i++) {
                size_t len;

                sim_truth_account(sim->accts[i], buf, 0);
                len = evbuffer_get_length(buf);
                if (len && fwrite(evbuffer_pullup(buf, -1), 1, len, fp) != len)
                        goto out;
                evbuffer_drain(buf, len);
        }
        if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
                goto out;
        if (fclose(fp) != 0) {
                fp = NULL;
                goto out;
        }
        fp = NULL;
        if (rename(tmp, sim->dump_path) != 0) {
                rc = -errno;
                eb_error(SIM_MOD, "dump: rename to %s: %s", sim->dump_path,
                         strerror(errno));
                goto out;
        }
        rc = 0;
out:
        if (rc == -EIO)
                eb_error(SIM_MOD, "dump: write to %s failed", tmp);
        if (fp)
                fclose(fp);
        if (buf)
                evbuffer_free(buf);
        free(tmp);
        return rc;
}

int64_t sim_visible_ms(const struct sim_event *evt, const struct sim_version *v)
{
        const struct sim_account *a = evt->acct;
        int64_t t = v ? v->updated_ms : evt->created_ms;
        uint64_t key;

        if (!a->set.late_ms)
                return t;
        /* One draw per entity: an entity's events never overtake each
         * other (Close promises that for one object's events; the
         * simulator assumes it of Kommo and Kota too). */
        key = evt->eid ? eb_fnv1a64(evt->eid, strlen(evt->eid)) : evt->seq;
        return t + (int64_t)(sim_hash_unit(a->sim->seed, a->name, key) *
                             (double)a->set.late_ms);
}

int sim_visible(const struct sim_event *evt, int64_t now_ms)
{
        int64_t t = evt->cur ? evt->cur->updated_ms : evt->created_ms;

        /* older than late_visibility: visible whatever its draw (the
         * common case, without hashing) */
        if (!evt->acct->set.late_ms || t + evt->acct->set.late_ms <= now_ms)
                return 1;
        return sim_visible_ms(evt, evt->cur) <= now_ms;
}

/* Insert @p ins at offset @p at of the NUL-terminated *@p json. */
static void splice(char **json, size_t *len, size_t at, const char *ins)
{
        size_t n = strlen(ins);
        char *out = eb_xmalloc(*len + n + 1);

        memcpy(out, *json, at);
        memcpy(out + at, ins, n);
        memcpy(out + at + n, *json + at, *len - at + 1);
        free(*json);
        *json = out;
        *len += n;
}

/* Corrupt the value of "@p key": (a string or a number) in one rendering.
 * @returns the offset of the change, or -1 when the key is absent. */
static long poison_field(char **json, size_t *len, const char *key)
{
        char pat[64];
        const char *p;
        size_t at;

        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(*json, pat);
        if (!p)
                return -1;
        at = (size_t)(p - *json) + strlen(pat);
        if ((*json)[at] == '"') {
                splice(json, len, at + 1, "not a date: ");
                return (long)at;
        }
        /* a number: make it a string */
        splice(json, len, at, "\"");
        while (at + 1 < *len && (*json)[at + 1] >= '0' &&
               (*json)[at + 1] <= '9')
                at++;
        splice(json, len, at + 1, "\"");
        return (long)at;
}

void sim_poison(struct sim_event *evt)
{
        struct sim_version *v = evt->cur;
        const char *key = evt->acct->prov == SIM_KOMMO   ? "created_at"
                          : evt->acct->prov == SIM_CLOSE ? "date_updated"
                                                         : "created";
        long at;

        if (!v || v->poison)
                return;
        at = poison_field(&v->json, &v->len, key);
        /* Kommo: the with= name goes after the change: two quotes more */
        if (at >= 0 && evt->acct->prov == SIM_KOMMO && v->name_at > (size_t)at)
                v->name_at += 2;
        if (v->alt)
                poison_field(&v->alt, &v->alt_len, key);
        v->poison = 1;
}

/* Neither Kommo (created_at, seconds) nor Kota (created) promises an order
 * among events of the same time: every request sees one unit's events
 * (a second, or a millisecond) in a new order (tie_shuffle), so a unit
 * split across two pages can repeat some of its events and skip others.
 * @p v is sorted by created_ms, either way round. */
void sim_shuffle_ties(struct sim_account *a, struct sim_event **v, size_t n,
                      int64_t unit_ms)
{
        struct sim_rng r;
        char label[80];
        size_t i = 0, j, k;

        snprintf(label, sizeof(label), "ties:%s:%llu", a->name,
                 (unsigned long long)++a->tie_draws);
        sim_rng_seed(&r, a->sim->seed, label);
        while (i < n) {
                for (j = i + 1; j < n && v[j]->created_ms / unit_ms ==
                                                 v[i]->created_ms / unit_ms;
                     j++)
                        ;
                for (k = j - i; k > 1; k--) {
                        size_t x = (size_t)sim_rng_below(&r, k);
                        struct sim_event *t = v[i + k - 1];
                        v[i + k - 1] = v[i + x];
                        v[i + x] = t;
                }
                i = j;
        }
}
