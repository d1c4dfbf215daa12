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

/* "<a><sep><b><sep><c>" (NULL as ""), in one allocation: these run for
 * every event, where a printf costs more than the copy. */
static char *join3(const char *a, const char *b, const char *c, char sep,
                   size_t *lenp)
{
        size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0,
               lc = c ? strlen(c) : 0;
        char *s = eb_xmalloc(la + lb + lc + 3), *p = s;

        memcpy(p, a ? a : "", la);
        p += la;
        *p++ = sep;
        memcpy(p, b ? b : "", lb);
        p += lb;
        *p++ = sep;
        memcpy(p, c ? c : "", lc);
        p[lc] = '\0';
        if (lenp)
                *lenp = la + lb + lc + 2;
        return s;
}

char *eb_event_type(const struct eb_event *evt)
{
        char *t =
                join3(evt->provider, evt->entity_type, evt->action, '.', NULL);

        lower(t);
        return t;
}

char *eb_event_key(const struct eb_event *evt)
{
        return join3(evt->source_name, evt->entity_type, evt->entity_id, '/',
                     NULL);
}

char *eb_event_dedupe_key(const struct eb_event *evt, size_t *lenp)
{
        size_t len;
        char *k = join3(evt->source_name, evt->id, evt->version, '\x1f', &len);

        if (lenp)
                *lenp = len;
        return k;
}
