/*
 * eb_metrics_collect: the application's metric families, rendered at scrape
 * time from the counters the modules already keep (eb_poller per source,
 * eb_pipeline per source and its delivery latency histogram, eb_kafka,
 * eb_dedupe). Nothing is counted twice and nothing here runs between
 * scrapes.
 *
 *     static struct eb_metrics_app src = {poller, pipeline, kafka, ...};
 *     eb_metrics_register_app(metrics, &src);
 *     ...
 *     eb_metrics_unregister_app(metrics, &src);
 *
 * Families (docs/operations.md lists each with its meaning):
 *   evbridge_source_*    per source, labels source and provider
 *   evbridge_kafka_*     producer counters, queue, delivery latency
 *   evbridge_dedupe_*    the dedupe table
 *   evbridge_build_info, evbridge_process_start_time_seconds
 *
 * Thread context: the loop thread (collectors read module state directly).
 */
#ifndef EB_METRICS_COLLECT_H
#define EB_METRICS_COLLECT_H

#include <stdint.h>

#include "eb_kafka.h"
#include "eb_metrics.h"
#include "eb_pipeline.h"
#include "eb_poller.h"

/**
 * What the collectors read. Every pointer is borrowed and may be NULL (its
 * families are then left out); the struct itself is borrowed by the
 * registry and must stay valid until eb_metrics_unregister_app().
 */
struct eb_metrics_app {
        const eb_poller_t *poller;
        eb_pipeline_t *pipeline;
        eb_kafka_t *kafka;
        const char *version;   /* evbridge_build_info{version} ("" if NULL) */
        const char *gitrev;    /* evbridge_build_info{gitrev} ("" if NULL) */
        int64_t start_time_ms; /* wall clock at start; 0: left out */
        /* Sharded mode: the pipeline of a source's shard (NULL if the
         * shard is not owned here); wins over pipeline for the
         * evbridge_source_* families. May be NULL. */
        eb_pipeline_t *(*pipeline_for)(void *opaque, const char *source);
        void *pipeline_for_opaque;
};

/** @brief Collector: evbridge_source_* (opaque: struct eb_metrics_app *). */
void eb_metrics_collect_sources(struct eb_prom *w, void *opaque);

/** @brief Collector: evbridge_kafka_* (opaque: struct eb_metrics_app *). */
void eb_metrics_collect_kafka(struct eb_prom *w, void *opaque);

/** @brief Collector: evbridge_dedupe_* (opaque: struct eb_metrics_app *). */
void eb_metrics_collect_dedupe(struct eb_prom *w, void *opaque);

/** @brief Collector: build info and process start time
 *  (opaque: struct eb_metrics_app *). */
void eb_metrics_collect_process(struct eb_prom *w, void *opaque);

/** @brief Register the four collectors above with @p a (borrowed). */
void eb_metrics_register_app(eb_metrics_t *m, const struct eb_metrics_app *a);

/** @brief Unregister what eb_metrics_register_app() added for @p a. */
void eb_metrics_unregister_app(eb_metrics_t *m, const struct eb_metrics_app *a);

#endif /* EB_METRICS_COLLECT_H */
