/*
 * eb_event: the normalized event and its CloudEvents 1.0 envelope.
 *
 * A provider adapter turns a native event (Kommo, Close, Kota JSON) into a
 * struct eb_event; this module turns that into what goes to Kafka: the
 * topic, the key and the value (+ headers in binary mode).
 *
 * Envelope (structured mode, content-type application/cloudevents+json):
 *
 *   specversion  "1.0"
 *   id           native event id
 *   source       "/<provider>/<account>"          (provider + account)
 *   type         "<provider>.<entity>.<action>"   e.g.
 * close.opportunity.updated time         upstream event time, RFC 3339 (ms)
 *   subject      "<entity>/<entity id>"
 *   datacontenttype "application/json"
 *   extensions   provider, account, entitytype, entityid, action, actor,
 *                eventversion, sourcename (the configured source name)
 *   data         { "fields": <normalized fields>, "native": <native event> }
 *
 * Binary mode: the value is the data object alone and every attribute
 * travels as a Kafka header "ce_<name>" (CloudEvents Kafka binding), plus
 * "content-type: application/json".
 *
 * Kafka key: "<source name>/<entity type>/<entity id>", so one entity's
 * events stay in one partition, in order.
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

typedef enum {
        EB_ENVELOPE_STRUCTURED = 0,
        EB_ENVELOPE_BINARY = 1,
} eb_envelope_mode_t;

/** One Kafka header (name and value are borrowed from the envelope). */
struct eb_header {
        const char *name;
        char *value;
};

#define EB_ENVELOPE_MAX_HEADERS 16

/**
 * A rendered message: everything the publisher needs. Owned strings; free
 * with eb_envelope_fini().
 */
struct eb_envelope {
        char *topic;
        char *key;
        size_t key_len;
        char *value;
        size_t value_len;
        struct eb_header headers[EB_ENVELOPE_MAX_HEADERS];
        int header_cnt;
};

/**
 * @brief Render @p evt: topic from @p topic_template and @p prefix, key,
 * value and headers for @p mode.
 * @returns 0 or -EINVAL (missing required field); on error @p env holds
 * nothing to free.
 */
int eb_envelope_render(const struct eb_event *evt, const char *topic_template,
                       const char *prefix, eb_envelope_mode_t mode,
                       struct eb_envelope *env) EB_WUR;

/** @brief Free what eb_envelope_render() allocated. */
void eb_envelope_fini(struct eb_envelope *env);

/**
 * @brief Expand a topic template. Placeholders: {prefix}, {provider},
 * {entity}, {action}, {source}, {account}. The result is sanitized to a
 * legal Kafka topic name: lowercase, [a-z0-9.-] only (other bytes become
 * '-'; '_' too), no leading/trailing '.' or '-', runs of '.' collapsed,
 * never "." or "..", at most 249 characters (a longer name is cut and
 * ends in '-' + 8 hex digits of its hash, so distinct long names stay
 * distinct).
 * @returns new topic name, or NULL if the template has an unknown
 * placeholder.
 */
char *eb_topic_name(const char *topic_template, const char *prefix,
                    const struct eb_event *evt);

/**
 * @brief Check a template at config time.
 * @returns 0, or -EINVAL with a message in @p errstr.
 */
int eb_topic_template_check(const char *topic_template, char *errstr,
                            size_t errstr_size);

/**
 * @brief Sanitize any string to a legal topic name in place rules above.
 * @returns new string.
 */
char *eb_topic_sanitize(const char *name);

#endif /* EB_EVENT_H */
