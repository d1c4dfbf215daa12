/*
 * evbridge: bridges CRM / SaaS event feeds into Kafka.
 * Thin main: arguments, configuration, then the application loop.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_app.h"
#include "eb_config.h"
#include "eb_log.h"
#include "eb_provider.h"
#include "eb_time.h"
#include "eb_webhook.h"
#include "status.h"

static void usage(FILE *fp)
{
        fprintf(fp,
                "Usage: evbridge [--config FILE] [options]\n"
                "       evbridge status [URL]   what a running evbridge's\n"
                "                               sources are doing (URL of\n"
                "                               its listener, default\n"
                "                               http://127.0.0.1:8080)\n"
                "\n"
                "Polls the events APIs of Kommo, Close and Kota (and takes\n"
                "their webhooks), drops duplicates, and publishes every event\n"
                "once, as a CloudEvents envelope, to a Kafka topic per type.\n"
                "\n"
                "Options:\n"
                "  -c, --config FILE        run with this configuration "
                "(JSON)\n"
                "      --check-config FILE  validate FILE and exit: 0 if "
                "valid,\n"
                "                           2 with a message naming the key\n"
                "      --shape-only         with --check-config: a secret\n"
                "                           file (${file:...}) that does not\n"
                "                           exist is not an error; all else\n"
                "                           is checked\n"
                "      --bootstrap-file F   write the Kafka bootstrap address\n"
                "                           to F once running (embedded mode)\n"
                "      --port-file FILE     write the bound HTTP port to FILE\n"
                "                           once running (http.listen with\n"
                "                           port 0 picks a free one)\n"
                "      --print-defaults     every config key with its type\n"
                "                           and default, and each provider's\n"
                "                           defaults, then exit\n"
                "  -l, --log-level LEVEL    debug|info|warn|error (overrides\n"
                "                           log.level)\n"
                "  -V, --version            print the version and exit\n"
                "  -h, --help               this text\n"
                "\n"
                "Without --config, evbridge runs on its embedded default: an\n"
                "in-process Kafka mock cluster (nothing is durable) and no\n"
                "sources. See docs/configuration.md.\n");
}

/*
 * With --shape-only, secret files that are absent (a build machine, CI, a
 * laptop without the cluster's secrets) do not fail the check: the rest
 * of the file is checked with placeholders, and the verdict says "shape
 * only".
 */
static int check_config(const char *path, int shape_only)
{
        char errstr[1024], first[256];
        size_t absent = 0, enabled;
        struct eb_config *cfg;
        int rc = 0;

        if (shape_only)
                cfg = eb_config_load_shape(path, &absent, first, sizeof(first),
                                           errstr, sizeof(errstr));
        else
                cfg = eb_config_load(path, errstr, sizeof(errstr));
        if (!cfg) {
                fprintf(stderr, "%s\n", errstr);
                if (strstr(errstr, "cannot read file") &&
                    strstr(errstr, "No such file"))
                        fprintf(stderr,
                                "(secrets not mounted here? --shape-only "
                                "checks everything else)\n");
                return 2;
        }
        enabled = eb_config_enabled_sources(cfg);
        if (eb_provider_check_config(cfg, errstr, sizeof(errstr)) ||
            eb_webhook_check_config(cfg, errstr, sizeof(errstr))) {
                fprintf(stderr, "%s: %s\n", path, errstr);
                rc = 2;
        } else if (absent) {
                printf("%s: ok, shape only: %zu secret file(s) absent (first "
                       "%s), their values not checked (%zu source(s), %zu "
                       "disabled)\n",
                       path, absent, first, enabled,
                       cfg->sources_cnt - enabled);
        } else {
                printf("%s: ok (%zu source(s), %zu disabled)\n", path, enabled,
                       cfg->sources_cnt - enabled);
        }
        eb_config_free(cfg);
        return rc;
}

static void print_key(const char *key, const char *type, const char *dflt,
                      void *opaque)
{
        (void)opaque;
        printf("%s\t%s\t%s\n", key, type, dflt);
}

/* Every key with its type and default, then each provider's defaults:
 * what docs/configuration.md and docs/providers.md are checked against
 * (tests/integration/test_docs_defaults.sh). */
static int print_defaults(void)
{
        const struct eb_provider *const *pp;
        char dur[32];

        eb_config_describe(print_key, NULL);
        for (pp = eb_provider_all(); *pp; pp++) {
                const struct eb_provider *p = *pp;

                printf("provider.%s.base_url\tstring\t%s%s%s\n", p->name,
                       p->default_base_url ? "\"" : "",
                       p->default_base_url ? p->default_base_url : "required",
                       p->default_base_url ? "\"" : "");
                printf("provider.%s.rate_limit.rps\tnumber\t%g\n", p->name,
                       p->default_rps);
                printf("provider.%s.rate_limit.burst\tinteger\t%d\n", p->name,
                       p->default_burst);
                printf("provider.%s.poll.page_size\tinteger\t%d\n", p->name,
                       p->default_page_size);
                printf("provider.%s.poll.page_size_max\tinteger\t%d\n", p->name,
                       p->max_page_size);
                eb_duration_format(p->default_overlap_ms, dur, sizeof(dur));
                printf("provider.%s.poll.overlap\tduration\t%" PRId64 "ms\n",
                       p->name, p->default_overlap_ms);
                printf("provider.%s.poll.lag\tduration\t%" PRId64 "ms\n",
                       p->name, p->default_lag_ms);
        }
        return 0;
}

