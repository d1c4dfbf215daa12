/*
 * Integration tests for eb_kafka exactly as the daemon runs it:
 * eb_kafka_new() on a real event_base, delivery reports served by the
 * loop through the wake-up pipe.
 *
 * On a real Apache Kafka broker (tests/kafka/broker through eb_tkafka, one
 * node for the binary): what was published is read back three ways,
 * eb_kmock (our librdkafka reader), the kcat CLI and python3-confluent-
 * kafka, all with isolation.level=read_committed; queue full while the
 * broker is paused (SIGSTOP), then delivered once it resumes; delivery
 * timing out against a paused broker; local refusals; a fatal error.
 *
 * On the embedded cluster (librdkafka 2.0.2's mock, what `make run` and a
 * bare evbridge use): the same publish and read-back, with the "NOTHING IS
 * DURABLE" warning, and the configuration errors, kafka.embedded_brokers
 * among them.
 */
#include "eb_event.h"
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tkafka.h"
#include "eb_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_EVENTS 50
#define T_KOMMO  "crm.kommo.lead.status-changed"
#define T_CLOSE  "crm.close.opportunity.updated"
#define T_EMAIL  "crm.close.activity.email.created"
#define T_KOTA   "crm.kota.employee.created"

struct slot {
        int fired; /* callback count: must end at exactly 1 */
        int err;
        eb_kafka_persisted_t persisted;
        char errstr[128];
};

struct pub {
        eb_kafka_t *k;
        int done; /* callbacks so far */
        struct slot *slots;
};

static struct pub *cur_pub; /* the test running now (callbacks) */

/* The real broker, shared by the cases (NULL if it could not start). */
static eb_tkafka_t *kafka;

static void on_delivery(void *opaque, int err, const char *errstr)
{
        struct slot *s = opaque;

        s->fired++;
        s->err = err;
        s->persisted = eb_kafka_dr_persisted(cur_pub->k);
        snprintf(s->errstr, sizeof(s->errstr), "%s", errstr ? errstr : "");
        cur_pub->done++;
}

/* @p brokers 0: the real broker; else an embedded cluster of that many. */
static void cfg_init(struct eb_config *cfg, int brokers)
{
        memset(cfg, 0, sizeof(*cfg));
        if (brokers) {
                cfg->embedded = 1;
                cfg->embedded_brokers = brokers;
        } else {
                cfg->brokers =
                        kafka ? (char *)eb_tkafka_bootstrap(kafka) : NULL;
        }
        cfg->queue_max_messages = 100000;
        cfg->drain_timeout_ms = EB_T_TMOUT(5000);
}

/* Run the loop until @p *counter reaches @p target or the time is up. */
/* ---- the events --------------------------------------------------------
 * Four types over three providers; several events per entity so per-key
 * ordering can be checked. The Kota type goes out in binary mode. */

static struct eb_event *make_event(int i)
{
        struct eb_event *evt = eb_event_new();
        int ent = i % 3; /* entity within the type */

