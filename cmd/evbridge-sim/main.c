/*
 * evbridge-sim: simulated Kommo, Close and Kota event APIs and webhook
 * senders (docs/simulator.md). This file: options, config file, start-up
 * line, signals and the shutdown order.
 */
#include "sim.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_time.h"
#include "eb_util.h"

#ifndef EB_VERSION
#define EB_VERSION "0.0.0"
#endif

#define MAX_ACCOUNTS 1000

struct op {
        char *target;
        char *key;
        json_t *val;
};

struct opts {
        char *listen;
        char *port_file;
        char *dump;
        char *config;
        int64_t dump_interval_ms;
        uint64_t seed;
        int naccts[SIM_NPROV];
        int verbose;
        int quiet;
        int have_listen, have_seed, have_accounts, have_dump, have_port_file,
                have_dump_interval;
        struct op *ops;
        size_t nops;
        struct op *cfg_ops;
        size_t ncfg_ops;
};

enum {
        O_LISTEN = 1000,
        O_PORT_FILE,
        O_SEED,
        O_ACCOUNTS,
        O_DUMP,
        O_DUMP_INTERVAL,
        O_CONFIG,
        O_VERSION,
        O_SETTING = 2000,
};

static void usage(FILE *fp)
{
        fprintf(fp,
                "usage: evbridge-sim [options]\n"
                "\n"
                "Simulates the Kommo, Close and Kota event APIs (and their "
                "webhook senders)\n"
                "for several accounts each, on one port. URL layout:\n"
                "  Kommo  http://HOST:PORT/kommo/<account>   (GET "
                "/api/v4/events, /{id})\n"
                "  Close  http://HOST:PORT/close/<account>   (GET "
                "/api/v1/event/, /{id}/)\n"
                "  Kota   http://HOST:PORT/kota/<account>    (GET /events, "
                "/events/{id})\n"
                "  Control and ground truth under http://HOST:PORT/_sim/ (see "
                "below).\n"
                "Accounts are named kommo-1..kommo-N, close-1..close-N, "
                "kota-1..kota-N.\n"
                "On start one JSON line on stdout gives the port, every "
                "account's base_url,\n"
                "credentials and webhook secrets.\n"
                "\n"
                "Global options:\n"
                "  --listen ADDR:PORT     address to serve on (default "
                "127.0.0.1:0: an\n"
                "                         ephemeral port, reported on stdout)\n"
                "  --port-file FILE       write the bound port to FILE\n"
                "  --seed N               seed of every generated value "
                "(default 1)\n"
                "  --accounts SPEC        kommo=N,close=N,kota=N (default 2 "
                "each; providers\n"
                "                         left out get 0)\n"
                "  --dump FILE            write the ground truth (JSON lines) "
                "to FILE at\n"
                "                         exit (SIGTERM/SIGINT), on control "
                "\"dump\", and\n"
                "                         every --dump-interval; replaced "
                "atomically\n"
                "  --dump-interval DUR    also rewrite the dump this often "
                "(default off)\n"
                "  --config FILE          JSON config: the same settings, per "
                "provider and\n"
                "                         per account (docs/simulator.md); "
                "command-line\n"
                "                         options are applied after it\n"
                "  -v, --verbose          debug logging on stderr\n"
                "  -q, --quiet            warnings and errors only\n"
                "  -h, --help             this text\n"
                "  --version              print the version\n"
                "\n"
                "Per-account options. Each takes VALUE (every account) or "
                "TARGET=VALUE where\n"
                "TARGET is all, kommo, close, kota or an account name "
                "(close-1); options may\n"
                "be repeated and apply in order. DUR is like 250ms, 10s, 5m, "
                "1h, 30d.\n");
        sim_settings_help(fp);
        fprintf(fp,
                "\n"
                "Control API (the /_sim/ namespace never overlaps API paths):\n"
                "  POST /_sim/control  {\"target\": "
                "\"all|kommo|close|kota|<account>\",\n"
                "                       \"set\": {<setting>: value, ...},\n"
                "                       \"generate\": N, \"consolidate\": N,\n"
                "                       \"reset_stats\": true, \"dump\": "
                "true}\n"
                "  GET  /_sim/control  current settings of every account\n"
                "  GET  /_sim/stats    per-account counters [?account=NAME]\n"
                "  GET  /_sim/truth    ground truth, one JSON line per event "
                "version\n"
                "                      [?provider=P&account=A&served=1]\n"
                "  GET  /_sim/info     the start-up line again\n"
                "  GET  /_sim/health   liveness\n"
                "\n"
                "SIGTERM or SIGINT: answer held requests, write the dump, exit "
                "0.\n");
}

