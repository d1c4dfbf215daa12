/*
 * evbridge: bridges CRM / SaaS event feeds into Kafka.
 * Thin main: arguments, configuration, then the application loop.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_app.h"
#include "eb_config.h"
#include "eb_log.h"
#include "eb_provider.h"

static void usage(FILE *fp)
{
        fprintf(fp,
                "Usage: evbridge [--config FILE] [options]\n"
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
                "      --bootstrap-file F   write the Kafka bootstrap address\n"
                "                           to F once running (embedded mode)\n"
                "  -l, --log-level LEVEL    debug|info|warn|error (overrides\n"
                "                           log.level)\n"
                "  -V, --version            print the version and exit\n"
                "  -h, --help               this text\n"
                "\n"
                "Without --config, evbridge runs on its embedded default: an\n"
                "in-process Kafka mock cluster (nothing is durable) and no\n"
                "sources. See docs/configuration.md.\n");
}

static int check_config(const char *path)
{
        char errstr[1024];
        struct eb_config *cfg = eb_config_load(path, errstr, sizeof(errstr));
        int rc = 0;

        if (!cfg) {
                fprintf(stderr, "%s\n", errstr);
                return 2;
        }
        if (eb_provider_check_config(cfg, errstr, sizeof(errstr))) {
                fprintf(stderr, "%s: %s\n", path, errstr);
                rc = 2;
        } else {
                printf("%s: ok (%zu source(s))\n", path, cfg->sources_cnt);
        }
        eb_config_free(cfg);
        return rc;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'},
                {"check-config", required_argument, NULL, 'C'},
                {"bootstrap-file", required_argument, NULL, 'B'},
                {"log-level", required_argument, NULL, 'l'},
                {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *config = NULL, *bootstrap_file = NULL, *level = NULL;
        struct eb_config *cfg;
        eb_app_t *app;
        char errstr[1024];
        int c, rc;

        while ((c = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'C':
                        rc = check_config(optarg);
                        eb_log_shutdown();
                        return rc;
                case 'B':
                        bootstrap_file = optarg;
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
        rc = eb_app_run(app);
        eb_app_free(app);
        curl_global_cleanup();
        eb_log_shutdown();
        return rc;
}
