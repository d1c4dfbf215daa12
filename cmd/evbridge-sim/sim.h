/*
 * evbridge-sim: simulated Kommo, Close and Kota event APIs plus their
 * webhook senders, on one libevent loop (docs/simulator.md).
 *
 * This header is internal to cmd/evbridge-sim. It is an independent
 * implementation of the three platforms: it uses nothing from the
 * evbridge provider adapters, only eb_log, eb_util, eb_buf and eb_time.
 *
 * Ownership in one paragraph: a struct sim owns its accounts; an account
 * owns its entities, events and every version of every event (the ground
 * truth), and nothing is freed before shutdown, so pre-rendered JSON can be
 * referenced by responses and deliveries for the whole run.
 */
#ifndef SIM_H
#define SIM_H

#include <sys/queue.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eb_log.h"

#define SIM_MOD "sim"

enum sim_prov {
        SIM_KOMMO = 0,
        SIM_CLOSE = 1,
        SIM_KOTA = 2,
        SIM_NPROV = 3,
};

/* ---- deterministic randomness ----------------------------------------- */

struct sim_rng {
        uint64_t s[4];
};

/** @brief Seed a stream from the global seed and a label (account name). */
void sim_rng_seed(struct sim_rng *r, uint64_t seed, const char *label);
uint64_t sim_rng_next(struct sim_rng *r);
/** @returns a double in [0, 1). */
double sim_rng_unit(struct sim_rng *r);
/** @returns an integer in [0, n) (0 when n is 0). */
uint64_t sim_rng_below(struct sim_rng *r, uint64_t n);
/** @returns an integer in [lo, hi]. */
int64_t sim_rng_range(struct sim_rng *r, int64_t lo, int64_t hi);
/** @returns index chosen by @p w (n weights, not all zero). */
size_t sim_rng_weighted(struct sim_rng *r, const int *w, size_t n);
/** @returns a stateless hash of (seed, label, n): decisions that must not
 * depend on the order of other random draws. */
uint64_t sim_hash3(uint64_t seed, const char *label, uint64_t n);
/** @returns sim_hash3() mapped to [0, 1). */
double sim_hash_unit(uint64_t seed, const char *label, uint64_t n);

extern const char sim_base62[];
extern const char sim_hexdigits[];
extern const char sim_crockford[];
/** @returns new string @p prefix + @p n random chars of @p alpha. */
char *sim_rand_id(struct sim_rng *r, const char *prefix, const char *alpha,
                  size_t n);
/** @returns new random RFC 4122 v4 uuid string. */
char *sim_rand_uuid(struct sim_rng *r);
/** @returns borrowed word from a fixed list. */
const char *sim_pick(struct sim_rng *r, const char *const *list, size_t n);
extern const char *const sim_first_names[];
extern const size_t sim_first_names_n;
extern const char *const sim_last_names[];
extern const size_t sim_last_names_n;
extern const char *const sim_words[];
extern const size_t sim_words_n;

/* ---- settings (per account; CLI, config file and control API) --------- */

enum sim_fault_kind {
        SIM_F_NONE = 0,
        SIM_F_500,
        SIM_F_502,
        SIM_F_503,
        SIM_F_504,
        SIM_F_SLOW,
        SIM_F_RESET,
        SIM_F_TRUNCATED,
        SIM_F_MALFORMED,
        SIM_F_HTML,
        SIM_F_NKINDS,
};

enum sim_fault_mode {
        SIM_FM_PROB = 0,  /* KIND=P: probability per request */
        SIM_FM_EVERY = 1, /* KIND@every=N: every Nth request */
        SIM_FM_NEXT = 2,  /* KIND@next=N: the next N requests */
        SIM_FM_FOR = 3,   /* KIND@for=DUR: every request for DUR from now */
        SIM_FM_WINDOW = 4 /* KIND@window=START+DUR: since sim start */
};