/* Write "<port>\n" to @p path atomically (a reader never sees a partial
 * file). @returns 0 or -1 with a message on stderr. */
static int write_port_file(const char *path, int port)
{
        char tmp[4096];
        FILE *fp;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
                fprintf(stderr, "evbridge: --port-file: path too long\n");
                return -1;
        }
        fp = fopen(tmp, "w");
        if (!fp || fprintf(fp, "%d\n", port) < 0 || fclose(fp) != 0 ||
            rename(tmp, path) != 0) {
                fprintf(stderr, "evbridge: --port-file %s: %s\n", path,
                        strerror(errno));
                return -1;
        }
        return 0;
}

/* `evbridge status [URL]`: the running process's /status, summarized. */
static int status_command(int argc, char **argv)
{
        struct eb_config *dflt;
        char url[64];
        int rc;

        if (argc > 3) {
                usage(stderr);
                return 2;
        }
        dflt = eb_config_new_default();
        /* The default listener's port, from the one default. */
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", dflt->listen_port);
        eb_config_free(dflt);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        rc = eb_status_main(argc == 3 ? argv[2] : url);
        curl_global_cleanup();
        return rc;
}

/* Load the configuration, build the application and run it until it
 * stops. @returns the exit code. */
static int run_daemon(const char *config, const char *level,
                      const char *bootstrap_file, const char *port_file)
{
        struct eb_config *cfg;
        eb_app_t *app;
        char errstr[1024];
        int rc;

        /* Before any thread exists (librdkafka starts several). */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        eb_log_hook_libevent();

        if (config)
                cfg = eb_config_load(config, errstr, sizeof(errstr));
        else
                cfg = eb_config_new_default();
        if (!cfg) {
                fprintf(stderr, "evbridge: %s\n", errstr);
                curl_global_cleanup();
                eb_log_shutdown();
                return 2;
        }
        if (level) {
                eb_log_level_t lvl;
                if (eb_log_level_parse(level, &lvl)) {
                        fprintf(stderr,
                                "evbridge: --log-level: unknown "
                                "level \"%s\"\n",
                                level);
                        eb_config_free(cfg);
                        return 2;
                }
                cfg->log_level = lvl;
        }
        app = eb_app_new(cfg, errstr, sizeof(errstr));
        if (!app) {
                fprintf(stderr, "evbridge: %s\n", errstr);
                eb_config_free(cfg);
                curl_global_cleanup();
                eb_log_shutdown();
                return 1;
        }
        if (bootstrap_file) {
                FILE *fp = fopen(bootstrap_file, "w");
                if (fp) {
                        fprintf(fp, "%s\n", eb_app_bootstrap(app));
                        fclose(fp);
                }
        }
        if (port_file) {
                if (eb_app_http_port(app) < 0) {
                        fprintf(stderr, "evbridge: --port-file: no HTTP "
                                        "listener (http.listen is null)\n");
                        rc = 2;
                        goto done;
                }
                if (write_port_file(port_file, eb_app_http_port(app))) {
                        rc = 1;
                        goto done;
                }
        }
        rc = eb_app_run(app);
done:
        eb_app_free(app);
        curl_global_cleanup();
        eb_log_shutdown();
        return rc;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'},
                {"check-config", required_argument, NULL, 'C'},
                {"shape-only", no_argument, NULL, 'S'},
                {"print-defaults", no_argument, NULL, 'D'},
                {"bootstrap-file", required_argument, NULL, 'B'},
                {"port-file", required_argument, NULL, 'P'},
                {"log-level", required_argument, NULL, 'l'},
                {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *config = NULL, *bootstrap_file = NULL, *level = NULL;
        const char *port_file = NULL, *check = NULL;
        int shape_only = 0;
        int c, rc;

        if (argc >= 2 && !strcmp(argv[1], "status"))
                return status_command(argc, argv);
        while ((c = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'C':
                        check = optarg;
                        break;
                case 'S':
                        shape_only = 1;
                        break;
                case 'D':
                        return print_defaults();
                case 'B':
                        bootstrap_file = optarg;
                        break;
                case 'P':
                        port_file = optarg;
                        break;
                case 'l':
                        level = optarg;
                        break;
                case 'V':
                        printf("evbridge %s (%s)\n", EB_VERSION, EB_GITREV);
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "evbridge: unexpected argument: %s\n",
                        argv[optind]);
                usage(stderr);
                return 2;
        }
        if (shape_only && !check) {
                fprintf(stderr, "evbridge: --shape-only goes with "
                                "--check-config\n");
                return 2;
        }
        if (check) {
                rc = check_config(check, shape_only);
                eb_log_shutdown();
                return rc;
        }

        return run_daemon(config, level, bootstrap_file, port_file);
}
