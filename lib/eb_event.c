#include "eb_event.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "eb_json.h"
#include "eb_util.h"

struct eb_event *eb_event_new(void)
{
        return eb_xcalloc(1, sizeof(struct eb_event));
}

void eb_event_free(struct eb_event *evt)
{
        if (!evt)
                return;
        free(evt->id);
        free(evt->source_name);
        free(evt->provider);
        free(evt->account);
        free(evt->entity_type);
        free(evt->entity_id);
        free(evt->action);
        free(evt->actor);
        free(evt->version);
        json_decref(evt->fields);
        json_decref(evt->native);
        free(evt->deadletter);
        free(evt->position);
        eb_json_src_unref(evt->src);
        free(evt);
}

void eb_events_free(struct eb_event **evts, size_t cnt)
{
        size_t i;

        for (i = 0; i < cnt; i++)
                eb_event_free(evts[i]);
        free(evts);
}

static void lower(char *s)
{
        for (; *s; s++)
                *s = (char)tolower((unsigned char)*s);
}

char *eb_event_type(const struct eb_event *evt)
{
        char *t = eb_xasprintf("%s.%s.%s", evt->provider ? evt->provider : "",
                               evt->entity_type ? evt->entity_type : "",
                               evt->action ? evt->action : "");
        lower(t);
        return t;
}

char *eb_event_key(const struct eb_event *evt)
{
        return eb_xasprintf("%s/%s/%s",
                            evt->source_name ? evt->source_name : "",
                            evt->entity_type ? evt->entity_type : "",
                            evt->entity_id ? evt->entity_id : "");
}

char *eb_event_dedupe_key(const struct eb_event *evt, size_t *lenp)
{
        char *k = eb_xasprintf(
                "%s\x1f%s\x1f%s", evt->source_name ? evt->source_name : "",
                evt->id ? evt->id : "", evt->version ? evt->version : "");
        if (lenp)
                *lenp = strlen(k);
        return k;
}