        evt->time_ms = INT64_C(1665064411000) + i * 1000;
        switch (i % 4) {
        case 0:
                evt->id = eb_xasprintf("01hx3c9q7m2k4v8r6t0w5y%04d", i);
                evt->source_name = eb_xstrdup("acme-kommo");
                evt->provider = eb_xstrdup("kommo");
                evt->account = eb_xstrdup("example");
                evt->entity_type = eb_xstrdup("lead");
                evt->entity_id = eb_xasprintf("%d", 1234567 + ent);
                evt->action = eb_xstrdup("status_changed");
                evt->actor = eb_xstrdup("7654321");
                evt->fields = json_pack("{s:i, s:i, s:i}", "pipeline_id",
                                        437642, "status_id", 5233224 + i,
                                        "old_status_id", 5233221);
                evt->native = json_pack(
                        "{s:s, s:s, s:i, s:s, s:i, s:i, s:[{s:{s:i, s:i}}]}",
                        "id", evt->id, "type", "lead_status_changed",
                        "entity_id", 1234567 + ent, "entity_type", "lead",
                        "created_by", 7654321, "created_at",
                        (int)(evt->time_ms / 1000), "value_after",
                        "lead_status", "id", 5233224 + i, "pipeline_id",
                        437642);
                break;
        case 1:
                evt->id = eb_xasprintf("ev_2sYKRjcrA79yKxi3S4C%04d", i);
                evt->source_name = eb_xstrdup("acme-close");
                evt->provider = eb_xstrdup("close");
                evt->account = eb_xstrdup("orga_XbVPx5fFbKlYTz9PW5Ih1");
                evt->entity_type = eb_xstrdup("opportunity");
                evt->entity_id = eb_xasprintf("oppo_7H4sjNso7Fy%d", ent);
                evt->action = eb_xstrdup("updated");
                evt->actor = eb_xstrdup("user_N6KhMpzHRCYQ");
                evt->version = eb_xstrdup("2019-01-15T12:48:23.395Z");
                evt->fields = json_pack("{s:[s,s]}", "changed_fields",
                                        "confidence", "status_id");
                evt->native =
                        json_pack("{s:s, s:s, s:s, s:{s:i}}", "id", evt->id,
                                  "object_type", "opportunity", "action",
                                  "updated", "data", "confidence", 100);
                break;
        case 2:
                evt->id = eb_xasprintf("ev_email%04d", i);
                evt->source_name = eb_xstrdup("acme-close");
                evt->provider = eb_xstrdup("close");
                evt->account = eb_xstrdup("orga_XbVPx5fFbKlYTz9PW5Ih1");
                evt->entity_type = eb_xstrdup("activity.email");
                evt->entity_id = eb_xasprintf("acti_%d", ent);
                evt->action = eb_xstrdup("created");
                evt->native = json_pack("{s:s, s:s, s:s}", "id", evt->id,
                                        "object_type", "activity.email", "note",
                                        "unicode \xc3\xa9 \"quoted\"");
                break;
        default:
                evt->id = eb_xasprintf("evt_3b1333d87d9d4fd6ad83ba7f6b%04d", i);
                evt->source_name = eb_xstrdup("acme-kota");
                evt->provider = eb_xstrdup("kota");
                evt->account = eb_xstrdup("pt_3b1333d87d9d4fd6");
                evt->entity_type = eb_xstrdup("employee");
                evt->entity_id = eb_xasprintf("ee_3b1333d87d9d%d", ent);
                evt->action = eb_xstrdup("created");
                evt->fields = json_pack("{s:s}", "status", "pending");
                evt->native = json_pack("{s:s, s:s, s:{s:s}}", "id", evt->id,
                                        "type", "employee.created", "data",
                                        "first_name", "Jane");
                break;
        }
        return evt;
}

static const char *topic_of(int i)
{
        static const char *const t[] = {T_KOMMO, T_CLOSE, T_EMAIL, T_KOTA};

        return t[i % 4];
}

static size_t expected_count(const char *topic)
{
        size_t n = 0;
        int i;

        for (i = 0; i < N_EVENTS; i++)
                if (!strcmp(topic_of(i), topic))
                        n++;
        return n;
}

/* Which produced envelope carries this ce id? -1 if none. */
static int find_env(const struct eb_envelope *envs, const char *id)
{
        int i, j;

        for (i = 0; i < N_EVENTS; i++)
                for (j = 0; j < envs[i].header_cnt; j++)
                        if (!strcmp(envs[i].headers[j].name, "ce_id") &&
                            !strcmp(envs[i].headers[j].value, id))
                                return i;
        for (i = 0; i < N_EVENTS; i++) {
                json_t *root = json_loads(envs[i].value, 0, NULL);
                const char *rid =
                        json_string_value(json_object_get(root, "id"));
                int hit = rid && !strcmp(rid, id);

                json_decref(root);
                if (hit)
                        return i;
        }
        return -1;
}

/* The event id of a record: "id" in structured mode, ce_id in binary. */
static char *record_id(const char *value, const char *ce_id)
{
        json_t *root;
        char *id = NULL;

        if (ce_id)
                return eb_xstrdup(ce_id);
        root = json_loads(value ? value : "", 0, NULL);
        if (root)
                id = eb_xstrdup(json_string_value(json_object_get(root, "id")));
        json_decref(root);
        return id;
}

/* ---- reading back with eb_kmock ---------------------------------------- */

