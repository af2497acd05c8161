/* Deliberately broken plugins for tests/test_plugin.c, one source built
 * three ways: BAD_PLUGIN_ABI returns a backend built for ABI 999,
 * BAD_PLUGIN_NULL returns NULL, BAD_PLUGIN_NO_ENTRY exports no
 * kinfer_backend_entry at all.  kinfer must refuse each of them. */
#include <stddef.h>

#include "kinfer/backend.h"

#if defined(BAD_PLUGIN_ABI)

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

/* Only abi_version may be read from a backend of another ABI: the other
 * fields stay NULL so any further use crashes the test loudly. */
static const struct kinfer_backend future_backend = {
    .abi_version = 999,
};

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    (void)host;
    return &future_backend;
}

#elif defined(BAD_PLUGIN_NULL)

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    (void)host;
    return NULL;
}

#elif defined(BAD_PLUGIN_NO_ENTRY)

/* A symbol with a near-miss name, so the object is a valid library that
 * simply is not a kinfer plugin. */
int kinfer_backend_entry_v0(void);

int kinfer_backend_entry_v0(void)
{
    return 0;
}

#else
#error "define BAD_PLUGIN_ABI, BAD_PLUGIN_NULL or BAD_PLUGIN_NO_ENTRY"
#endif