struct sim_fault_rule {
        int kind;
        int mode;
        double prob;
        int64_t n;       /* every: period; next: remaining */
        int64_t counter; /* every: requests seen */
        int64_t from_ms; /* for/window: wall-clock bounds */
        int64_t until_ms;
        int64_t dur_ms; /* for: duration (resolved when applied) */
};

enum sim_down {
        SIM_DOWN_OFF = 0,
        SIM_DOWN_503 = 1,
        SIM_DOWN_RESET = 2,
};

struct sim_settings {
        int prov; /* enum sim_prov: provider defaults */
        /* generation */
        double rate;
        int64_t backlog;
        int64_t backlog_span_ms;
        int entities;
        double consolidate;
        int64_t consolidate_window_ms;
        int64_t retention_ms; /* 0: keep everything */

        /* identity (NULL: deterministic default) */
        char *credential;
        char *webhook_secret;

        /* rate limits */
        int limits;
        int kommo_rps;
        int kommo_ban_after;
        int64_t kommo_ban_window_ms;
        int64_t kommo_ban_ms;
        int kommo_retry_after; /* 0: computed */
        int kommo_max_limit;
        int strict; /* last "strict" applied (the switches below) */
        int kommo_array_filters;     /* 1: accept filter[x][]=a (lenient) */
        int kommo_ban_account;       /* 1: ban the account, 0: the address */
        int tie_shuffle;             /* same-second order per request */
        int64_t late_ms;             /* events visible up to this late */
        int64_t close_cursor_ttl_ms; /* 0: cursors never expire */
        int close_admin;             /* 0: strip data after close_strip */
        int64_t close_strip_ms;
        int64_t kommo_token_ttl_ms; /* OAuth access token lifetime */
        int close_limit;
        int64_t close_window_ms;
        int kota_rps;

        /* Kota knobs */
        int kota_v2;      /* default API version: 1 = v2, 0 = v1 */
        int kota_clamp;   /* created_after older than retention: 1 clamp */
        int kota_seconds; /* created in whole seconds (strict) */

        /* faults */
        struct sim_fault_rule *faults;
        size_t nfaults;
        int64_t slow_ms;
        int64_t latency_ms;
        int down;

        /* webhook sender */
        char *webhook_url;
        double webhook_share;
        double webhook_dup;
        int64_t webhook_jitter_ms;
        int64_t webhook_retry_base_ms;
        int64_t webhook_retry_max_ms;
        int64_t webhook_timeout_ms;
        int webhook_attempts;
};

/** @brief Provider defaults into @p s (which must be zeroed or finalized). */
void sim_settings_default(struct sim_settings *s, int prov);
/** @brief Free what @p s owns; it is zeroed after. */
void sim_settings_fini(struct sim_settings *s);
/** @brief Deep copy @p src into @p dst (dst finalized first). */
void sim_settings_copy(struct sim_settings *dst,
                       const struct sim_settings *src);

/**
 * @brief Apply one setting by name. @p val is a JSON string (as given on
 * the command line) or a JSON number/bool. @p at_start allows the keys that
 * only make sense before the first event (backlog, entities).
 * @returns 0, -ENOENT (unknown key) or -EINVAL with the reason in @p err.
 */
int sim_setting_apply(struct sim_settings *s, const char *key,
                      const json_t *val, int at_start, int64_t now_ms,
                      int64_t start_ms, char *err, size_t errsz);

/** @returns 1 if @p key names a setting. */
int sim_setting_known(const char *key);

/** @brief Print the per-account options (for --help). */
void sim_settings_help(FILE *fp);

/** @brief Visit every setting name (building getopt tables). */
size_t sim_settings_count(void);
const char *sim_settings_name(size_t i);

/** @returns new JSON object describing @p s (GET /_sim/control). */
json_t *sim_settings_json(const struct sim_settings *s);

/** @returns fault kind name ("500", "slow", ...). */
const char *sim_fault_name(int kind);