static int is_target_word(const char *s, size_t n)
{
        size_t i;
        int p;

        if (n == 3 && !strncmp(s, "all", 3))
                return 1;
        for (p = 0; p < SIM_NPROV; p++) {
                const char *pn = sim_prov_name(p);
                size_t pl = strlen(pn);

                if (n < pl || strncmp(s, pn, pl))
                        continue;
                if (n == pl)
                        return 1;
                if (s[pl] != '-' || n == pl + 1)
                        continue;
                for (i = pl + 1; i < n; i++)
                        if (s[i] < '0' || s[i] > '9')
                                break;
                if (i == n)
                        return 1;
        }
        return 0;
}

static void add_op(struct op **ops, size_t *n, const char *target,
                   const char *key, json_t *val)
{
        *ops = eb_xrealloc(*ops, (*n + 1) * sizeof(**ops));
        (*ops)[*n].target = eb_xstrdup(target);
        (*ops)[*n].key = eb_xstrdup(key);
        (*ops)[*n].val = val;
        (*n)++;
}

static void free_ops(struct op *ops, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++) {
                free(ops[i].target);
                free(ops[i].key);
                json_decref(ops[i].val);
        }
        free(ops);
}

static int parse_accounts(const char *spec, int naccts[SIM_NPROV], char *err,
                          size_t errsz)
{
        char *copy = eb_xstrdup(spec), *save = NULL, *tok;
        int rc = 0;

        memset(naccts, 0, sizeof(int) * SIM_NPROV);
        for (tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(tok, '=');
                int64_t n;
                int p;

                p = eq ? sim_prov_parse(tok, (size_t)(eq - tok)) : -1;
                if (p < 0 || eb_parse_i64(eq + 1, &n) < 0 || n < 0 ||
                    n > MAX_ACCOUNTS) {
                        snprintf(err, errsz,
                                 "--accounts: expected kommo=N,close=N,"
                                 "kota=N with N 0..%d, got '%s'",
                                 MAX_ACCOUNTS, tok);
                        rc = -EINVAL;
                        break;
                }
                naccts[p] = (int)n;
        }
        free(copy);
        return rc;
}

static char *norm_key(const char *k)
{
        char *s = eb_xstrdup(k), *p;

        for (p = s; *p; p++)
                if (*p == '-')
                        *p = '_';
        return s;
}

static int cfg_settings(struct opts *o, const char *target, json_t *obj,
                        const char *where, char *err, size_t errsz)
{
        const char *k;
        json_t *v;

        if (!json_is_object(obj)) {
                snprintf(err, errsz, "%s: expected an object", where);
                return -EINVAL;
        }
        json_object_foreach(obj, k, v)
        {
                char *nk = norm_key(k);

                if (!sim_setting_known(nk)) {
                        snprintf(err, errsz, "%s.%s: unknown setting", where,
                                 k);
                        free(nk);
                        return -EINVAL;
                }
                add_op(&o->cfg_ops, &o->ncfg_ops, target, nk, json_incref(v));
                free(nk);
        }
        return 0;
}

