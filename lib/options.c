/* Option resolution for kinfer's programs: command line, environment,
 * config file and defaults, highest precedence first, plus the librdkafka
 * properties passed through from -X flags and dotted config-file keys.
 *
 * Every value given is checked, even one that a higher-precedence source
 * overrides: a broken environment or config file is reported at start-up
 * rather than surfacing the day the overriding flag is dropped.  When help
 * or version is requested, the environment and the config file are not
 * read, so a broken setup never hides the help text. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kinfer/kafka_prop.h"
#include "kinfer/log.h"
#include "kinfer/options.h"
#include "shared/util.h"

/* Longest config-file line, without its newline. */
#define OPTS_LINE_MAX 4096

/* Help text starts at least this far after the two-space indent. */
#define OPTS_HELP_MIN_COL 24

/* Longest "--name ARG" or "path:line: name" used to name a source in a
 * message; longer ones are truncated, which only shortens the message. */
#define OPTS_WHERE_MAX 512

enum opt_rank { RANK_UNSET, RANK_DEFAULT, RANK_FILE, RANK_ENV, RANK_FLAG };

static const char *const rank_names[] = {
    [RANK_UNSET] = "unset", [RANK_DEFAULT] = "default", [RANK_FILE] = "file",
    [RANK_ENV] = "env",     [RANK_FLAG] = "flag",
};

struct opt_value {
    char *name; /* copy of the definition's name */
    enum kinfer_opt_type type;
    char *text;         /* resolved value, NULL when unset */
    enum opt_rank rank; /* where text came from */
    long long num;      /* parsed INT, or FLAG as 1/0 */
};

struct kafka_prop {
    char *name;
    char *value;
};

struct prop_list {
    struct kafka_prop *v;
    size_t n, cap;
};

struct kinfer_opts {
    struct opt_value *vals; /* one per definition, same order */
    size_t nvals;
    struct prop_list kafka; /* file properties, then -X, in order */
    int help, version;
};

static void prop_list_add(struct prop_list *l, const char *name, size_t namelen,
                          const char *value)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = kinfer_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    char *n = kinfer_xmalloc(namelen + 1);
    memcpy(n, name, namelen);
    n[namelen] = '\0';
    l->v[l->n].name = n;
    l->v[l->n].value = kinfer_xstrdup(value);
    l->n++;
}

/* Moves every entry of src to the end of dst and empties src. */
static void prop_list_append(struct prop_list *dst, struct prop_list *src)
{
    for (size_t i = 0; i < src->n; i++) {
        if (dst->n == dst->cap) {
            dst->cap = dst->cap ? dst->cap * 2 : 8;
            dst->v = kinfer_xrealloc(dst->v, dst->cap * sizeof(*dst->v));
        }
        dst->v[dst->n++] = src->v[i];
    }
    free(src->v);
    src->v = NULL;
    src->n = src->cap = 0;
}

static void prop_list_clear(struct prop_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].value);
    }
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

void kinfer_opts_free(struct kinfer_opts *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->nvals; i++) {
        free(o->vals[i].name);
        free(o->vals[i].text);
    }
    free(o->vals);
    prop_list_clear(&o->kafka);
    free(o);
}

/* The definition called name[0..len), or NULL. */
static const struct kinfer_optdef *find_def(const struct kinfer_optdef *defs,
                                            size_t ndefs, const char *name,
                                            size_t len, size_t *index)
{
    for (size_t i = 0; i < ndefs; i++) {
        if (strlen(defs[i].name) == len &&
            memcmp(defs[i].name, name, len) == 0) {
            *index = i;
            return &defs[i];
        }
    }
    return NULL;
}

