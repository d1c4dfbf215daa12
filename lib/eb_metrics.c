#include "eb_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_util.h"

struct collector {
        struct collector *next;
        eb_metrics_collect_cb *fn;
        void *opaque;
};

struct eb_metrics_s {
        struct collector *head, *tail;
};

eb_metrics_t *eb_metrics_new(void)
{
        return eb_xcalloc(1, sizeof(eb_metrics_t));
}

void eb_metrics_free(eb_metrics_t *m)
{
        if (!m)
                return;
        while (m->head) {
                struct collector *c = m->head;
                m->head = c->next;
                free(c);
        }
        free(m);
}

void eb_metrics_add_collector(eb_metrics_t *m, eb_metrics_collect_cb *fn,
                              void *opaque)
{
        struct collector *c = eb_xcalloc(1, sizeof(*c));

        c->fn = fn;
        c->opaque = opaque;
        if (m->tail)
                m->tail->next = c;
        else
                m->head = c;
        m->tail = c;
}

void eb_metrics_remove_collector(eb_metrics_t *m, eb_metrics_collect_cb *fn,
                                 void *opaque)
{
        struct collector **pp, *prev = NULL;

        for (pp = &m->head; *pp; prev = *pp, pp = &(*pp)->next) {
                struct collector *c = *pp;
                if (c->fn == fn && c->opaque == opaque) {
                        *pp = c->next;
                        if (m->tail == c)
                                m->tail = prev;
                        free(c);
                        return;
                }
        }
}

int eb_metrics_render(eb_metrics_t *m, struct eb_buf *out)
{
        struct eb_prom w;
        struct collector *c;

        memset(&w, 0, sizeof(w));
        w.out = out;
        for (c = m->head; c && !w.err; c = c->next)
                c->fn(&w, c->opaque);
        return w.err;
}

static void put(struct eb_prom *w, const char *s, size_t n)
{
        int rc;

        if (w->err)
                return;
        rc = eb_buf_append(w->out, s, n);
        if (rc)
                w->err = rc;
}

static void puts_(struct eb_prom *w, const char *s)
{
        put(w, s, strlen(s));
}

/* HELP text escapes backslash and newline; label values also quotes. */
static void put_escaped(struct eb_prom *w, const char *s, int quotes)
{
        const char *p;

        for (p = s; *p; p++) {
                if (*p == '\\')
                        puts_(w, "\\\\");
                else if (*p == '\n')
                        puts_(w, "\\n");
                else if (quotes && *p == '"')
                        puts_(w, "\\\"");
                else
                        put(w, p, 1);
        }
}

void eb_prom_family(struct eb_prom *w, const char *name, const char *type,
                    const char *help)
{
        snprintf(w->family, sizeof(w->family), "%s", name);
        puts_(w, "# HELP ");
        puts_(w, name);
        puts_(w, " ");
        put_escaped(w, help ? help : "", 0);
        puts_(w, "\n# TYPE ");
        puts_(w, name);
        puts_(w, " ");
        puts_(w, type);
        puts_(w, "\n");
}

/* The shortest of %.15g, %.16g and %.17g that reads back as exactly @p v:
 * 0.1 is written "0.1", not "0.10000000000000001", so bucket bounds match
 * what people type in PromQL (le="0.1"). */
static void fmt_double(char *buf, size_t sz, double v)
{
        int prec;

        for (prec = 15; prec <= 17; prec++) {
                snprintf(buf, sz, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return;
        }
}

static void put_value(struct eb_prom *w, double v)
{
        char num[64];

        if (isnan(v))
                snprintf(num, sizeof(num), "NaN");
        else if (isinf(v))
                snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
        else if (v == floor(v) && fabs(v) < 9.007199254740992e15)
                snprintf(num, sizeof(num), "%.0f", v);
        else
                fmt_double(num, sizeof(num), v);
        puts_(w, num);
}

static void put_labels(struct eb_prom *w, const char *const *labels,
                       const char *le)
{
        int first = 1;
        size_t i;

        if ((!labels || !labels[0]) && !le)
                return;
        puts_(w, "{");
        for (i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
                if (!first)
                        puts_(w, ",");
                first = 0;
                puts_(w, labels[i]);
                puts_(w, "=\"");
                put_escaped(w, labels[i + 1], 1);
                puts_(w, "\"");
        }
        if (le) {
                if (!first)
                        puts_(w, ",");
                puts_(w, "le=\"");
                puts_(w, le);
                puts_(w, "\"");
        }
        puts_(w, "}");
}

void eb_prom_sample(struct eb_prom *w, const char *suffix,
                    const char *const *labels, double value)
{
        puts_(w, w->family);
        if (suffix)
                puts_(w, suffix);
        put_labels(w, labels, NULL);
        puts_(w, " ");
        put_value(w, value);
        puts_(w, "\n");
}

void eb_histogram_init(struct eb_histogram *h, const double *bounds,
                       size_t nbounds)
{
        h->bounds = bounds;
        h->nbounds = nbounds;
        h->counts = eb_xcalloc(nbounds + 1, sizeof(*h->counts));
        h->sum = 0;
        h->count = 0;
}

void eb_histogram_fini(struct eb_histogram *h)
{
        free(h->counts);
        h->counts = NULL;
}

void eb_histogram_observe(struct eb_histogram *h, double v)
{
        size_t i;

        for (i = 0; i < h->nbounds && v > h->bounds[i]; i++)
                ;
        h->counts[i]++;
        h->sum += v;
        h->count++;
}

void eb_prom_histogram(struct eb_prom *w, const char *const *labels,
                       const struct eb_histogram *h)
{
        uint64_t cum = 0;
        char le[64];
        size_t i;

        for (i = 0; i <= h->nbounds; i++) {
                cum += h->counts[i];
                if (i < h->nbounds)
                        fmt_double(le, sizeof(le), h->bounds[i]);
                else
                        snprintf(le, sizeof(le), "+Inf");
                puts_(w, w->family);
                puts_(w, "_bucket");
                put_labels(w, labels, le);
                puts_(w, " ");
                put_value(w, (double)cum);
                puts_(w, "\n");
        }
        eb_prom_sample(w, "_sum", labels, h->sum);
        eb_prom_sample(w, "_count", labels, (double)h->count);
}