/* ---- entities, events, versions --------------------------------------- */

struct sim_account;
struct sim_event;

struct sim_entity {
        int kind;
        char *id;    /* string id (Kommo: decimal of nid) */
        int64_t nid; /* Kommo numeric id */
        char *name;
        struct sim_entity *parent; /* Close: lead; Kota: employer */
        int created;
        int deleted;
        int64_t created_ms;
        int64_t iv[8];          /* provider state */
        json_t *snap;           /* Close/Kota: resource snapshot */
        struct sim_event *last; /* latest event on this entity */
};

struct sim_version {
        struct sim_event *evt;
        char *json; /* native rendering (Kota: v2), NUL-terminated */
        size_t len;
        char *alt; /* Kota: v1 rendering, NULL for v2-only types */
        size_t alt_len;
        size_t name_at; /* Kommo: where ,"name":... goes */
        char *version;  /* Close: date_updated; NULL otherwise */
        int64_t updated_ms;
        uint64_t uorder; /* Close: position key of the order index */
        unsigned served : 1;
        unsigned superseded : 1;
        unsigned poison : 1; /* rendered so that it cannot be normalized */
};

struct sim_event {
        struct sim_account *acct;
        char *id;
        uint64_t seq; /* creation index within the account */
        int64_t created_ms;
        char *type;        /* native type (Close: object_type.action) */
        const char *etype; /* entity type */
        char *eid;         /* entity id (string) */
        struct sim_entity *ent;
        struct sim_version *cur;
        size_t opos; /* Close: index in acct->order */
        char *hook;  /* prepared webhook body (Kommo, Kota) or NULL */
        size_t hook_len;
        /* filter keys */
        int64_t k_entity_id;       /* Kommo */
        int64_t k_created_by;      /* Kommo */
        const char *c_object_type; /* Close (static) */
        const char *c_action;      /* Close (static) */
        char *c_lead_id;           /* Close, may be NULL */
        const char *c_user_id;     /* Close, borrowed from acct, or NULL */
        char *c_request_id;        /* Close */
        int kota_v1;               /* Kota: visible in v1 */
};

/* ---- stats -------------------------------------------------------------- */

struct sim_stats {
        uint64_t requests;
        uint64_t s2xx, s204, s4xx, s401, s403, s404, s429, s5xx;
        uint64_t resets, slow, truncated, malformed, html;
        int cur_conc;
        int max_conc;
        uint64_t overlaps;      /* requests that arrived while another
                                   for the account was unanswered */
        int64_t max_conc_at_ms; /* wall clock when max_conc was reached */
        uint64_t events;
        uint64_t versions;
        uint64_t consolidations;
        uint64_t wh_scheduled, wh_attempts, wh_delivered, wh_failed;
        uint64_t wh_retries, wh_dups, wh_pending;
};

/* ---- accounts ------------------------------------------------------------ */

struct sim_map {
        struct sim_event **slots;
        size_t cap; /* power of two */
        size_t cnt;
};

struct sim_account {
        struct sim *sim;
        int prov;
        int index; /* 1-based */
        char name[48];
        char *base_path; /* "/kommo/kommo-1" */
        char *base_url;  /* origin + base_path */
        struct sim_settings set;
        struct sim_rng gen;  /* event content */
        struct sim_rng frng; /* fault draws */
        char *dflt_credential;
        char *dflt_secret;

        /* identity */
        int64_t kommo_account_id;
        char *org_id;      /* Close orga_... */
        char *sub_id;      /* Close whsub_... */
        char *platform_id; /* Kota pt_... */
        char **users;      /* Close user ids */
        int64_t *kusers;   /* Kommo user ids (0 = system) */
        size_t nusers;

        struct sim_entity *ents;
        size_t nents;