static int parse_bool(const char *s, long long *out)
{
    static const char *const yes[] = {"true", "1", "yes"};
    static const char *const no[] = {"false", "0", "no"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* strtoll alone would accept leading blanks and trailing junk. */
static int parse_int(const char *s, long long *out)
{
    if (s[0] == '\0' || isspace((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Checks text against d; where names the source for the message. */
static enum kinfer_err check_value(const struct kinfer_optdef *d,
                                   const char *text, const char *where,
                                   long long *num, char *err, size_t errsize)
{
    switch (d->type) {
    case KINFER_OPT_STRING:
    case KINFER_OPT_LIST:
        if (text[0] != '\0')
            return KINFER_OK;
        kinfer_fmt(err, errsize, "%s: expected a non-empty value", where);
        return KINFER_ERR_CONFIG;
    case KINFER_OPT_INT:
        if (parse_int(text, num) == 0 && *num >= d->min && *num <= d->max)
            return KINFER_OK;
        kinfer_fmt(err, errsize,
                   "%s: expected an integer from %lld to %lld, got '%s'", where,
                   d->min, d->max, text);
        return KINFER_ERR_CONFIG;
    case KINFER_OPT_ADDR: {
        char host[256];
        int port;
        if (kinfer_addr_split(text, host, sizeof host, &port) >= 0)
            return KINFER_OK;
        kinfer_fmt(err, errsize,
                   "%s: expected HOST:PORT (port 0 to 65535, [ADDR] for "
                   "IPv6) or off, got '%s'",
                   where, text);
        return KINFER_ERR_CONFIG;
    }
    case KINFER_OPT_FLAG:
        if (parse_bool(text, num) == 0)
            return KINFER_OK;
        kinfer_fmt(err, errsize,
                   "%s: expected true/false, 1/0 or yes/no, got '%s'", where,
                   text);
        return KINFER_ERR_CONFIG;
    }
    kinfer_fmt(err, errsize, "%s: unknown option type %d", where, (int)d->type);
    return KINFER_ERR_CONFIG;
}

/* Checks text, then keeps it unless a higher-ranked source already set
 * the option; an equal rank replaces, so the last of repeats wins. */
static enum kinfer_err set_value(struct opt_value *v,
                                 const struct kinfer_optdef *d,
                                 const char *text, enum opt_rank rank,
                                 const char *where, char *err, size_t errsize)
{
    long long num = 0;
    enum kinfer_err rc = check_value(d, text, where, &num, err, errsize);
    if (rc != KINFER_OK)
        return rc;
    if (rank < v->rank)
        return KINFER_OK;
    if (d->type == KINFER_OPT_LIST && rank == v->rank && v->text != NULL) {
        /* Repeats from one source accumulate. */
        size_t a = strlen(v->text), b = strlen(text);
        char *joined = kinfer_xmalloc(a + b + 2);
        memcpy(joined, v->text, a);
        joined[a] = ':';
        memcpy(joined + a + 1, text, b + 1);
        free(v->text);
        v->text = joined;
        return KINFER_OK;
    }
    free(v->text);
    /* Flags read back in one spelling whatever the source wrote. */
    if (d->type == KINFER_OPT_FLAG)
        v->text = kinfer_xstrdup(num ? "true" : "false");
    else
        v->text = kinfer_xstrdup(text);
    v->num = num;
    v->rank = rank;
    return KINFER_OK;
}

static enum kinfer_err parse_x(const char *arg, struct prop_list *props,
                               char *err, size_t errsize)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || eq[1] == '\0') {
        /* Without its '=' the argument may be "sasl.password:hunter2". */
        kinfer_fmt(err, errsize, "-X: expected name=value, got '%s'",
                   kinfer_kafka_prop_is_secret(arg) ? KINFER_REDACTED : arg);
        return KINFER_ERR_CONFIG;
    }
    prop_list_add(props, arg, (size_t)(eq - arg), eq + 1);
    return KINFER_OK;
}

/* One "--name[=value]" at argv[*i]; advances *i past a separate value. */
static enum kinfer_err parse_long(struct kinfer_opts *o,
                                  const struct kinfer_optdef *defs,
                                  size_t ndefs, int argc, char *const *argv,
                                  int *i, char *err, size_t errsize)
{
    const char *name = argv[*i] + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    size_t idx;
    const struct kinfer_optdef *d = find_def(defs, ndefs, name, len, &idx);
    if (d == NULL) {
        if ((len == 4 && memcmp(name, "help", 4) == 0) ||
            (len == 7 && memcmp(name, "version", 7) == 0)) {
            kinfer_fmt(err, errsize, "--%.*s: takes no value", (int)len, name);
            return KINFER_ERR_CONFIG;
        }
        kinfer_fmt(err, errsize, "unknown option '--%.*s' (see --help)",
                   (int)len, name);
        return KINFER_ERR_CONFIG;
    }

    char where[OPTS_WHERE_MAX];
    kinfer_fmt(where, sizeof(where), "--%s", d->name);
    const char *value;
    if (eq != NULL) {
        value = eq + 1;
    } else if (d->type == KINFER_OPT_FLAG) {
        value = "true";
    } else if (*i + 1 < argc &&
               !(strncmp(argv[*i + 1], "--", 2) == 0 && argv[*i + 1][2])) {
        /* A following "--option" means the value was forgotten; taking it
         * as the value would hide the mistake. */
        value = argv[++*i];
    } else {
        kinfer_fmt(err, errsize, "%s: missing value", where);
        return KINFER_ERR_CONFIG;
    }
    return set_value(&o->vals[idx], d, value, RANK_FLAG, where, err, errsize);
}

static enum kinfer_err parse_argv(struct kinfer_opts *o,
                                  const struct kinfer_optdef *defs,
                                  size_t ndefs, int argc, char *const *argv,
                                  struct prop_list *xprops, char *err,
                                  size_t errsize)
{
    enum kinfer_err rc = KINFER_OK;
    for (int i = 1; i < argc && rc == KINFER_OK; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            /* Only positional arguments may follow, and there are none. */
            if (i + 1 < argc) {
                kinfer_fmt(err, errsize, "unexpected argument '%s'",
                           argv[i + 1]);
                rc = KINFER_ERR_CONFIG;
            }
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o->help = 1;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            o->version = 1;
        } else if (strncmp(a, "-X", 2) == 0) {
            if (a[2] != '\0') {
                rc = parse_x(a + 2, xprops, err, errsize);
            } else if (i + 1 < argc) {
                rc = parse_x(argv[++i], xprops, err, errsize);
            } else {
                kinfer_fmt(err, errsize, "-X: missing value");
                rc = KINFER_ERR_CONFIG;
            }
        } else if (strncmp(a, "--", 2) == 0) {
            rc = parse_long(o, defs, ndefs, argc, argv, &i, err, errsize);
        } else if (a[0] == '-' && a[1] != '\0') {
            kinfer_fmt(err, errsize, "unknown option '%s' (see --help)", a);
            rc = KINFER_ERR_CONFIG;
        } else {
            kinfer_fmt(err, errsize, "unexpected argument '%s'", a);
            rc = KINFER_ERR_CONFIG;
        }
    }
    return rc;
}

/* The value of name in envp (first match, as getenv), or NULL. */
static const char *env_lookup(char *const *envp, const char *name)
{
    if (envp == NULL)
        return NULL;
    size_t len = strlen(name);
    for (size_t i = 0; envp[i] != NULL; i++) {
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    }
    return NULL;
}

static enum kinfer_err apply_env(struct kinfer_opts *o,
                                 const struct kinfer_optdef *defs, size_t ndefs,
                                 char *const *envp, char *err, size_t errsize)
{
    for (size_t i = 0; i < ndefs; i++) {
        if (defs[i].env == NULL)
            continue;
        const char *text = env_lookup(envp, defs[i].env);
        if (text == NULL)
            continue;
        enum kinfer_err rc = set_value(&o->vals[i], &defs[i], text, RANK_ENV,
                                       defs[i].env, err, errsize);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* One line of the config file, without its newline. */
static enum kinfer_err
parse_line(struct kinfer_opts *o, const struct kinfer_optdef *defs,
           size_t ndefs, const char *path, unsigned lineno, char *line,
           struct prop_list *fprops, char *err, size_t errsize)
{
    char *s = trim(line);
    if (s[0] == '\0' || s[0] == '#')
        return KINFER_OK;
    char *eq = strchr(s, '=');
    if (eq == NULL || eq == s) {
        /* Not quoted: a config file is where secrets live, and a line
         * without '=' may be "sasl.password: hunter2". */
        kinfer_fmt(err, errsize,
                   "%s:%u: expected 'key = value' (line not shown: it may "
                   "hold a secret)",
                   path, lineno);
        return KINFER_ERR_CONFIG;
    }
    *eq = '\0';
    char *key = trim(s);
    char *value = trim(eq + 1);
    if (value[0] == '\0') {
        kinfer_fmt(err, errsize, "%s:%u: %s: empty value", path, lineno, key);
        return KINFER_ERR_CONFIG;
    }
    if (strchr(key, '.') != NULL) {
        prop_list_add(fprops, key, strlen(key), value);
        return KINFER_OK;
    }
    size_t idx;
    const struct kinfer_optdef *d =
        find_def(defs, ndefs, key, strlen(key), &idx);
    if (d == NULL) {
        kinfer_fmt(err, errsize, "%s:%u: unknown key '%s'", path, lineno, key);
        return KINFER_ERR_CONFIG;
    }
    if (d->is_config_file) {
        kinfer_fmt(err, errsize, "%s:%u: %s: not allowed in a config file",
                   path, lineno, key);
        return KINFER_ERR_CONFIG;
    }
    char where[OPTS_WHERE_MAX];
    kinfer_fmt(where, sizeof(where), "%s:%u: %s", path, lineno, key);
    return set_value(&o->vals[idx], d, value, RANK_FILE, where, err, errsize);
}

/* Reads the next line of f, without its newline, into line (room for
 * OPTS_LINE_MAX bytes and a NUL).  Returns 1 for a line, 0 at the end of
 * the file or on a read error (ferror tells), -1 for a line longer than
 * OPTS_LINE_MAX and -2 for a line holding a NUL byte: C strings would cut
 * either short, and fgets would then read the rest as a line of its own
 * ("threads = 5\0..." read as "threads = 5"). */
static int read_line(FILE *f, char *line)
{
    size_t n = 0;
    int c = getc(f);
    if (c == EOF)
        return 0;
    while (c != EOF && c != '\n') {
        if (c == '\0')
            return -2;
        if (n == OPTS_LINE_MAX)
            return -1;
        line[n++] = (char)c;
        c = getc(f);
    }
    if (c == EOF && ferror(f))
        return 0; /* not half a line */
    line[n] = '\0';
    return 1;
}

static enum kinfer_err read_file(struct kinfer_opts *o,
                                 const struct kinfer_optdef *defs, size_t ndefs,
                                 const char *path, struct prop_list *fprops,
                                 char *err, size_t errsize)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        kinfer_fmt(err, errsize, "%s: %s", path, strerror(errno));
        return KINFER_ERR_CONFIG;
    }
    char line[OPTS_LINE_MAX + 1];
    unsigned lineno = 0;
    enum kinfer_err rc = KINFER_OK;
    while (rc == KINFER_OK) {
        int got = read_line(f, line);
        if (got == 0)
            break;
        lineno++;
        if (got == -1) {
            kinfer_fmt(err, errsize, "%s:%u: line longer than %d characters",
                       path, lineno, OPTS_LINE_MAX);
            rc = KINFER_ERR_CONFIG;
        } else if (got == -2) {
            kinfer_fmt(err, errsize, "%s:%u: NUL byte in the line", path,
                       lineno);
            rc = KINFER_ERR_CONFIG;
        } else {
            rc = parse_line(o, defs, ndefs, path, lineno, line, fprops, err,
                            errsize);
        }
    }
    if (rc == KINFER_OK && ferror(f)) {
        kinfer_fmt(err, errsize, "%s: %s", path, strerror(errno));
        rc = KINFER_ERR_CONFIG;
    }
    fclose(f);
    return rc;
}

static enum kinfer_err apply_defaults(struct kinfer_opts *o,
                                      const struct kinfer_optdef *defs,
                                      size_t ndefs, char *err, size_t errsize)
{
    for (size_t i = 0; i < ndefs; i++) {
        if (defs[i].def == NULL || o->vals[i].rank != RANK_UNSET)
            continue;
        char where[OPTS_WHERE_MAX];
        kinfer_fmt(where, sizeof(where), "default of --%s", defs[i].name);
        enum kinfer_err rc = set_value(&o->vals[i], &defs[i], defs[i].def,
                                       RANK_DEFAULT, where, err, errsize);
        if (rc != KINFER_OK)
            return rc;
    }
    return KINFER_OK;
}

/* The config file named on the command line or in the environment. */
static const char *config_path(const struct kinfer_opts *o,
                               const struct kinfer_optdef *defs, size_t ndefs)
{
    for (size_t i = 0; i < ndefs; i++) {
        if (defs[i].is_config_file)
            return o->vals[i].rank >= RANK_ENV ? o->vals[i].text : NULL;
    }
    return NULL;
}

enum kinfer_err kinfer_opts_parse(const struct kinfer_optdef *defs,
                                  size_t ndefs, int argc, char *const *argv,
                                  char *const *envp, struct kinfer_opts **out,
                                  char *err, size_t errsize)
{
    struct kinfer_opts *o = kinfer_xcalloc(1, sizeof(*o));
    o->vals = kinfer_xcalloc(ndefs, sizeof(*o->vals));
    o->nvals = ndefs;
    for (size_t i = 0; i < ndefs; i++) {
        o->vals[i].name = kinfer_xstrdup(defs[i].name);
        o->vals[i].type = defs[i].type;
    }
    struct prop_list xprops = {0};
    struct prop_list fprops = {0};

    enum kinfer_err rc =
        parse_argv(o, defs, ndefs, argc, argv, &xprops, err, errsize);
    if (rc != KINFER_OK)
        goto out;
    if (!o->help && !o->version) {
        rc = apply_env(o, defs, ndefs, envp, err, errsize);
        if (rc != KINFER_OK)
            goto out;
        const char *path = config_path(o, defs, ndefs);
        if (path != NULL) {
            rc = read_file(o, defs, ndefs, path, &fprops, err, errsize);
            if (rc != KINFER_OK)
                goto out;
        }
    }
    rc = apply_defaults(o, defs, ndefs, err, errsize);
    if (rc != KINFER_OK)
        goto out;
    prop_list_append(&o->kafka, &fprops);
    prop_list_append(&o->kafka, &xprops);

out:
    prop_list_clear(&xprops);
    prop_list_clear(&fprops);
    if (rc != KINFER_OK) {
        kinfer_opts_free(o);
        return rc;
    }
    if (errsize > 0)
        err[0] = '\0';
    *out = o;
    return KINFER_OK;
}

int kinfer_opts_help_requested(const struct kinfer_opts *o)
{
    return o->help;
}

int kinfer_opts_version_requested(const struct kinfer_opts *o)
{
    return o->version;
}

/* Asking for an option that was never defined is a typo in the program,
 * so it stops at start-up instead of reading as "unset". */
static const struct opt_value *lookup(const struct kinfer_opts *o,
                                      const char *name)
{
    for (size_t i = 0; i < o->nvals; i++) {
        if (strcmp(o->vals[i].name, name) == 0)
            return &o->vals[i];
    }
    KINFER_ERROR("kinfer_opts: no option named '%s'", name);
    abort();
}

static const struct opt_value *lookup_typed(const struct kinfer_opts *o,
                                            const char *name,
                                            enum kinfer_opt_type type)
{
    const struct opt_value *v = lookup(o, name);
    if (v->type != type) {
        KINFER_ERROR("kinfer_opts: option '%s' read as the wrong type", name);
        abort();
    }
    return v;
}

const char *kinfer_opts_get(const struct kinfer_opts *o, const char *name)
{
    return lookup(o, name)->text;
}

long long kinfer_opts_get_int(const struct kinfer_opts *o, const char *name)
{
    const struct opt_value *v = lookup_typed(o, name, KINFER_OPT_INT);
    return v->text ? v->num : 0;
}

int kinfer_opts_get_flag(const struct kinfer_opts *o, const char *name)
{
    const struct opt_value *v = lookup_typed(o, name, KINFER_OPT_FLAG);
    return v->text ? (int)v->num : 0;
}

const char *kinfer_opts_source(const struct kinfer_opts *o, const char *name)
{
    return rank_names[lookup(o, name)->rank];
}

size_t kinfer_opts_kafka_count(const struct kinfer_opts *o)
{
    return o->kafka.n;
}

void kinfer_opts_kafka_at(const struct kinfer_opts *o, size_t i,
                          const char **name, const char **value)
{
    if (i >= o->kafka.n) {
        KINFER_ERROR("kinfer_opts: kafka property %zu of %zu", i, o->kafka.n);
        abort();
    }
    *name = o->kafka.v[i].name;
    *value = o->kafka.v[i].value;
}

int kinfer_addr_split(const char *text, char *host, size_t hostsize, int *port)
{
    if (strcmp(text, "off") == 0)
        return 1;
    const char *colon = strrchr(text, ':');
    if (colon == NULL)
        return -1;
    const char *h = text;
    size_t hlen = (size_t)(colon - text);
    if (text[0] == '[') {
        /* An IPv6 address: its own colons stay inside the brackets. */
        if (hlen < 2 || text[hlen - 1] != ']')
            return -1;
        h = text + 1;
        hlen -= 2;
    } else if (memchr(text, ':', hlen) != NULL) {
        return -1; /* a bare IPv6 address: the port is ambiguous */
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= hostsize || plen == 0 || plen > 5 ||
        strspn(p, "0123456789") != plen)
        return -1;
    long v = strtol(p, NULL, 10);
    if (v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)v;
    return 0;
}

/* The left column for d: "--name ARG", or "--name" for a flag. */
static void help_left(const struct kinfer_optdef *d, char *buf, size_t size)
{
    if (d->type == KINFER_OPT_FLAG)
        kinfer_fmt(buf, size, "--%s", d->name);
    else
        kinfer_fmt(buf, size, "--%s %s", d->name,
                   d->argname ? d->argname : "VALUE");
}

static void help_row(FILE *f, int col, const char *left, const char *help,
                     const char *env, const char *def)
{
    fprintf(f, "  %-*s%s", col, left, help ? help : "");
    int has_def = def != NULL && def[0] != '\0';
    if (env != NULL && has_def)
        fprintf(f, " (env %s, default: %s)", env, def);
    else if (env != NULL)
        fprintf(f, " (env %s)", env);
    else if (has_def)
        fprintf(f, " (default: %s)", def);
    fputc('\n', f);
}

void kinfer_opts_print_help(const struct kinfer_optdef *defs, size_t ndefs,
                            const char *usage_line, const char *intro, FILE *f)
{
    static const char *const fixed[][2] = {
        {"-X name=value", "Set a librdkafka property (repeatable)"},
        {"-h, --help", "Show this help and exit"},
        {"-V, --version", "Show the version and exit"},
    };
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
    char left[OPTS_WHERE_MAX];

    /* One column for every row, wide enough for the longest left part. */
    size_t width = 0;
    for (size_t i = 0; i < ndefs; i++) {
        help_left(&defs[i], left, sizeof(left));
        if (strlen(left) > width)
            width = strlen(left);
    }
    for (size_t i = 0; i < nfixed; i++) {
        if (strlen(fixed[i][0]) > width)
            width = strlen(fixed[i][0]);
    }
    int col =
        (int)width + 2 > OPTS_HELP_MIN_COL ? (int)width + 2 : OPTS_HELP_MIN_COL;

    fprintf(f, "Usage: %s\n", usage_line ? usage_line : "");
    if (intro != NULL)
        fprintf(f, "\n%s\n", intro);
    fputs("\nOptions:\n", f);
    for (size_t i = 0; i < ndefs; i++) {
        help_left(&defs[i], left, sizeof(left));
        help_row(f, col, left, defs[i].help, defs[i].env, defs[i].def);
    }
    for (size_t i = 0; i < nfixed; i++)
        help_row(f, col, fixed[i][0], fixed[i][1], NULL, NULL);
    fputs("\nPrecedence: command line > environment > config file > "
          "default.\n"
          "In the config file, \"key = value\" sets an option (key without "
          "\"--\")\n"
          "or, when key contains a dot, a librdkafka property.\n",
          f);
}
