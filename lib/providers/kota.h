/*
 * providers/kota.h: what the Kota provider exposes beyond its struct
 * eb_provider (lib/providers/kota.c): the signature header parser, for
 * its tests and fuzz target.
 */
#ifndef EB_PROVIDERS_KOTA_H
#define EB_PROVIDERS_KOTA_H

#include <stdint.h>

#include "eb_webhook_sig.h"

/** A parsed x-kota-webhook-signature header. */
struct eb_kota_sig {
        int64_t t;
        char t_text[16]; /* t exactly as sent */
        int nsig;        /* v1 values found */
        unsigned char v1[EB_WH_MAX_SIGS][32];
};

/**
 * @brief Parse "t=<unix>,v1=<hex>[,v1=<hex>...]" (parts in any order,
 * spaces around them ignored, unknown keys such as v0 ignored).
 * @returns EB_WH_AUTH_OK, EB_WH_AUTH_SIG_MALFORMED (no or several t, no
 * v1, a v1 that is not 64 hex digits, a part without '=', too many v1)
 * or EB_WH_AUTH_TS_INVALID (t not a decimal number).
 */
eb_wh_auth_t eb_kota_sig_parse(const char *header, struct eb_kota_sig *out);

#endif /* EB_PROVIDERS_KOTA_H */