        /* events in creation (= created time) order */
        struct sim_event **evts;
        size_t nevts, capevts;
        /* Close: events in date_updated order (current versions) */
        struct sim_event **order;
        size_t norder, caporder;
        /* Kota: cum[i] = v1-visible events among evts[0..i) */
        uint32_t *cum;
        struct sim_map ids;
        struct sim_version **vers;
        size_t nvers, capvers;
        uint64_t next_uorder;
        int64_t last_ms; /* keeps generated times monotonic */
        int64_t next_due_ms;

        /* rate limiting (monotonic ms) */
        int64_t *rl_ring;
        size_t rl_cap, rl_head, rl_cnt;
        int64_t *ban_ring;
        size_t ban_cap, ban_head, ban_cnt;
        int64_t banned_until;
        uint64_t tie_draws; /* Kommo: per-request tie order stream */
        /* Kommo OAuth 2.0: the one refresh token that works (each refresh
         * replaces it), and the access tokens issued, with their expiry
         * (wall ms); the newest SIM_OAUTH_KEEP are kept. */
        char *refresh_token;
        uint64_t oauth_gen;
        struct sim_access {
                char *token;
                int64_t expires_ms;
        } access[4];
        uint64_t refreshes, refresh_refused;
        uint64_t stripped; /* Close: events served without data */
        int64_t cw_start;
        int cw_count;

        struct sim_stats st;
};

struct sim_req;
struct sim_hook;

struct sim {
        struct event_base *base;
        struct evhttp *http;
        struct evhttp_bound_socket *bound;
        char host[64];
        int port;
        char origin[96];
        uint64_t seed;
        int verbose;
        int64_t start_ms;
        struct sim_account **accts;
        size_t nacct;
        struct event *tick;
        struct event *dump_timer;
        int64_t dump_interval_ms;
        char *dump_path;
        struct sim_req *held; /* requests answered later (list) */
        struct sim_hook *hook;
        size_t max_body;
        /* Kommo bans by client address (kommo_ban_scope address) */
        struct sim_ban {
                char addr[64];
                int64_t until; /* monotonic ms */
        } bans[16];
        size_t nbans;
};

/* store.c */
struct sim_account *sim_account_new(struct sim *sim, int prov, int index);
void sim_account_free(struct sim_account *a);
/** @brief Finish identity/base URL once the port is known, create the
 * entity pool and the backlog. */
void sim_account_start(struct sim_account *a, int64_t now_ms);
/** @brief Produce every live event of @p a that is due at @p now_ms. */
void sim_account_tick(struct sim_account *a, int64_t now_ms);
/** @returns borrowed account or NULL. */
struct sim_account *sim_find_account(struct sim *sim, int prov,
                                     const char *name, size_t namelen);
/** @returns borrowed account by full name ("close-1") or NULL. */
struct sim_account *sim_find_account_name(struct sim *sim, const char *name);
const char *sim_prov_name(int prov);
/** @returns provider index or -1. */
int sim_prov_parse(const char *s, size_t n);
/** @returns the credential currently accepted for @p a (borrowed). */
const char *sim_account_credential(const struct sim_account *a);
/** @returns the webhook secret currently used for @p a (borrowed). */
const char *sim_account_secret(const struct sim_account *a);

/** @returns new event added to @p a (id, times set; no version yet). */
struct sim_event *sim_event_new(struct sim_account *a, char *id,
                                int64_t created_ms);
/** @brief Index @p evt once its first version exists. */
void sim_event_publish(struct sim_event *evt);
/** @brief Add a version (takes ownership of @p json / @p alt / @p ver)
 * and make it current; the previous one becomes superseded and, for Close,
 * the event moves to the newest end of the order index. */
struct sim_version *sim_version_add(struct sim_event *evt, char *json,
                                    size_t len, char *alt, size_t alt_len,
                                    char *ver, int64_t updated_ms);