static int load_config(struct opts *o, char *err, size_t errsz)
{
        json_error_t jerr;
        json_t *root = json_load_file(o->config, JSON_REJECT_DUPLICATES, &jerr);
        const char *k;
        json_t *v;
        int rc = -EINVAL;

        if (!root) {
                snprintf(err, errsz, "%s:%d: %s", o->config, jerr.line,
                         jerr.text);
                return -EINVAL;
        }
        if (!json_is_object(root)) {
                snprintf(err, errsz, "%s: expected a JSON object", o->config);
                goto out;
        }
        json_object_foreach(root, k, v)
        {
                char *nk = norm_key(k);
                int bad = 0;

                if (!strcmp(nk, "listen") || !strcmp(nk, "port_file") ||
                    !strcmp(nk, "dump")) {
                        if (!json_is_string(v)) {
                                bad = 1;
                        } else if (!strcmp(nk, "listen") && !o->have_listen) {
                                free(o->listen);
                                o->listen = eb_xstrdup(json_string_value(v));
                        } else if (!strcmp(nk, "port_file") &&
                                   !o->have_port_file) {
                                free(o->port_file);
                                o->port_file = eb_xstrdup(json_string_value(v));
                        } else if (!strcmp(nk, "dump") && !o->have_dump) {
                                free(o->dump);
                                o->dump = eb_xstrdup(json_string_value(v));
                        }
                } else if (!strcmp(nk, "seed")) {
                        if (!json_is_integer(v) || json_integer_value(v) < 0)
                                bad = 1;
                        else if (!o->have_seed)
                                o->seed = (uint64_t)json_integer_value(v);
                } else if (!strcmp(nk, "dump_interval")) {
                        int64_t ms;
                        if (!json_is_string(v) ||
                            eb_duration_parse(json_string_value(v), &ms) < 0)
                                bad = 1;
                        else if (!o->have_dump_interval)
                                o->dump_interval_ms = ms;
                } else if (!strcmp(nk, "verbose")) {
                        if (!json_is_boolean(v))
                                bad = 1;
                        else if (json_is_true(v))
                                o->verbose = 1;
                } else if (!strcmp(nk, "accounts")) {
                        int n[SIM_NPROV], p;
                        if (json_is_string(v)) {
                                if (parse_accounts(json_string_value(v), n, err,
                                                   errsz) < 0) {
                                        free(nk);
                                        goto out;
                                }
                        } else if (json_is_object(v)) {
                                const char *pk;
                                json_t *pv;
                                memset(n, 0, sizeof(n));
                                json_object_foreach(v, pk, pv)
                                {
                                        p = sim_prov_parse(pk, strlen(pk));
                                        if (p < 0 || !json_is_integer(pv) ||
                                            json_integer_value(pv) < 0 ||
                                            json_integer_value(pv) >
                                                    MAX_ACCOUNTS) {
                                                bad = 1;
                                                break;
                                        }
                                        n[p] = (int)json_integer_value(pv);
                                }
                        } else {
                                bad = 1;
                        }
                        if (!bad && !o->have_accounts)
                                memcpy(o->naccts, n, sizeof(n));
                } else if (sim_prov_parse(nk, strlen(nk)) >= 0) {
                        char where[64];
                        snprintf(where, sizeof(where), "%s", nk);
                        if (cfg_settings(o, nk, v, where, err, errsz) < 0) {
                                free(nk);
                                goto out;
                        }
                } else if (!strcmp(nk, "overrides")) {
                        const char *ak;
                        json_t *av;
                        if (!json_is_object(v)) {
                                bad = 1;
                        } else {
                                json_object_foreach(v, ak, av)
                                {
                                        char where[160];
                                        if (!is_target_word(ak, strlen(ak))) {
                                                snprintf(err, errsz,
                                                         "overrides.%s: not "
                                                         "an account name",
                                                         ak);
                                                free(nk);
                                                goto out;
                                        }
                                        snprintf(where, sizeof(where),
                                                 "overrides.%s", ak);
                                        if (cfg_settings(o, ak, av, where, err,
                                                         errsz) < 0) {
                                                free(nk);
                                                goto out;
                                        }
                                }
                        }
                } else if (sim_setting_known(nk)) {
                        add_op(&o->cfg_ops, &o->ncfg_ops, "all", nk,
                               json_incref(v));
                } else {
                        snprintf(err, errsz, "%s: unknown key '%s'", o->config,
                                 k);
                        free(nk);
                        goto out;
                }
                if (bad) {
                        snprintf(err, errsz, "%s: %s: invalid value", o->config,
                                 k);
                        free(nk);
                        goto out;
                }
                free(nk);
        }
        rc = 0;
out:
        json_decref(root);
        return rc;
}