static void check_kmock(const char *bootstrap, const struct eb_envelope *envs,
                        int64_t start_ms)
{
        const char *const topics[] = {T_KOMMO, T_CLOSE, T_EMAIL, T_KOTA, NULL};
        struct eb_kmock_records recs;
        int seen[N_EVENTS] = {0};
        size_t i, j;
        int rc;

        rc = eb_kmock_consume_all(bootstrap, topics, EB_T_TMOUT(20000), &recs);
        EB_CHECK_INT(rc, 0);
        EB_CHECK_INT(recs.cnt, N_EVENTS);
        for (i = 0; topics[i]; i++)
                EB_CHECK_INT(eb_kmock_count(&recs, topics[i]),
                             expected_count(topics[i]));

        for (i = 0; i < recs.cnt; i++) {
                const struct eb_kmock_record *r = &recs.v[i];
                char *id = record_id(r->value, eb_kmock_header(r, "ce_id"));
                int e = id ? find_env(envs, id) : -1;
                const struct eb_envelope *env;
                int h;

                free(id);
                EB_CHECK(e >= 0);
                if (e < 0)
                        continue;
                env = &envs[e];
                seen[e]++;
                EB_CHECK_STR(r->topic, env->topic);
                EB_CHECK_STR(r->key, env->key);
                EB_CHECK_INT(r->key_len, env->key_len);
                /* the exact bytes that were rendered */
                EB_CHECK_STR(r->value, env->value);
                EB_CHECK_INT(r->value_len, env->value_len);
                EB_CHECK_INT(r->header_cnt, env->header_cnt);
                for (h = 0; h < env->header_cnt && (size_t)h < r->header_cnt;
                     h++) {
                        EB_CHECK_STR(r->headers[h].name, env->headers[h].name);
                        EB_CHECK_STR(r->headers[h].value,
                                     env->headers[h].value);
                }
                /* Kafka timestamp is ingest time, not the upstream time
                 * (2022), which travels in the envelope. */
                EB_CHECK(r->timestamp >= start_ms - 60000);
        }
        for (i = 0; i < N_EVENTS; i++)
                EB_CHECK_INT(seen[i], 1);

        /* One entity, one partition, in publish order. */
        for (i = 0; i < recs.cnt; i++)
                for (j = i + 1; j < recs.cnt; j++) {
                        const struct eb_kmock_record *a = &recs.v[i];
                        const struct eb_kmock_record *b = &recs.v[j];
                        char *ia, *ib;

                        if (strcmp(a->key, b->key))
                                continue;
                        EB_CHECK_INT(a->partition, b->partition);
                        /* sorted by offset, so a was written first */
                        ia = record_id(a->value, eb_kmock_header(a, "ce_id"));
                        ib = record_id(b->value, eb_kmock_header(b, "ce_id"));
                        EB_CHECK(ia && ib &&
                                 find_env(envs, ia) < find_env(envs, ib));
                        free(ia);
                        free(ib);
                }
        eb_kmock_records_free(&recs);
}

/* ---- reading back with external consumers ----------------------------- */

/*
 * Check one topic as read by an external tool. Each line of @p fp is a
 * JSON object {"key":..., "payload":..., "headers":[n, v, n, v, ...]}
 * (kcat -J's shape; the Python reader prints the same).
 */
static void check_external(FILE *fp, const char *tool, const char *topic,
                           const struct eb_envelope *envs)
{
        char *line = NULL;
        size_t cap = 0;
        size_t n = 0;
        int seen[N_EVENTS] = {0};
        int i;

        while (getline(&line, &cap, fp) > 0) {
                json_error_t jerr;
                json_t *root = json_loads(line, 0, &jerr);
                json_t *hdrs;
                const char *payload, *key, *ce_id = NULL;
                char *id;
                int e;
                size_t h;

                if (!root) {
                        fprintf(stderr, "  %s: not JSON: %s", tool, line);
                        EB_CHECK(root != NULL);
                        continue;
                }
                n++;
                payload = json_string_value(json_object_get(root, "payload"));
                key = json_string_value(json_object_get(root, "key"));
                hdrs = json_object_get(root, "headers");
                EB_CHECK(json_is_array(hdrs));
                for (h = 0; h + 1 < json_array_size(hdrs); h += 2)
                        if (!strcmp(json_string_value(json_array_get(hdrs, h)),
                                    "ce_id"))
                                ce_id = json_string_value(
                                        json_array_get(hdrs, h + 1));
                id = record_id(payload, ce_id);
                e = id ? find_env(envs, id) : -1;
                free(id);
                if (e < 0) {
                        fprintf(stderr, "  %s: unknown record: %s", tool, line);
                        EB_CHECK(e >= 0);
                        json_decref(root);
                        continue;
                }
                seen[e]++;
                EB_CHECK_STR(envs[e].topic, topic);
                EB_CHECK_STR(key, envs[e].key);
                EB_CHECK_STR(payload, envs[e].value);
                EB_CHECK_INT(json_array_size(hdrs),
                             2 * (size_t)envs[e].header_cnt);
                for (h = 0; (int)h < envs[e].header_cnt &&
                            2 * h + 1 < json_array_size(hdrs);
                     h++) {
                        EB_CHECK_STR(
                                json_string_value(json_array_get(hdrs, 2 * h)),
                                envs[e].headers[h].name);
                        EB_CHECK_STR(json_string_value(
                                             json_array_get(hdrs, 2 * h + 1)),
                                     envs[e].headers[h].value);
                }
                json_decref(root);
        }
        free(line);
        EB_CHECK_INT(n, expected_count(topic));
        for (i = 0; i < N_EVENTS; i++)
                if (!strcmp(topic_of(i), topic))
                        EB_CHECK_INT(seen[i], 1);
}