/**
 * @returns 1 when the list API shows @p evt (its current version) at
 * @p now_ms: late_visibility delays each event by a stateless draw per
 * entity in [0, late_visibility] after its own time (Close: date_updated),
 * so one entity's events keep their order.
 */
int sim_visible(const struct sim_event *evt, int64_t now_ms);
/**
 * @returns the time (ms since the epoch) from which the list API shows
 * version @p v of @p evt (NULL: its creation), under the account's
 * current late_visibility: the ground truth's visible_ms, what an
 * end-to-end latency is measured from.
 */
int64_t sim_visible_ms(const struct sim_event *evt,
                       const struct sim_version *v);
/**
 * @brief Make the current version of @p evt a poison event: its time
 * field becomes something no client can parse (Kommo created_at a string,
 * Close date_updated and Kota created not a date). The truth line says
 * "poison": true.
 */
void sim_poison(struct sim_event *evt);
/** @returns borrowed event by id, or NULL. */
struct sim_event *sim_event_find(struct sim_account *a, const char *id);
/** @returns index of the first event with created_ms >= @p ms. */
size_t sim_lower_bound_created(struct sim_account *a, int64_t ms);
/** Shuffle each run of events of the same created_ms / @p unit_ms
 * (tie_shuffle). */
void sim_shuffle_ties(struct sim_account *a, struct sim_event **v, size_t n,
                      int64_t unit_ms);
/** @returns index in order of the first event with updated_ms >= @p ms. */
size_t sim_lower_bound_updated(struct sim_account *a, int64_t ms);
/** @returns index in order of the first event with uorder >= @p u. */
size_t sim_lower_bound_uorder(struct sim_account *a, uint64_t u);

/**
 * @brief Generate the next event of @p a at time @p ms (forced monotonic).
 * @p live events may produce a webhook.
 * @returns borrowed event, or NULL when the pool could not produce one.
 */
struct sim_event *sim_generate(struct sim_account *a, int64_t ms, int live);
/** @brief Close: fold a new update into up to @p n recent events now.
 * @returns how many were rewritten; their ids go to @p ids if not NULL. */
size_t sim_consolidate_now(struct sim_account *a, size_t n, int64_t ms,
                           json_t *ids);
/** @brief Append one truth line per version of @p a to @p out. */
void sim_truth_account(struct sim_account *a, struct evbuffer *out,
                       int only_served);
/** @returns 0 or -errno: write every account's truth to the dump file. */
int sim_dump_write(struct sim *sim);
/** @brief JSON-escape @p s (quoted) into @p out. */
void sim_json_str(struct evbuffer *out, const char *s);

/* provider modules: entity pools, generation, HTTP handlers */
void sim_kommo_init(struct sim_account *a);
struct sim_event *sim_kommo_generate(struct sim_account *a, int64_t ms);
void sim_kommo_handle(struct sim_req *sr, const char *rest);
void sim_close_init(struct sim_account *a);
struct sim_event *sim_close_generate(struct sim_account *a, int64_t ms);
int sim_close_fold(struct sim_account *a, struct sim_event *evt, int64_t ms);
void sim_close_handle(struct sim_req *sr, const char *rest);
void sim_kota_init(struct sim_account *a);
struct sim_event *sim_kota_generate(struct sim_account *a, int64_t ms);
void sim_kota_handle(struct sim_req *sr, const char *rest);
/** @returns new Kota webhook body for @p evt in the account's version, or
 * NULL when that version does not carry the type. */
char *sim_kota_webhook_body(struct sim_event *evt, int v2, size_t *lenp);

/* ---- HTTP request plumbing (server.c) ---------------------------------- */

struct sim_req {
        struct sim *sim;
        struct sim_account *acct; /* NULL for /_sim/ */
        struct evhttp_request *req;
        int status;
        const char *reason;
        const char *ctype;
        struct evbuffer *body;
        struct sim_version **served;
        size_t nserved, capserved;
        int fault;
        int reset_tries;
        int reset_started;
        struct event *timer;
        struct sim_req *next, *prev;
};