/* @returns 0, 1 (exit 0: help/version) or -1 (usage error). */
static int parse_args(int argc, char **argv, struct opts *o)
{
        size_t nset = sim_settings_count(), i;
        struct option *lo = eb_xcalloc(nset + 16, sizeof(*lo));
        char **names = eb_xcalloc(nset, sizeof(*names));
        char err[256];
        int c, rc = 0, n = 0;

        lo[n++] = (struct option){"listen", required_argument, NULL, O_LISTEN};
        lo[n++] = (struct option){"port-file", required_argument, NULL,
                                  O_PORT_FILE};
        lo[n++] = (struct option){"seed", required_argument, NULL, O_SEED};
        lo[n++] = (struct option){"accounts", required_argument, NULL,
                                  O_ACCOUNTS};
        lo[n++] = (struct option){"dump", required_argument, NULL, O_DUMP};
        lo[n++] = (struct option){"dump-interval", required_argument, NULL,
                                  O_DUMP_INTERVAL};
        lo[n++] = (struct option){"config", required_argument, NULL, O_CONFIG};
        lo[n++] = (struct option){"verbose", no_argument, NULL, 'v'};
        lo[n++] = (struct option){"quiet", no_argument, NULL, 'q'};
        lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
        lo[n++] = (struct option){"version", no_argument, NULL, O_VERSION};
        for (i = 0; i < nset; i++) {
                char *p;
                names[i] = eb_xstrdup(sim_settings_name(i));
                for (p = names[i]; *p; p++)
                        if (*p == '_')
                                *p = '-';
                lo[n++] = (struct option){names[i], required_argument, NULL,
                                          O_SETTING + (int)i};
        }
        opterr = 1;
        while ((c = getopt_long(argc, argv, "vqh", lo, NULL)) != -1) {
                switch (c) {
                case 'v':
                        o->verbose = 1;
                        break;
                case 'q':
                        o->quiet = 1;
                        break;
                case 'h':
                        usage(stdout);
                        rc = 1;
                        goto out;
                case O_VERSION:
                        printf("evbridge-sim %s\n", EB_VERSION);
                        rc = 1;
                        goto out;
                case O_LISTEN:
                        free(o->listen);
                        o->listen = eb_xstrdup(optarg);
                        o->have_listen = 1;
                        break;
                case O_PORT_FILE:
                        free(o->port_file);
                        o->port_file = eb_xstrdup(optarg);
                        o->have_port_file = 1;
                        break;
                case O_DUMP:
                        free(o->dump);
                        o->dump = eb_xstrdup(optarg);
                        o->have_dump = 1;
                        break;
                case O_CONFIG:
                        free(o->config);
                        o->config = eb_xstrdup(optarg);
                        break;
                case O_SEED: {
                        int64_t v;
                        if (eb_parse_i64(optarg, &v) < 0 || v < 0) {
                                fprintf(stderr,
                                        "evbridge-sim: --seed: "
                                        "expected a non-negative integer\n");
                                rc = -1;
                                goto out;
                        }
                        o->seed = (uint64_t)v;
                        o->have_seed = 1;
                        break;
                }
                case O_DUMP_INTERVAL:
                        if (eb_duration_parse(optarg, &o->dump_interval_ms) <
                            0) {
                                fprintf(stderr, "evbridge-sim: "
                                                "--dump-interval: expected a "
                                                "duration\n");
                                rc = -1;
                                goto out;
                        }
                        o->have_dump_interval = 1;
                        break;
                case O_ACCOUNTS:
                        if (parse_accounts(optarg, o->naccts, err,
                                           sizeof(err)) < 0) {
                                fprintf(stderr, "evbridge-sim: %s\n", err);
                                rc = -1;
                                goto out;
                        }
                        o->have_accounts = 1;
                        break;
                default:
                        if (c >= O_SETTING && c < O_SETTING + (int)nset) {
                                const char *key = sim_settings_name(
                                        (size_t)(c - O_SETTING));
                                const char *eq = strchr(optarg, '=');
                                char *target;
                                const char *val = optarg;

                                if (eq &&
                                    is_target_word(optarg,
                                                   (size_t)(eq - optarg))) {
                                        target = eb_xstrndup(
                                                optarg, (size_t)(eq - optarg));
                                        val = eq + 1;
                                } else {
                                        target = eb_xstrdup("all");
                                }
                                add_op(&o->ops, &o->nops, target, key,
                                       json_string(val));
                                free(target);
                                break;
                        }
                        fprintf(stderr,
                                "evbridge-sim: try --help for the options\n");
                        rc = -1;
                        goto out;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "evbridge-sim: unexpected argument '%s'\n",
                        argv[optind]);
                rc = -1;
        }
out:
        for (i = 0; i < nset; i++)
                free(names[i]);
        free(names);
        free(lo);
        return rc;
}

