/*
 * eb_kafka_admin.c: topics. CreateTopics (state, control and intake topics,
 * tests) and the state topics' creation and contract checks
 * (eb_state_topics_exist(), eb_state_ensure_topics()). Blocking calls,
 * made where a caller may wait (start-up, the probe thread).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_kafka_int.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "state"

int eb_kafka_auth_error(rd_kafka_resp_err_t err)
{
        return err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
               err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
               err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED;
}

int eb_kafka_create_topics(rd_kafka_t *rk, struct eb_kafka_topic_spec *t,
                           size_t n, int timeout_ms, char *errstr,
                           size_t errstr_size)
{
        rd_kafka_NewTopic_t **nt = eb_xcalloc(n ? n : 1, sizeof(*nt));
        rd_kafka_AdminOptions_t *opts = NULL;
        rd_kafka_queue_t *q = NULL;
        rd_kafka_event_t *ev = NULL;
        const rd_kafka_topic_result_t **res;
        char msg[256];
        size_t nres = 0, i, j;
        int rc = -EINVAL;

        if (timeout_ms <= 0)
                timeout_ms = 30000;
        for (i = 0; i < n; i++) {
                t[i].err = RD_KAFKA_RESP_ERR__TIMED_OUT;
                t[i].errstr[0] = '\0';
                nt[i] = rd_kafka_NewTopic_new(t[i].name, t[i].partitions, -1,
                                              msg, sizeof(msg));
                if (!nt[i]) {
                        snprintf(errstr, errstr_size, "topic %s: %s", t[i].name,
                                 msg);
                        goto out;
                }
                for (j = 0; t[i].configs && t[i].configs[j]; j += 2)
                        if (!t[i].configs[j + 1] ||
                            rd_kafka_NewTopic_set_config(nt[i], t[i].configs[j],
                                                         t[i].configs[j + 1])) {
                                snprintf(errstr, errstr_size,
                                         "topic %s: bad config %s", t[i].name,
                                         t[i].configs[j]);
                                goto out;
                        }
        }
        q = rd_kafka_queue_new(rk);
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        if (rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, msg,
                                                      sizeof(msg)) ||
            rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, msg,
                                                        sizeof(msg))) {
                snprintf(errstr, errstr_size, "CreateTopics: %s", msg);
                goto out;
        }
        rd_kafka_CreateTopics(rk, nt, n, opts, q);
        ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        if (!ev || rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "CreateTopics failed: %s",
                         ev ? rd_kafka_event_error_string(ev) : "timed out");
                rc = !ev || rd_kafka_event_error(ev) ==
                                             RD_KAFKA_RESP_ERR__TIMED_OUT
                             ? -ETIMEDOUT
                             : -EIO;
                goto out;
        }
        res = rd_kafka_CreateTopics_result_topics(
                rd_kafka_event_CreateTopics_result(ev), &nres);
        for (j = 0; j < nres; j++) {
                const char *name = rd_kafka_topic_result_name(res[j]);
                const char *estr = rd_kafka_topic_result_error_string(res[j]);

                for (i = 0; i < n; i++) {
                        if (strcmp(name, t[i].name))
                                continue;
                        t[i].err = rd_kafka_topic_result_error(res[j]);
                        snprintf(t[i].errstr, sizeof(t[i].errstr), "%s",
                                 estr ? estr : rd_kafka_err2str(t[i].err));
                }
        }
        rc = 0;
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        if (opts)
                rd_kafka_AdminOptions_destroy(opts);
        if (q)
                rd_kafka_queue_destroy(q);
        for (i = 0; i < n; i++)
                if (nt[i])
                        rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        return rc;
}

/* ---- the state topics ----------------------------------------------------
 */

/* Default bound of eb_state_ensure_topics(). */
#define ENSURE_TIMEOUT_MS 30000

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
        int64_t left = eb_mono_left_ms(deadline);
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
                rc = eb_kafka_auth_error(err)              ? -EACCES
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

int eb_kafka_state_topics_exist(eb_kafka_t *k, const struct eb_config *cfg)
{
        return eb_state_topics_exist(k->rk, cfg);
}

int eb_kafka_ensure_state_topics(eb_kafka_t *k, const struct eb_config *cfg,
                                 int partitions_seen, int timeout_ms,
                                 char *errstr, size_t errstr_size)
{
        return eb_state_ensure_topics(k->rk, k->mock, cfg, partitions_seen,
                                      timeout_ms, errstr, errstr_size);
}

/* ---- topics of a fixed partition count (the shard group) ------------ */

/* @returns the metadata entry of @p topic in @p md, or NULL. */
static const rd_kafka_metadata_topic_t *
find_topic(const struct rd_kafka_metadata *md, const char *topic)
{
        int i;

        for (i = 0; i < md->topic_cnt; i++)
                if (!strcmp(md->topics[i].topic, topic))
                        return &md->topics[i];
        return NULL;
}

/* @returns partitions of @p topic, 0 if it does not exist, -errno.
 *
 * Asks for the metadata of every topic, never of @p topic alone: a
 * producer's Metadata request for one topic lets a broker with
 * auto.create.topics.enable create it on the spot, with the broker's
 * default partition count, before CreateTopics can give it one per
 * shard. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, char *errstr,
                            size_t errstr_size)
{
        const struct rd_kafka_metadata *md = NULL;
        const rd_kafka_metadata_topic_t *t = NULL;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        int n = 0, tries;

        for (tries = 0; tries < 20; tries++) {
                err = rd_kafka_metadata(rk, 1, NULL, &md, 5000);
                if (err) {
                        md = NULL;
                        continue;
                }
                t = find_topic(md, topic);
                if (t && t->err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
                        rd_kafka_metadata_destroy(md);
                        md = NULL;
                        continue;
                }
                break;
        }
        if (!md) {
                snprintf(errstr, errstr_size, "metadata of %s: %s", topic,
                         rd_kafka_err2str(err));
                return -ETIMEDOUT;
        }
        if (t && !t->err)
                n = t->partition_cnt;
        else if (t && t->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                snprintf(errstr, errstr_size, "metadata of %s: %s", topic,
                         rd_kafka_err2str(t->err));
                n = -EIO;
        }
        rd_kafka_metadata_destroy(md);
        return n;
}

static int create_one(rd_kafka_t *rk, const char *topic, int partitions,
                      char *errstr, size_t errstr_size)
{
        struct eb_kafka_topic_spec t;
        char msg[256];

        memset(&t, 0, sizeof(t));
        t.name = topic;
        t.partitions = partitions;
        if (eb_kafka_create_topics(rk, &t, 1, 10000, msg, sizeof(msg))) {
                snprintf(errstr, errstr_size, "create %s: %s", topic, msg);
                return -EIO;
        }
        if (t.err && t.err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                snprintf(errstr, errstr_size, "create %s: %s", topic, t.errstr);
                return -EIO;
        }
        return 0;
}

int eb_kafka_topic_ensure(eb_kafka_t *k, const char *topic, int partitions,
                          char *errstr, size_t errstr_size)
{
        rd_kafka_t *rk = eb_kafka_rk(k);
        int have = topic_partitions(rk, topic, errstr, errstr_size);

        if (have != 0)
                return have;
        if (create_one(rk, topic, partitions, errstr, errstr_size))
                return -EIO;
        /* A created topic reaches the brokers' metadata a moment after
         * CreateTopics answers. */
        for (int i = 0; i < 50 && have == 0; i++) {
                if (i)
                        usleep(200 * 1000);
                have = topic_partitions(rk, topic, errstr, errstr_size);
        }
        return have;
}