/** @brief Record that @p v is part of this response (marked served when the
 * response is sent complete). */
void sim_req_served(struct sim_req *sr, struct sim_version *v);
/** @brief Set status + content type; the body is sr->body. */
void sim_req_status(struct sim_req *sr, int status, const char *ctype);
/** @brief Add a response header. */
void sim_req_header(struct sim_req *sr, const char *k, const char *v);
/** @brief Kommo/Kota problem+json error (title from the status). */
void sim_req_problem(struct sim_req *sr, int status, const char *detail,
                     const char *extra_json);
/** @brief Close JSON error. */
void sim_req_close_error(struct sim_req *sr, int status, const char *msg);
/** @brief Parse a raw query string (keys and values %-decoded, '+' is a
 * space) into @p q (initialised here; clear with evhttp_clear_headers()).
 * @returns 0 or -1 on a malformed escape or a control character. */
int sim_query_parse(const char *rawq, struct evkeyvalq *q);
/** @returns the first value of query parameter @p key, or NULL. */
const char *sim_query_get(const struct evkeyvalq *q, const char *key);

int sim_server_start(struct sim *sim, const char *listen, char *err,
                     size_t errsz);
/** @brief Answer every held request now (shutdown). */
void sim_server_flush_held(struct sim *sim);

/* oauth.c: Kommo OAuth 2.0 (POST <base>/oauth2/access_token) */
/** @brief Client id, secret and redirect URI of @p a (borrowed, static
 * per account name). */
void sim_oauth_client(const struct sim_account *a, char *id, size_t idsz,
                      char *secret, size_t secretsz, char *redirect,
                      size_t redirectsz);
/** @returns the refresh token that works now (initial: set at start). */
const char *sim_oauth_refresh_token(struct sim_account *a);
/* Control "oauth": "revoke" (every access token refused from now on) and
 * "reauthorize" (a new refresh token; the old one and every access token
 * refused). */
void sim_oauth_revoke(struct sim_account *a);
const char *sim_oauth_reauthorize(struct sim_account *a);
/** @returns 1 when @p token is an unexpired access token of @p a. */
int sim_oauth_access_ok(struct sim_account *a, const char *token, size_t len,
                        int64_t now_ms);
/** @brief Answer a token request (grant_type refresh_token). */
void sim_oauth_handle(struct sim_req *sr, int64_t now_ms);
/** @brief Free the OAuth state of @p a. */
void sim_oauth_free(struct sim_account *a);

/* control.c */
/** @brief Handle a /_sim/ request (control, stats, truth, info). */
void sim_control_handle(struct sim *sim, struct evhttp_request *req,
                        const char *path);
/**
 * @brief Apply setting @p key = @p val to every account matching @p target
 * ("all", a provider, or an account name). All or nothing.
 * @returns 0, or -errno with the reason in @p err.
 */
int sim_apply_target(struct sim *sim, const char *target, const char *key,
                     const json_t *val, int at_start, char *err, size_t errsz);
/** @returns 1 if @p target names "all", a provider or an account. */
int sim_target_valid(struct sim *sim, const char *target);
/** @returns new JSON object: the start-up line (port, accounts, secrets). */
json_t *sim_info_json(struct sim *sim);
/** @returns new string: the webhook URL of @p a with placeholders
 * substituted, or NULL when none is configured. */
char *sim_webhook_url(const struct sim_account *a);

/* webhook.c */
struct sim_hook *sim_hook_new(struct sim *sim);
void sim_hook_free(struct sim_hook *hk);
/** @brief Consider a freshly generated live event for webhook delivery. */
void sim_hook_event(struct sim_hook *hk, struct sim_event *evt);
/** @returns pending deliveries (waiting or in flight). */
size_t sim_hook_pending(const struct sim_hook *hk);

#endif /* SIM_H */
