#include "eb_unit.h"

int eb_unit_open(struct eb_unit *u, struct event_base *base,
                 const struct eb_config *cfg, int flags,
                 eb_kafka_fatal_cb_t *fatal, void *opaque, char *errstr,
                 size_t errstr_size)
{
        u->pipeline = NULL;
        u->kafka = eb_kafka_new_ex(base, cfg, flags, errstr, errstr_size);
        if (!u->kafka)
                return -1;
        if (fatal)
                eb_kafka_set_fatal_cb(u->kafka, fatal, opaque);
        u->pipeline = eb_pipeline_new(base, cfg, u->kafka, errstr, errstr_size);
        if (!u->pipeline) {
                eb_kafka_free(u->kafka);
                u->kafka = NULL;
                return -1;
        }
        return 0;
}
