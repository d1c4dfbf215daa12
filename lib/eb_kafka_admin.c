/*
 * eb_kafka_admin.c: topics. CreateTopics for the state, control and intake
 * topics and for the tests. Blocking calls, made where a caller may wait
 * (start-up, the probe thread).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_kafka_int.h"
#include "eb_util.h"

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
