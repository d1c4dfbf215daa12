/*
 * eb_envelope: the CloudEvents 1.0 envelope of an event and topic naming.
 *
 * Turns a struct eb_event (eb_event.h) into what goes to Kafka: the
 * topic, the key and the value (+ headers in binary mode). Pure functions,
 * implemented in eb_envelope.c.
 *
 * Envelope (structured mode, content-type application/cloudevents+json):
 *
 *   specversion  "1.0"
 *   id           native event id
 *   source       "/<provider>/<account>"          (provider + account)
 *   type         "<provider>.<entity>.<action>"   e.g.
 *                close.opportunity.updated
 *   time         upstream event time, RFC 3339 (ms)
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
#ifndef EB_ENVELOPE_H
#define EB_ENVELOPE_H

#include <stddef.h>

#include "eb_log.h"

struct eb_event;

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

#endif /* EB_ENVELOPE_H */
