/*
 * evbridge-replay reset-offsets: move a consumer group's committed offsets.
 *
 * Dry run by default: prints CURRENT and NEW per partition. --execute
 * commits NEW for the group with a consumer that uses the group's id but
 * never joins it (a "simple" commit). That is only safe while the group
 * has no members, so the group is described first and the command refuses
 * when members are active. Brokers that cannot describe groups (such as
 * librdkafka's mock cluster) still protect the group: they refuse a simple
 * commit to a group with members (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or
 * REBALANCE_IN_PROGRESS), which is reported the same way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_util.h"
#include "replay.h"

/* 1: active, 0: inactive, -1: unknown (message printed). */
static int group_active(rd_kafka_t *rk, const struct rp_opts *o)
{
        const struct rd_kafka_group_list *gl = NULL;
        rd_kafka_resp_err_t err;
        int i, active = 0, found = 0;

        err = rd_kafka_list_groups(rk, o->group, &gl, (int)o->timeout_ms);
        if (err) {
                fprintf(stderr,
                        "evbridge-replay: notice: cannot describe group %s "
                        "(%s); the broker will still refuse the commit if "
                        "the group has active members\n",
                        o->group, rd_kafka_err2str(err));
                return -1;
        }
        for (i = 0; i < gl->group_cnt; i++) {
                const struct rd_kafka_group_info *g = &gl->groups[i];
                int j;

                if (strcmp(g->group, o->group))
                        continue;
                found = 1;
                if (g->member_cnt > 0 ||
                    (g->state && strcmp(g->state, "Empty") &&
                     strcmp(g->state, "Dead") && g->state[0])) {
                        active = 1;
                        fprintf(stderr,
                                "evbridge-replay: group %s is %s with %d "
                                "member%s:\n",
                                o->group, g->state ? g->state : "active",
                                g->member_cnt, g->member_cnt == 1 ? "" : "s");
                        for (j = 0; j < g->member_cnt; j++)
                                fprintf(stderr, "  %s (client %s, host %s)\n",
                                        g->members[j].member_id,
                                        g->members[j].client_id,
                                        g->members[j].client_host);
                }
        }
        (void)found;
        rd_kafka_group_list_destroy(gl);
        return active;
}

static int member_error(rd_kafka_resp_err_t err)
{
        return err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID ||
               err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
               err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
}

static void print_table(const struct rp_set *set, const int64_t *news)
{
        size_t i, w = 5;
        char cur[32];

        for (i = 0; i < set->ntopics; i++)
                if (strlen(set->topics[i].name) > w)
                        w = strlen(set->topics[i].name);
        printf("%-*s %9s %12s %12s %12s %12s\n", (int)w, "TOPIC", "PARTITION",
               "CURRENT", "NEW", "LOW", "HIGH");
        for (i = 0; i < set->nparts; i++) {
                const struct rp_part *p = &set->parts[i];

                if (p->committed >= 0)
                        snprintf(cur, sizeof(cur), "%lld",
                                 (long long)p->committed);
                else
                        snprintf(cur, sizeof(cur), "-");
                printf("%-*s %9d %12s %12lld %12lld %12lld\n", (int)w, p->topic,
                       (int)p->partition, cur, (long long)news[i],
                       (long long)p->lo, (long long)p->hi);
        }
        fflush(stdout);
}

static rd_kafka_topic_partition_list_t *to_list(const struct rp_set *set,
                                                const int64_t *offs)
{
        rd_kafka_topic_partition_list_t *tpl =
                rd_kafka_topic_partition_list_new((int)set->nparts);
        size_t i;

        for (i = 0; i < set->nparts; i++)
                rd_kafka_topic_partition_list_add(tpl, set->parts[i].topic,
                                                  set->parts[i].partition)
                        ->offset = offs ? offs[i] : RD_KAFKA_OFFSET_INVALID;
        return tpl;
}