static void check_kcat(const char *bootstrap, const char *topic,
                       const struct eb_envelope *envs)
{
        char *cmd = eb_xasprintf("timeout 60 kcat -C -q -b '%s' -t '%s' -e -J "
                                 "-X isolation.level=read_committed",
                                 bootstrap, topic);
        FILE *fp = popen(cmd, "r");
        int st;

        EB_REQUIRE(fp != NULL);
        check_external(fp, "kcat", topic, envs);
        st = pclose(fp);
        EB_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        free(cmd);
}

/* A short confluent_kafka reader: assign every partition, read to EOF. */
static const char py_reader[] =
        "import json, sys, time\n"
        "from confluent_kafka import (Consumer, KafkaError, TopicPartition,\n"
        "                             OFFSET_BEGINNING)\n"
        "bootstrap, topic = sys.argv[1], sys.argv[2]\n"
        "c = Consumer({'bootstrap.servers': bootstrap,\n"
        "              'group.id': 'eb-test-python',\n"
        "              'isolation.level': 'read_committed',\n"
        "              'auto.offset.reset': 'earliest',\n"
        "              'enable.partition.eof': True,\n"
        "              'enable.auto.commit': False})\n"
        "parts = list(c.list_topics(topic, timeout=20).topics[topic]"
        ".partitions)\n"
        "c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in "
        "parts])\n"
        "left, deadline = set(parts), time.time() + 40\n"
        "while left and time.time() < deadline:\n"
        "    m = c.poll(0.5)\n"
        "    if m is None:\n"
        "        continue\n"
        "    if m.error():\n"
        "        if m.error().code() == KafkaError._PARTITION_EOF:\n"
        "            left.discard(m.partition())\n"
        "        else:\n"
        "            print('error:', m.error(), file=sys.stderr)\n"
        "        continue\n"
        "    hdrs = []\n"
        "    for k, v in (m.headers() or []):\n"
        "        hdrs += [k, v.decode()]\n"
        "    print(json.dumps({'key': m.key().decode(),\n"
        "                      'payload': m.value().decode(),\n"
        "                      'headers': hdrs}), flush=True)\n"
        "c.close()\n"
        "sys.exit(3 if left else 0)\n";

