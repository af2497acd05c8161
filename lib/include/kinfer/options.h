/* Command-line options for kinfer's programs, resolved with the precedence
 * flag > environment variable > config file > default, plus librdkafka
 * properties passed through with -X name=value (as kcat does) or as
 * "name = value" lines with a dot in the name in the config file.
 *
 * Config file: one "key = value" per line; blank lines and lines starting
 * with '#' are ignored; key is a long option name (without "--") or a
 * librdkafka property (contains a '.').  The file comes from the option
 * whose definition has is_config_file set (flag or its environment
 * variable).
 *
 * Not thread-safe; used once at start-up from main.
 */
#ifndef KINFER_OPTIONS_H
#define KINFER_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#include "kinfer/error.h"

enum kinfer_opt_type {
    KINFER_OPT_STRING, /* any non-empty string */
    KINFER_OPT_INT,    /* decimal integer within [min, max] */
    KINFER_OPT_FLAG,   /* no argument on the command line; "true"/"false",
                          "1"/"0" in env or file */
    KINFER_OPT_LIST,   /* repeatable string: the repeats of the winning
                          source are joined with ':' (as PATH is) */
    KINFER_OPT_ADDR    /* "HOST:PORT" or "[IPV6]:PORT" with a port from 0
                          to 65535, or "off" (see kinfer_addr_split) */
};

struct kinfer_optdef {
    const char *name; /* long name without "--", e.g. "threads" */
    const char *env;  /* environment variable, or NULL */
    enum kinfer_opt_type type;
    const char *def;     /* default as text, or NULL (unset) */
    long long min, max;  /* KINFER_OPT_INT bounds */
    const char *argname; /* for --help: "N", "LIST" ... */
    const char *help;    /* one line for --help */
    int is_config_file;  /* this option names the config file */
};

struct kinfer_opts;

/* Resolve every option in defs[0..ndefs) from argv (argv[0] skipped), envp
 * (a NULL-terminated "NAME=value" array, as environ; may be NULL) and the
 * config file.  "--help"/"-h" and "--version"/"-V" are always accepted and
 * reported by kinfer_opts_help_requested / _version_requested.  "--name
 * value" and "--name=value" both work.  Positional arguments are an error.
 *
 * On KINFER_OK *out holds the result (free with kinfer_opts_free).  On
 * KINFER_ERR_CONFIG err holds a message naming the option and the source
 * ("--threads: expected an integer from 1 to 1024, got 'x'",
 * "KINFER_THREADS: ...", "config.ini:3: unknown key 'thread'"). */
enum kinfer_err kinfer_opts_parse(const struct kinfer_optdef *defs,
                                  size_t ndefs, int argc, char *const *argv,
                                  char *const *envp, struct kinfer_opts **out,
                                  char *err, size_t errsize)
    __attribute__((warn_unused_result));

void kinfer_opts_free(struct kinfer_opts *o);

int kinfer_opts_help_requested(const struct kinfer_opts *o);
int kinfer_opts_version_requested(const struct kinfer_opts *o);

/* The resolved value as text, or NULL when unset.  Borrowed from o.
 * name must be one of the defs. */
const char *kinfer_opts_get(const struct kinfer_opts *o, const char *name);

/* The resolved KINFER_OPT_INT value (already range-checked); 0 when unset. */
long long kinfer_opts_get_int(const struct kinfer_opts *o, const char *name);

/* The resolved KINFER_OPT_FLAG value: 1 or 0. */
int kinfer_opts_get_flag(const struct kinfer_opts *o, const char *name);

/* Where the value came from: "flag", "env", "file" or "default". */
const char *kinfer_opts_source(const struct kinfer_opts *o, const char *name);

/* librdkafka properties in the order they apply (file first, then -X), so
 * that setting them in turn leaves the highest precedence in force. */
size_t kinfer_opts_kafka_count(const struct kinfer_opts *o);
void kinfer_opts_kafka_at(const struct kinfer_opts *o, size_t i,
                          const char **name, const char **value);

/* Split a KINFER_OPT_ADDR value: "HOST:PORT", "[IPV6]:PORT" (brackets
 * dropped) into host (NUL-terminated, at most hostsize-1 bytes) and *port.
 * Returns 1 for "off", 0 when split, -1 when text is neither (empty host,
 * no port, a port over 65535 or not a number, host too long). */
int kinfer_addr_split(const char *text, char *host, size_t hostsize, int *port)
    __attribute__((warn_unused_result));

/* Write usage text: "Usage: <usage_line>", then each option with its
 * argument, environment variable, default and help, then -X. */
void kinfer_opts_print_help(const struct kinfer_optdef *defs, size_t ndefs,
                            const char *usage_line, const char *intro, FILE *f);

#endif