/* ---- loop callbacks ---------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        struct sim *sim = arg;
        int64_t now = eb_now_ms();
        size_t i;

        (void)fd;
        (void)what;
        for (i = 0; i < sim->nacct; i++)
                sim_account_tick(sim->accts[i], now);
}

static void on_dump_timer(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        (void)sim_dump_write(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
        struct sim *sim = arg;

        (void)what;
        eb_info(SIM_MOD, "signal %d: shutting down", (int)sig);
        event_base_loopbreak(sim->base);
}

static int write_port_file(const char *path, int port)
{
        char *tmp = eb_xasprintf("%s.tmp", path);
        FILE *fp = fopen(tmp, "w");
        int rc = -EIO;

        if (fp) {
                fprintf(fp, "%d\n", port);
                if (fclose(fp) == 0 && rename(tmp, path) == 0)
                        rc = 0;
        }
        if (rc < 0)
                eb_error(SIM_MOD, "cannot write port file %s: %s", path,
                         strerror(errno));
        free(tmp);
        return rc;
}

int main(int argc, char **argv)
{
        struct opts o;
        struct sim sim;
        struct event *sigterm = NULL, *sigint = NULL;
        struct timeval tick = {0, 10 * 1000};
        char err[512];
        json_t *info;
        char *line;
        size_t i;
        int p, k, rc = 2, prc;

        memset(&o, 0, sizeof(o));
        memset(&sim, 0, sizeof(sim));
        o.listen = eb_xstrdup("127.0.0.1:0");
        o.seed = 1;
        for (p = 0; p < SIM_NPROV; p++)
                o.naccts[p] = 2;
        prc = parse_args(argc, argv, &o);
        if (prc != 0) {
                rc = prc > 0 ? 0 : 2;
                goto out;
        }
        if (o.config && load_config(&o, err, sizeof(err)) < 0) {
                fprintf(stderr, "evbridge-sim: %s\n", err);
                goto out;
        }
        eb_log_set_level(o.verbose ? EB_LOG_DEBUG
                         : o.quiet ? EB_LOG_WARN
                                   : EB_LOG_INFO);
        eb_log_hook_libevent();
        signal(SIGPIPE, SIG_IGN);
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "evbridge-sim: curl_global_init failed\n");
                goto out;
        }
        sim.seed = o.seed;
        sim.verbose = o.verbose;
        sim.start_ms = eb_now_ms();
        sim.dump_path = o.dump;
        sim.dump_interval_ms = o.dump_interval_ms;
        sim.max_body = 1024 * 1024;
        sim.base = event_base_new();
        if (!sim.base) {
                fprintf(stderr, "evbridge-sim: event_base_new failed\n");
                goto out_curl;
        }
        /* Signals first: a SIGTERM that arrives while the backlog is being
         * generated or right after the start-up line is printed is then
         * handled by the loop (a clean exit), never the default action. */
        sigterm = evsignal_new(sim.base, SIGTERM, on_signal, &sim);
        sigint = evsignal_new(sim.base, SIGINT, on_signal, &sim);
        event_add(sigterm, NULL);
        event_add(sigint, NULL);
        for (p = 0; p < SIM_NPROV; p++)
                for (k = 1; k <= o.naccts[p]; k++) {
                        sim.accts = eb_xrealloc(sim.accts,
                                                (sim.nacct + 1) *
                                                        sizeof(*sim.accts));
                        sim.accts[sim.nacct++] = sim_account_new(&sim, p, k);
                }
        for (i = 0; i < o.ncfg_ops + o.nops; i++) {
                struct op *op =
                        i < o.ncfg_ops ? &o.cfg_ops[i] : &o.ops[i - o.ncfg_ops];
                if (sim_apply_target(&sim, op->target, op->key, op->val, 1, err,
                                     sizeof(err)) < 0) {
                        fprintf(stderr, "evbridge-sim: %s%s%s\n",
                                strcmp(op->target, "all") ? op->target : "",
                                strcmp(op->target, "all") ? ": " : "", err);
                        goto out_base;
                }
        }
        if (sim_server_start(&sim, o.listen, err, sizeof(err)) < 0) {
                fprintf(stderr, "evbridge-sim: %s\n", err);
                goto out_base;
        }
        sim.hook = sim_hook_new(&sim);
        if (!sim.hook) {
                fprintf(stderr, "evbridge-sim: curl_multi_init failed\n");
                goto out_http;
        }
        for (i = 0; i < sim.nacct; i++) {
                sim_account_start(sim.accts[i], sim.start_ms);
                eb_log_add_secret(sim_account_credential(sim.accts[i]));
                eb_log_add_secret(sim_account_secret(sim.accts[i]));
        }
        if (o.port_file && write_port_file(o.port_file, sim.port) < 0)
                goto out_hook;
        info = sim_info_json(&sim);
        line = json_dumps(info, JSON_COMPACT);
        json_decref(info);
        if (line) {
                fputs(line, stdout);
                fputc('\n', stdout);
                free(line);
        }
        fflush(stdout);
        eb_info(SIM_MOD, "listening on %s (seed %llu, %zu accounts)",
                sim.origin, (unsigned long long)sim.seed, sim.nacct);

        sim.tick = event_new(sim.base, -1, EV_PERSIST, on_tick, &sim);
        event_add(sim.tick, &tick);
        if (sim.dump_path && sim.dump_interval_ms > 0) {
                struct timeval dt = {
                        (time_t)(sim.dump_interval_ms / 1000),
                        (suseconds_t)((sim.dump_interval_ms % 1000) * 1000)};
                sim.dump_timer = event_new(sim.base, -1, EV_PERSIST,
                                           on_dump_timer, &sim);
                event_add(sim.dump_timer, &dt);
        }

        event_base_dispatch(sim.base);

        /* Shutdown: stop generating, answer what is held, write the truth
         * (complete: nothing changes after this), drop pending webhooks
         * (curl while the base lives), then the listener and the store. */
        rc = 0;
        event_free(sim.tick);
        sim.tick = NULL;
        if (sim.dump_timer)
                event_free(sim.dump_timer);
        sim.dump_timer = NULL;
        sim_server_flush_held(&sim);
        {
                /* let the loop write those replies out (50 ms at most) */
                struct timeval drain = {0, 50 * 1000};
                event_base_loopexit(sim.base, &drain);
                event_base_dispatch(sim.base);
        }
        if (sim.dump_path && sim_dump_write(&sim) < 0)
                rc = 1;
out_hook:
        sim_hook_free(sim.hook);
        sim.hook = NULL;
out_http:
        if (sim.http)
                evhttp_free(sim.http);
out_base:
        if (sigterm)
                event_free(sigterm);
        if (sigint)
                event_free(sigint);
        for (i = 0; i < sim.nacct; i++)
                sim_account_free(sim.accts[i]);
        free(sim.accts);
        event_base_free(sim.base);
out_curl:
        curl_global_cleanup();
out:
        free_ops(o.ops, o.nops);
        free_ops(o.cfg_ops, o.ncfg_ops);
        free(o.listen);
        free(o.port_file);
        free(o.dump);
        free(o.config);
        eb_log_shutdown();
        return rc;
}