static void check_python(const char *bootstrap, const char *topic,
                         const struct eb_envelope *envs)
{
        char script[] = "/tmp/eb_test_publish_XXXXXX";
        int fd = mkstemp(script);
        char *cmd = NULL;
        FILE *fp;
        int st;

        EB_REQUIRE(fd >= 0);
        EB_REQUIRE(write(fd, py_reader, strlen(py_reader)) ==
                   (ssize_t)strlen(py_reader));
        close(fd);
        cmd = eb_xasprintf("timeout 60 /usr/bin/python3 '%s' '%s' '%s'", script,
                           bootstrap, topic);
        fp = popen(cmd, "r");
        if (fp) {
                check_external(fp, "python", topic, envs);
                st = pclose(fp);
                EB_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        EB_CHECK(fp != NULL);
        unlink(script);
        free(cmd);
}

/* ---- tests ------------------------------------------------------------- */

static int saw_embedded_warning;

static void log_sink(const char *line, void *opaque)
{
        (void)opaque;
        if (strstr(line, "NOTHING IS DURABLE"))
                saw_embedded_warning = 1;
        fprintf(stderr, "%s\n", line);
}

/* @p embedded: on a 3-broker embedded cluster (else the real broker). */
static void check_publish_and_read_back(int embedded)
{
        struct eb_envelope envs[N_EVENTS];
        struct slot slots[N_EVENTS];
        struct eb_kmock_topic *topics = NULL;
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct pub pub;
        size_t ntopics = 0;
        int64_t start_ms = eb_now_ms();
        char errstr[512] = "";
        const char *bootstrap;
        int i;

        memset(envs, 0, sizeof(envs));
        memset(slots, 0, sizeof(slots));
        memset(&pub, 0, sizeof(pub));
        cfg_init(&cfg, embedded ? 3 : 0);
        saw_embedded_warning = 0;
        eb_log_set_sink(log_sink, NULL);
        pub.k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        eb_log_set_sink(NULL, NULL);
        pub.slots = slots;
        cur_pub = &pub;
        if (!pub.k)
                fprintf(stderr, "  eb_kafka_new: %s\n", errstr);
        EB_REQUIRE(pub.k != NULL);
        EB_CHECK_INT(saw_embedded_warning, embedded);
        EB_CHECK_INT(eb_kafka_embedded(pub.k), embedded);
        bootstrap = eb_kafka_bootstrap(pub.k);
        EB_CHECK(bootstrap && !strncmp(bootstrap, "127.0.0.1:", 10));
        EB_CHECK_INT(eb_kafka_mock_cluster(pub.k) != NULL, embedded);

        /* One topic is made up front with 3 partitions, the others are
         * auto-created by the first produce. */
        if (embedded)
                EB_CHECK_INT(eb_kmock_create_topic(eb_kafka_mock_cluster(pub.k),
                                                   T_KOMMO, 3),
                             0);
        else
                EB_CHECK_INT(
                        eb_tkafka_create_topic(bootstrap, T_KOMMO, 3, NULL), 0);

        for (i = 0; i < N_EVENTS; i++) {
                struct eb_event *evt = make_event(i);
                int rc = eb_envelope_render(evt, NULL, "crm",
                                            i % 4 == 3 ? EB_ENVELOPE_BINARY
                                                       : EB_ENVELOPE_STRUCTURED,
                                            &envs[i]);

                eb_event_free(evt);
                EB_CHECK_INT(rc, 0);
                EB_CHECK_STR(envs[i].topic, topic_of(i));
                EB_CHECK_INT(eb_kafka_produce(pub.k, &envs[i], on_delivery,
                                              &slots[i]),
                             0);
        }
        EB_CHECK_INT(eb_test_run_until(base, &pub.done, N_EVENTS, 30000), 0);
        for (i = 0; i < N_EVENTS; i++) {
                EB_CHECK_INT(slots[i].fired, 1);
                EB_CHECK_INT(slots[i].err, 0);
                EB_CHECK_INT(slots[i].persisted, EB_KAFKA_PERSISTED);
        }
        eb_kafka_get_stats(pub.k, &st);
        EB_CHECK_INT(st.produced, N_EVENTS);
        EB_CHECK_INT(st.delivered, N_EVENTS);
        EB_CHECK_INT(st.failed, 0);
        EB_CHECK_INT(st.queue_full, 0);
        EB_CHECK_INT(eb_kafka_flush(pub.k, 1000), 0);
        EB_CHECK_INT(eb_kafka_outq_len(pub.k), 0);

        EB_CHECK_INT(eb_kmock_list_topics(bootstrap, EB_T_TMOUT(10000), &topics,
                                          &ntopics),
                     0);
        EB_CHECK(eb_kmock_topics_has(topics, ntopics, T_KOMMO));
        EB_CHECK(eb_kmock_topics_has(topics, ntopics, T_CLOSE));
        EB_CHECK(eb_kmock_topics_has(topics, ntopics, T_EMAIL));
        EB_CHECK(eb_kmock_topics_has(topics, ntopics, T_KOTA));
        for (i = 0; (size_t)i < ntopics; i++)
                if (!strcmp(topics[i].name, T_KOMMO))
                        EB_CHECK_INT(topics[i].partitions, 3);
        eb_kmock_topics_free(topics, ntopics);

        check_kmock(bootstrap, envs, start_ms);
        check_kcat(bootstrap, T_KOMMO, envs);
        check_python(bootstrap, T_KOMMO, envs);
        /* binary mode through both external readers as well */
        check_kcat(bootstrap, T_KOTA, envs);
        check_python(bootstrap, T_KOTA, envs);

        /* A missing topic is an error, not an empty read. */
        {
                const char *const missing[] = {"crm.nope", NULL};
                struct eb_kmock_records recs;

                EB_CHECK_INT(eb_kmock_consume_all(bootstrap, missing,
                                                  EB_T_TMOUT(10000), &recs),
                             -ENOENT);
                EB_CHECK_INT(recs.cnt, 0);
                eb_kmock_records_free(&recs);
        }

        eb_kafka_free(pub.k);
        for (i = 0; i < N_EVENTS; i++) {
                EB_CHECK_INT(slots[i].fired, 1); /* free fired nothing more */
                eb_envelope_fini(&envs[i]);
        }
        cur_pub = NULL;
        event_base_free(base);
}

static void test_publish_and_read_back(void)
{
        EB_REQUIRE(kafka != NULL);
        check_publish_and_read_back(0);
}

static void test_publish_and_read_back_embedded(void)
{
        check_publish_and_read_back(1);
}

static void render_one(struct eb_envelope *env, int i)
{
        struct eb_event *evt = make_event(i);

        if (eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_STRUCTURED, env) !=
            0)
                memset(env, 0, sizeof(*env));
        eb_event_free(evt);
}

