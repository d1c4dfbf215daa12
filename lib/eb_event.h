/*
 * eb_event: the normalized event, its Kafka key and its dedupe identity.
 *
 * A provider adapter turns a native event (Kommo, Close, Kota JSON) into a
 * struct eb_event; eb_envelope.h turns that into what goes to Kafka.
 */
#ifndef EB_EVENT_H
#define EB_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

struct eb_json_src;

/**
 * A normalized event. All strings and JSON are owned by the struct
 * (freed by eb_event_free()). Optional fields may be NULL.
 */
struct eb_event {
        char *id;          /* native event id (required) */
        char *source_name; /* configured source name (required) */
        char *provider;    /* "kommo" | "close" | "kota" (required) */
        char *account;     /* subdomain / organization_id / platform_id */
        char *entity_type; /* "lead", "opportunity", "employee" (required) */
        char *entity_id;   /* id of the entity, as a string (may be "") */
        char *action;      /* "created", "status_changed"... (required) */
        char *actor;       /* user id that caused it, NULL if none/system */
        char *version;     /* Close date_updated; NULL = the id alone */
        int64_t time_ms;   /* upstream event time, ms since epoch */
        json_t *fields;    /* normalized fields, object (may be NULL) */
        json_t *native;    /* the untouched native event (required) */
        /* a poison event. Non-NULL: why the native event could not
         * be normalized; the pipeline writes it raw, with this reason and
         * position, to the dead-letter topic instead of rendering it
         * (eb_deadletter_event()). */
        char *deadletter;
        char *position; /* where it was: "page 3, events[7]" (may be NULL) */
        /* Close withheld data and previous_data (a non-admin key
         * reading an event older than an hour). Such a version never
         * shadows the full one: the pipeline remembers it under its own
         * fingerprint (a full version published later still goes out),
         * and drops it when the full version was already published. */
        int stripped;
        /* the page text @p native was read from (a reference, may
         * be NULL): rendering copies the parts of it that are already
         * written as the envelope writes them (eb_json_put_src()). */
        struct eb_json_src *src;
};

/** @returns new zeroed event. */
struct eb_event *eb_event_new(void);
/** @brief Free an event and everything it owns; NULL is a no-op. */
void eb_event_free(struct eb_event *evt);
/** @brief Free @p cnt events and the array holding them; NULL is a no-op
 *  (the ownership every sink takes, eb_poller.h struct eb_sink). */
void eb_events_free(struct eb_event **evts, size_t cnt);

/** @returns new string "<provider>.<entity>.<action>" (lowercase). */
char *eb_event_type(const struct eb_event *evt);

/** @returns new Kafka key "<source name>/<entity type>/<entity id>". */
char *eb_event_key(const struct eb_event *evt);

/**
 * @returns new dedupe identity "<source name>\x1f<id>\x1f<version or "">",
 * the bytes that eb_dedupe fingerprints.
 */
char *eb_event_dedupe_key(const struct eb_event *evt, size_t *lenp);

#endif /* EB_EVENT_H */
