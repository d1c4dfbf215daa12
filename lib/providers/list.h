/*
 * The registered providers, one line each: EB_PROVIDER(x) names the
 * struct eb_provider eb_provider_x that lib/providers/x.c defines.
 * Included by eb_provider.c only, with EB_PROVIDER defined. Adding a
 * provider is its file and one line here (docs/architecture.md, "Adding
 * a provider").
 */
/* clang-format off */
EB_PROVIDER(kommo)
EB_PROVIDER(close)
EB_PROVIDER(kota)
/* clang-format on */