/* Queue full with the broker paused (SIGSTOP): -EAGAIN, no blocking;
 * once the broker answers again everything accepted is delivered. */
static void test_queue_full_broker_paused(void)
{
        struct eb_kv props[] = {
                {(char *)"reconnect.backoff.ms", (char *)"50"},
                {(char *)"reconnect.backoff.max.ms", (char *)"300"},
        };
        struct event_base *base = event_base_new();
        struct slot slots[6];
        struct eb_envelope env;
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct pub pub;
        char errstr[512] = "";
        int i;

        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        memset(slots, 0, sizeof(slots));
        memset(&pub, 0, sizeof(pub));
        cfg_init(&cfg, 0);
        cfg.queue_max_messages = 5;
        cfg.properties = props;
        cfg.properties_cnt = 2;
        pub.k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        cur_pub = &pub;
        EB_REQUIRE(pub.k != NULL);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        render_one(&env, 1);
        EB_REQUIRE(env.value != NULL);
        for (i = 0; i < 5; i++)
                EB_CHECK_INT(
                        eb_kafka_produce(pub.k, &env, on_delivery, &slots[i]),
                        0);
        EB_CHECK_INT(eb_kafka_produce(pub.k, &env, on_delivery, &slots[5]),
                     -EAGAIN);
        eb_kafka_get_stats(pub.k, &st);
        EB_CHECK_INT(st.queue_full, 1);
        EB_CHECK_INT(st.produced, 5);

        EB_CHECK_INT(pub.done, 0);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        EB_CHECK_INT(eb_test_run_until(base, &pub.done, 5, 30000), 0);
        for (i = 0; i < 5; i++) {
                EB_CHECK_INT(slots[i].fired, 1);
                EB_CHECK_INT(slots[i].err, 0);
        }
        EB_CHECK_INT(slots[5].fired, 0); /* refused: no callback ever */
        EB_CHECK_INT(eb_kafka_produce(pub.k, &env, on_delivery, &slots[5]), 0);
        EB_CHECK_INT(eb_test_run_until(base, &pub.done, 6, 30000), 0);
        EB_CHECK_INT(slots[5].err, 0);
        eb_kafka_free(pub.k);
        eb_envelope_fini(&env);
        cur_pub = NULL;
        event_base_free(base);
}

