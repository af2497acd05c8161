/* Plugin loader: dlopen a backend's shared object, call its entry point
 * with the host services, refuse anything that does not speak our backend
 * ABI, and keep the handles so they are closed only after the models. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "kinfer/log.h"
#include "kinfer/model.h"
#include "kinfer/plugin.h"
#include "shared/util.h"

struct kinfer_plugin {
    char *path;
    void *handle; /* from dlopen */
    const struct kinfer_backend *backend;
};

struct kinfer_plugins {
    struct kinfer_plugin *items;
    size_t n;
};

enum kinfer_err kinfer_plugins_new(struct kinfer_plugins **out)
{
    *out = kinfer_xcalloc(1, sizeof **out);
    return KINFER_OK;
}

size_t kinfer_plugins_count(const struct kinfer_plugins *ps)
{
    return ps->n;
}

/* dlerror's text, without the "PATH: " it usually starts with (our own
 * message names the path already). */
static const char *dl_reason(const char *path)
{
    const char *msg = dlerror();
    if (msg == NULL)
        return "unknown dynamic loader error";
    size_t len = strlen(path);
    if (strncmp(msg, path, len) == 0 && msg[len] == ':' && msg[len + 1] == ' ')
        return msg + len + 2;
    return msg;
}

/* The checks kinfer_plugins_load documents; on failure a reason in err. */
static enum kinfer_err check_backend(const char *path,
                                     const struct kinfer_backend *b, char *err,
                                     size_t errsize)
{
    if (b == NULL) {
        kinfer_fmt(err, errsize,
                   "plugin %s: " KINFER_BACKEND_ENTRY_SYMBOL
                   " returned NULL (the plugin refused kinfer's host, "
                   "backend ABI %u)",
                   path, KINFER_BACKEND_ABI_VERSION);
        return KINFER_ERR_INVALID;
    }
    /* abi_version is the first field in every ABI version, so it is the
     * only one we may read before knowing the layout matches. */
    if (b->abi_version != KINFER_BACKEND_ABI_VERSION) {
        kinfer_fmt(err, errsize,
                   "plugin %s: built for backend ABI %u, kinfer speaks %u",
                   path, b->abi_version, KINFER_BACKEND_ABI_VERSION);
        return KINFER_ERR_ABI;
    }
    if (b->name == NULL || b->name[0] == '\0' || b->create == NULL ||
        b->infer == NULL || b->destroy == NULL) {
        kinfer_fmt(err, errsize,
                   "plugin %s: its backend lacks a name or one of create, "
                   "infer, destroy",
                   path);
        return KINFER_ERR_INVALID;
    }
    return KINFER_OK;
}

enum kinfer_err kinfer_plugins_load(struct kinfer_plugins *ps, const char *path,
                                    const struct kinfer_backend **backend,
                                    char *err, size_t errsize)
{
    /* RTLD_LOCAL: two plugins may bundle libraries with clashing symbols;
     * RTLD_NOW: an unresolved symbol fails here, not in the middle of a
     * request. */
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        kinfer_fmt(err, errsize, "plugin %s: %s", path, dl_reason(path));
        return KINFER_ERR_IO;
    }

    (void)dlerror();
    void *sym = dlsym(handle, KINFER_BACKEND_ENTRY_SYMBOL);
    if (sym == NULL) {
        kinfer_fmt(err, errsize,
                   "plugin %s: no " KINFER_BACKEND_ENTRY_SYMBOL
                   " symbol (not a kinfer backend plugin?)",
                   path);
        dlclose(handle);
        return KINFER_ERR_INVALID;
    }
    /* ISO C has no object-to-function pointer conversion; POSIX
     * guarantees the representation, so copy the bits. */
    kinfer_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);

    const struct kinfer_backend *b = entry(kinfer_host_get());
    enum kinfer_err rc = check_backend(path, b, err, errsize);
    if (rc != KINFER_OK) {
        dlclose(handle);
        return rc;
    }

    ps->items = kinfer_xrealloc(ps->items, (ps->n + 1) * sizeof *ps->items);
    struct kinfer_plugin *p = &ps->items[ps->n++];
    p->path = kinfer_xstrdup(path);
    p->handle = handle;
    p->backend = b;
    kinfer_log(KINFER_LOG_INFO, "plugin %s: backend '%s' loaded", path,
               b->name);
    *backend = b;
    return KINFER_OK;
}

void kinfer_plugins_free(struct kinfer_plugins *ps)
{
    if (ps == NULL)
        return;
    /* Reverse order: a later plugin may depend on an earlier one. */
    for (size_t i = ps->n; i-- > 0;) {
        if (dlclose(ps->items[i].handle) != 0)
            kinfer_log(KINFER_LOG_WARN, "plugin %s: dlclose: %s",
                       ps->items[i].path, dlerror());
        free(ps->items[i].path);
    }
    free(ps->items);
    free(ps);
}
