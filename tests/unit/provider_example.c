/*
 * provider_example.c: the smallest complete provider, compiled into the
 * contract test only (tests/unit/test_provider_contract.c registers it
 * with eb_provider_register()). It shows what a new provider is: this one
 * file and one registration line, then the contract test runs over it
 * like over the built-in ones (docs/architecture.md, "Adding a
 * provider").
 *
 *   GET <base>/events?after=<ms>&page=P&limit=L
 *   -> {"events": [{"id": "e1", "type": "lead.created", "at": <ms>}, ...],
 *       "more": true|false}
 *
 * Ascending order: "after" (wm - overlap) stays fixed for the walk, pages
 * count up, wm follows the newest acknowledged event.
 * Checkpoint: {"wm": <ms>}. Webhooks: the event itself, Standard Webhooks
 * signatures.
 */
#include "eb_provider.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "eb_util.h"

#define EXAMPLE_MAX_PAGES 100000

static int example_check_config(const struct eb_source_cfg *src,
                                const char *path, char *errstr,
                                size_t errstr_size)
{
        json_t *opts;
        int rc = eb_source_options_check(src, path, &opts, errstr, errstr_size);

        if (rc || !opts || !json_object_size(opts))
                return rc;
        snprintf(errstr, errstr_size, "%s.options: none are known", path);
        return -EINVAL;
}

static int example_walk_begin(struct eb_walk *w)
{
        int64_t wm = w->start_ms;

        if (w->cp) {
                json_t *j = json_object_get(w->cp, "wm");

                if (!json_is_object(w->cp) || !json_is_integer(j) ||
                    json_integer_value(j) < 0)
                        return -EINVAL;
                wm = json_integer_value(j);
        }
        json_decref(w->state);
        w->state = json_object();
        eb_walk_set(w, "wm", wm);
        eb_walk_set(w, "after", wm - w->overlap_ms);
        eb_walk_set(w, "page", 1);
        return 0;
}

static int example_next_request(struct eb_walk *w, char **url, char **auth)
{
        struct eb_buf b;
        int rc;

        if (!w->state || !w->base_url || !w->src)
                return -EINVAL;
        rc = eb_url_start(&b, w->base_url, "/events");
        if (!rc)
                rc = eb_url_add_param_i64(&b, "after", eb_walk_get(w, "after"));
        if (!rc)
                rc = eb_url_add_param_i64(&b, "page", eb_walk_get(w, "page"));
        if (!rc)
                rc = eb_url_add_param_i64(&b, "limit", w->page_size);
        if (rc) {
                eb_buf_fini(&b);
                return rc;
        }
        *url = eb_buf_take(&b, NULL);
        *auth = eb_auth_bearer(w->src->api_key);
        return 0;
}

static struct eb_event *example_normalize(const struct eb_source_cfg *src,
                                          json_t *native, char *errstr,
                                          size_t errstr_size)
{
        const char *id = eb_jfield_str(native, "id", EB_PROVIDER_MAX_ID);
        const char *type = eb_jfield_str(native, "type", EB_PROVIDER_MAX_ID);
        const char *dot = type ? strchr(type, '.') : NULL;
        json_t *at = json_object_get(native, "at");
        struct eb_event *evt;

        if (!json_is_object(native) || !id || !dot || dot == type || !dot[1] ||
            !json_is_integer(at)) {
                snprintf(errstr, errstr_size,
                         "event %.64s: expected an id, an \"entity.action\" "
                         "type and an integer \"at\"",
                         id ? id : "(no id)");
                return NULL;
        }
        evt = eb_event_new();
        evt->id = eb_xstrdup(id);
        evt->source_name = eb_xstrdup(src && src->name ? src->name : "");
        evt->provider = eb_xstrdup("example");
        evt->entity_type = eb_xstrndup(type, (size_t)(dot - type));
        evt->entity_id = eb_xstrdup("");
        evt->action = eb_xstrdup(dot + 1);
        evt->time_ms = json_integer_value(at);
        evt->fields = json_object();
        evt->native = json_incref(native);
        return evt;
}

static void example_page_ok(struct eb_walk *w, const struct eb_response *resp,
                            struct eb_page *page)
{
        json_t *root = eb_resp_json_object(resp, page), *events, *ev;
        int64_t pmax = eb_walk_get(w, "wm");
        size_t i;

        if (!root)
                return;
        events = json_object_get(root, "events");
        if (!json_is_array(events) ||
            !json_is_boolean(json_object_get(root, "more"))) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "no \"events\" array and boolean \"more\"");
                goto out;
        }
        json_array_foreach(events, i, ev)
        {
                struct eb_event *evt = eb_walk_normalize(
                        w, ev, eb_walk_get(w, "page"), "events", i);

                if (!evt->deadletter && evt->time_ms > pmax) {
                        pmax = evt->time_ms;
                }
                if (eb_page_add_event(page, evt)) {
                        eb_page_fail(page, EB_RESP_BAD_BODY, "too many events");
                        goto out;
                }
        }
        page->more = json_is_true(json_object_get(root, "more")) &&
                     json_array_size(events) &&
                     eb_walk_get(w, "page") < EXAMPLE_MAX_PAGES;
        eb_walk_set(w, "pmax", pmax);
out:
        json_decref(root);
}

static void example_handle_response(struct eb_walk *w,
                                    const struct eb_response *resp,
                                    struct eb_page *page)
{
        eb_resp_kind_t kind;

        if (eb_walk_response_begin(w, page))
                return;
        if (resp->status == 200) {
                example_page_ok(w, resp, page);
        } else {
                kind = eb_resp_classify_error(resp->status);
                eb_page_http_error(page, kind, resp);
                if (kind == EB_RESP_RATE_LIMITED)
                        page->retry_after_ms = eb_resp_retry_after_ms(resp);
        }
        eb_walk_response_end(w, page);
}

static void example_write_cp(struct eb_walk *w)
{
        json_decref(w->cp);
        w->cp = json_pack("{sI}", "wm", (json_int_t)eb_walk_get(w, "wm"));
}

static void example_page_done(struct eb_walk *w)
{
        if (!eb_walk_page_ack(w))
                return;
        eb_walk_set(w, "wm", eb_walk_get(w, "pmax"));
        eb_walk_set(w, "page", eb_walk_get(w, "page") + 1);
        if (!eb_walk_get(w, "more"))
                eb_walk_set(w, "done", 1);
        example_write_cp(w);
}

static void example_walk_end(struct eb_walk *w)
{
        if (w->state && eb_walk_get(w, "done"))
                example_write_cp(w);
}

static const struct eb_provider_webhook example_webhook = {
        .scheme = &eb_wh_scheme_standard,
        .content_type = "application/json",
};

const struct eb_provider eb_provider_example = {
        .name = "example",
        .default_base_url = "https://api.example.test",
        .default_rps = 2.0,
        .default_burst = 1,
        .default_page_size = 10,
        .max_page_size = 100,
        .default_overlap_ms = 60 * 1000,
        .default_lag_ms = 0,
        .check_config = example_check_config,
        .walk_begin = example_walk_begin,
        .next_request = example_next_request,
        .handle_response = example_handle_response,
        .page_done = example_page_done,
        .walk_end = example_walk_end,
        .normalize = example_normalize,
        .credential = "api_key",
        .newest_first = 0,
        .webhook = &example_webhook,
};