static int closed_port(void)
{
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int port = -1;

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

/* A producer pointed at a closed port: queue full gives -EAGAIN, and
 * eb_kafka_free() fires the pending callbacks with -ECANCELED. */
static void test_queue_full_closed_port(void)
{
        struct event_base *base = event_base_new();
        struct slot slots[4];
        struct eb_envelope env;
        struct eb_config cfg;
        struct pub pub;
        char errstr[512] = "";
        char *brokers;
        int port = closed_port();
        int i;

        EB_REQUIRE(port > 0);
        memset(slots, 0, sizeof(slots));
        memset(&pub, 0, sizeof(pub));
        memset(&cfg, 0, sizeof(cfg));
        brokers = eb_xasprintf("127.0.0.1:%d", port);
        cfg.brokers = brokers;
        cfg.queue_max_messages = 3;
        cfg.drain_timeout_ms = 300;
        pub.k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        cur_pub = &pub;
        EB_REQUIRE(pub.k != NULL);
        EB_CHECK(!eb_kafka_embedded(pub.k));
        EB_CHECK(eb_kafka_mock_cluster(pub.k) == NULL);
        EB_CHECK_STR(eb_kafka_bootstrap(pub.k), brokers);
        render_one(&env, 2);
        for (i = 0; i < 3; i++)
                EB_CHECK_INT(
                        eb_kafka_produce(pub.k, &env, on_delivery, &slots[i]),
                        0);
        EB_CHECK_INT(eb_kafka_produce(pub.k, &env, on_delivery, &slots[3]),
                     -EAGAIN);
        /* a little loop time: connection errors are served, nothing is
         * delivered */
        {
                int never = 0;

                (void)eb_test_run_until(base, &never, 1, 500);
        }
        EB_CHECK_INT(pub.done, 0);
        EB_CHECK(eb_kafka_outq_len(pub.k) >= 3);
        EB_CHECK_INT(eb_kafka_flush(pub.k, 100), -ETIMEDOUT);
        eb_kafka_free(pub.k);
        EB_CHECK_INT(pub.done, 3);
        for (i = 0; i < 3; i++) {
                EB_CHECK_INT(slots[i].fired, 1);
                EB_CHECK_INT(slots[i].err, -ECANCELED);
                EB_CHECK_INT(slots[i].persisted, EB_KAFKA_NOT_PERSISTED);
        }
        EB_CHECK_INT(slots[3].fired, 0);
        eb_envelope_fini(&env);
        free(brokers);
        cur_pub = NULL;
        event_base_free(base);
}

/* message.timeout.ms from kafka.properties is honoured against a paused
 * broker: -ETIMEDOUT. */
static void test_delivery_timeout(void)
{
        struct eb_kv props[] = {
                {(char *)"message.timeout.ms", (char *)"1000"},
        };
        struct event_base *base = event_base_new();
        struct slot slot;
        struct eb_envelope env;
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct pub pub;
        char errstr[512] = "";

        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        memset(&slot, 0, sizeof(slot));
        memset(&pub, 0, sizeof(pub));
        cfg_init(&cfg, 0);
        cfg.properties = props;
        cfg.properties_cnt = 1;
        pub.k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        cur_pub = &pub;
        EB_REQUIRE(pub.k != NULL);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        render_one(&env, 0);
        EB_CHECK_INT(eb_kafka_produce(pub.k, &env, on_delivery, &slot), 0);
        EB_CHECK_INT(eb_test_run_until(base, &pub.done, 1, 30000), 0);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        EB_CHECK_INT(slot.fired, 1);
        EB_CHECK_INT(slot.err, -ETIMEDOUT);
        EB_CHECK(slot.errstr[0] != '\0');
        EB_CHECK_INT(slot.persisted, EB_KAFKA_NOT_PERSISTED);
        eb_kafka_get_stats(pub.k, &st);
        EB_CHECK_INT(st.failed, 1);
        EB_CHECK_INT(st.delivered, 0);
        eb_kafka_free(pub.k);
        eb_envelope_fini(&env);
        cur_pub = NULL;
        event_base_free(base);
}

/* Local refusals: too large for message.max.bytes, missing topic. */
static void test_produce_invalid(void)
{
        struct eb_kv props[] = {
                {(char *)"message.max.bytes", (char *)"2000"},
        };
        struct event_base *base = event_base_new();
        struct eb_envelope env;
        struct eb_config cfg;
        char errstr[512] = "";
        eb_kafka_t *k;
        char *big;

        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, 0);
        cfg.properties = props;
        cfg.properties_cnt = 1;
        k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        EB_REQUIRE(k != NULL);
        render_one(&env, 1);
        big = eb_xmalloc(5001);
        memset(big, 'x', 5000);
        big[5000] = '\0';
        free(env.value);
        env.value = big;
        env.value_len = 5000;
        EB_CHECK_INT(eb_kafka_produce(k, &env, NULL, NULL), -EINVAL);
        free(env.topic);
        env.topic = NULL;
        EB_CHECK_INT(eb_kafka_produce(k, &env, NULL, NULL), -EINVAL);
        eb_kafka_free(k);
        eb_envelope_fini(&env);
        event_base_free(base);
}