int rp_reset_offsets(const struct rp_opts *o)
{
        const char *kv[] = {"group.id",
                            o->group,
                            "enable.auto.commit",
                            "false",
                            "isolation.level",
                            "read_committed",
                            "enable.partition.eof",
                            "true",
                            NULL};
        rd_kafka_topic_partition_list_t *tpl = NULL;
        struct rp_set set;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk = NULL;
        int64_t *news = NULL;
        char errstr[1024];
        int code = RP_EXIT_RUNTIME, active;
        size_t i;

        memset(&set, 0, sizeof(set));
        rk = rp_kafka_new(o, RD_KAFKA_CONSUMER, kv, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                return RP_EXIT_RUNTIME;
        }
        if (rp_select(rk, o, &set, errstr, sizeof(errstr)) ||
            rp_watermarks(rk, o, &set, errstr, sizeof(errstr))) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                goto out;
        }
        tpl = to_list(&set, NULL);
        err = rd_kafka_committed(rk, tpl, (int)o->timeout_ms);
        if (err) {
                fprintf(stderr,
                        "evbridge-replay: committed offsets of group %s: %s\n",
                        o->group, rd_kafka_err2str(err));
                goto out;
        }
        for (i = 0; i < set.nparts; i++) {
                rd_kafka_topic_partition_t *e =
                        rd_kafka_topic_partition_list_find(
                                tpl, set.parts[i].topic,
                                set.parts[i].partition);

                set.parts[i].committed =
                        e && !e->err && e->offset >= 0 ? e->offset : -1;
        }
        rd_kafka_topic_partition_list_destroy(tpl);
        tpl = NULL;
        news = eb_xcalloc(set.nparts, sizeof(*news));
        if (rp_resolve(rk, o, &set, o->froms, o->nfroms, NULL, news, errstr,
                       sizeof(errstr))) {
                fprintf(stderr, "evbridge-replay: %s\n", errstr);
                goto out;
        }
        active = group_active(rk, o);
        print_table(&set, news);
        if (!o->execute) {
                fprintf(stderr,
                        "evbridge-replay: dry run: nothing was changed; add "
                        "--execute to commit these offsets for group %s\n",
                        o->group);
                if (active == 1)
                        fprintf(stderr,
                                "evbridge-replay: warning: --execute would "
                                "be refused while the group has active "
                                "members\n");
                code = RP_EXIT_OK;
                goto out;
        }
        if (active == 1) {
                fprintf(stderr,
                        "evbridge-replay: refusing to reset group %s: it has "
                        "active members; stop its consumers first\n",
                        o->group);
                code = RP_EXIT_GROUP_ACTIVE;
                goto out;
        }
        tpl = to_list(&set, news);
        err = rd_kafka_commit(rk, tpl, 0);
        for (i = 0; !err && i < (size_t)tpl->cnt; i++)
                err = tpl->elems[i].err;
        if (member_error(err)) {
                fprintf(stderr,
                        "evbridge-replay: refusing to reset group %s: the "
                        "broker says it has active members (%s); stop its "
                        "consumers first\n",
                        o->group, rd_kafka_err2str(err));
                code = RP_EXIT_GROUP_ACTIVE;
                goto out;
        }
        if (err) {
                fprintf(stderr, "evbridge-replay: commit for group %s: %s\n",
                        o->group, rd_kafka_err2str(err));
                goto out;
        }
        /* Read them back: what the coordinator holds is what counts. */
        rd_kafka_topic_partition_list_destroy(tpl);
        tpl = to_list(&set, NULL);
        err = rd_kafka_committed(rk, tpl, (int)o->timeout_ms);
        for (i = 0; !err && i < set.nparts; i++) {
                rd_kafka_topic_partition_t *e = &tpl->elems[i];

                if (e->err || e->offset != news[i]) {
                        fprintf(stderr,
                                "evbridge-replay: %s:%d reads back as %lld, "
                                "not %lld\n",
                                e->topic, (int)e->partition,
                                (long long)e->offset, (long long)news[i]);
                        goto out;
                }
        }
        if (err) {
                fprintf(stderr, "evbridge-replay: reading back: %s\n",
                        rd_kafka_err2str(err));
                goto out;
        }
        fprintf(stderr,
                "evbridge-replay: committed new offsets for %zu partition%s "
                "of group %s\n",
                set.nparts, set.nparts == 1 ? "" : "s", o->group);
        code = RP_EXIT_OK;
out:
        if (tpl)
                rd_kafka_topic_partition_list_destroy(tpl);
        free(news);
        rp_set_fini(&set);
        if (rk) {
                (void)rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        return code;
}
