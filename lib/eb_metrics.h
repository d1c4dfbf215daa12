/*
 * eb_metrics: Prometheus text exposition (format 0.0.4) from collectors.
 *
 * Modules keep their own counters (cheap increments on the loop thread);
 * at scrape time eb_metrics_render() asks every registered collector to
 * write its metric families through a small writer that escapes label
 * values and keeps each family's samples together, as the format needs:
 *
 *     static void collect(struct eb_prom *w, void *opaque) {
 *             eb_prom_family(w, "evbridge_x_total", "counter", "Help.");
 *             eb_prom_sample(w, NULL, (const char *[]){"source", n, NULL},
 *                            (double)v);
 *     }
 *     eb_metrics_add_collector(m, collect, ctx);
 *
 * A family name must be emitted by one collector only.
 * Thread context: the loop thread.
 */
#ifndef EB_METRICS_H
#define EB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "eb_buf.h"
#include "eb_log.h"

typedef struct eb_metrics_s eb_metrics_t;

/** The writer handed to collectors. Use the API only. */
struct eb_prom {
        struct eb_buf *out;
        char family[128]; /* current family name */
        int err;          /* first append error; rendering fails with it */
};

typedef void eb_metrics_collect_cb(struct eb_prom *w, void *opaque);

/** @returns new empty registry. */
eb_metrics_t *eb_metrics_new(void);

/** @brief Free; NULL is a no-op. */
void eb_metrics_free(eb_metrics_t *m);

/** @brief Register a collector (called in registration order). */
void eb_metrics_add_collector(eb_metrics_t *m, eb_metrics_collect_cb *fn,
                              void *opaque);

/** @brief Unregister a collector (same fn and opaque). */
void eb_metrics_remove_collector(eb_metrics_t *m, eb_metrics_collect_cb *fn,
                                 void *opaque);

/**
 * @brief Render every collector's families into @p out (appended).
 * @returns 0 or a negative errno (e.g. -E2BIG past the buffer's limit).
 */
int eb_metrics_render(eb_metrics_t *m, struct eb_buf *out) EB_WUR;

/**
 * @brief Start a family: "# HELP" and "# TYPE" lines. @p type is
 * "counter", "gauge", "histogram" or "untyped".
 */
void eb_prom_family(struct eb_prom *w, const char *name, const char *type,
                    const char *help);

/**
 * @brief One sample of the current family: name = family + @p suffix
 * (NULL or e.g. "_bucket"), labels from the NULL-terminated name/value
 * list @p labels (may be NULL), value formatted exactly (integers without
 * a fraction, +Inf/-Inf/NaN spelled as Prometheus wants).
 */
void eb_prom_sample(struct eb_prom *w, const char *suffix,
                    const char *const *labels, double value);

/** A fixed-bucket histogram (cumulative at render time). */
struct eb_histogram {
        const double *bounds; /* ascending upper bounds, borrowed */
        size_t nbounds;
        uint64_t *counts; /* nbounds + 1 (the last is +Inf), owned */
        double sum;
        uint64_t count;
};

/** @brief Set up @p h with @p bounds (borrowed, must outlive it). */
void eb_histogram_init(struct eb_histogram *h, const double *bounds,
                       size_t nbounds);
/** @brief Free what eb_histogram_init() allocated. */
void eb_histogram_fini(struct eb_histogram *h);
/** @brief Record one observation. */
void eb_histogram_observe(struct eb_histogram *h, double v);
/** @brief Write @p h as the current family's _bucket/_sum/_count samples,
 *  with the extra @p labels (may be NULL). */
void eb_prom_histogram(struct eb_prom *w, const char *const *labels,
                       const struct eb_histogram *h);

#endif /* EB_METRICS_H */