static int fatal_calls;
static char fatal_reason[256];

static void on_fatal(void *opaque, const char *reason)
{
        (void)opaque;
        fatal_calls++;
        snprintf(fatal_reason, sizeof(fatal_reason), "%s", reason);
}

/* A fatal producer error reaches the fatal callback on the loop, and
 * produce refuses afterwards. */
static void test_fatal_error(void)
{
        struct event_base *base = event_base_new();
        struct eb_envelope env;
        struct eb_config cfg;
        char errstr[512] = "";
        eb_kafka_t *k;

        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, 0);
        k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        EB_REQUIRE(k != NULL);
        eb_kafka_set_fatal_cb(k, on_fatal, NULL);
        fatal_calls = 0;
        EB_CHECK_INT(rd_kafka_test_fatal_error(
                             eb_kafka_rk(k),
                             RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                             "injected by test"),
                     0);
        EB_CHECK_INT(eb_test_run_until(base, &fatal_calls, 1, 10000), 0);
        EB_CHECK_INT(fatal_calls, 1);
        EB_CHECK(strstr(fatal_reason, "injected by test") != NULL);
        render_one(&env, 1);
        EB_CHECK_INT(eb_kafka_produce(k, &env, NULL, NULL), -EIO);
        eb_kafka_free(k);
        eb_envelope_fini(&env);
        event_base_free(base);
}

/* Set-up errors name the offending key. */
static void test_bad_config(void)
{
        static const struct {
                const char *key, *value;
                const char *want; /* prefix of errstr */
                const char *also; /* substring */
        } cases[] = {
                {"foo", "bar", "kafka.properties.foo: ", "foo"},
                {"acks", "sometimes",
                 "kafka.properties.acks: ", "Invalid value"},
                {"message.timeout.ms", "-5",
                 "kafka.properties.message."
                 "timeout.ms: ",
                 "message.timeout.ms"},
                /* valid alone, but not with idempotence: rd_kafka_new() */
                {"acks", "1", "kafka: ", "acks"},
        };
        struct event_base *base = event_base_new();
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct eb_kv kv = {(char *)cases[i].key,
                                   (char *)cases[i].value};
                struct eb_config cfg;
                char errstr[512] = "";
                eb_kafka_t *k;

                cfg_init(&cfg, 1);
                cfg.properties = &kv;
                cfg.properties_cnt = 1;
                k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
                EB_CHECK(k == NULL);
                eb_kafka_free(k);
                if (strncmp(errstr, cases[i].want, strlen(cases[i].want)) ||
                    !strstr(errstr, cases[i].also)) {
                        fprintf(stderr, "  %s=%s: \"%s\"\n", cases[i].key,
                                cases[i].value, errstr);
                        EB_CHECK(0);
                }
        }
        {
                struct eb_config cfg;
                char errstr[512] = "";

                cfg_init(&cfg, 17);
                EB_CHECK(eb_kafka_new(base, &cfg, errstr, sizeof(errstr)) ==
                         NULL);
                EB_CHECK(strstr(errstr, "kafka.embedded_brokers") != NULL);

                memset(&cfg, 0, sizeof(cfg)); /* not embedded, no brokers */
                errstr[0] = '\0';
                EB_CHECK(eb_kafka_new(base, &cfg, errstr, sizeof(errstr)) ==
                         NULL);
                EB_CHECK(strstr(errstr, "kafka.brokers") != NULL);
        }
        eb_kafka_free(NULL);
        event_base_free(base);
}

int main(void)
{
        kafka = eb_tkafka_start(1, NULL);
        if (kafka)
                fprintf(stderr, "  info: broker: %s at %s\n",
                        eb_tkafka_describe(kafka), eb_tkafka_bootstrap(kafka));
        /* the real broker */
        EB_RUN(test_publish_and_read_back);
        EB_RUN(test_queue_full_broker_paused);
        EB_RUN(test_delivery_timeout);
        EB_RUN(test_produce_invalid);
        EB_RUN(test_fatal_error);
        /* no broker at all */
        EB_RUN(test_queue_full_closed_port);
        /* the embedded mock */
        EB_RUN(test_publish_and_read_back_embedded);
        EB_RUN(test_bad_config);
        eb_tkafka_stop(kafka);
        eb_log_shutdown();
        return eb_test_summary();
}
