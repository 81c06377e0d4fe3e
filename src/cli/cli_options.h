/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The command line of libattn's tools (attn-probe, attn-bench, attn-tune):
 * one parser over getopt_long, and --help, --version and the manual page
 * all printed from the same table, so the three always agree.  Tool code,
 * not part of the library.
 *
 * Every tool accepts --name=value, --name value, -kVALUE and -k VALUE for
 * an option with a value, bundled short switches (-jv), a unique prefix of
 * a long name, -h / --help, -V / --version and -- to end the options.
 */
#ifndef ATTN_CLI_OPTIONS_H
#define ATTN_CLI_OPTIONS_H

#include <stdio.h>

/* Keys of options without a short letter start here. */
#define CLI_LONG_ONLY 256

/* One option.  help: lines separated by '\n'; NULL hides the option
 * (internal ones). */
typedef struct cli_option {
    const char *name; /* the long name, without "--" */
    int key;          /* the short letter, or CLI_LONG_ONLY + n */
    const char *arg;  /* NULL: a switch; else the value's name ("SPEC") */
    const char *help;
} cli_option;

/* A section of --help and of the manual page after the options
 * ("EXIT STATUS", "ENVIRONMENT", ...): paragraphs separated by blank
 * lines; lines that start with two spaces are kept as they are. */
typedef struct cli_section {
    const char *title;
    const char *text;
} cli_section;

typedef struct cli_spec {
    const char *prog;         /* "attn-probe" */
    const char *summary;      /* the manual page's NAME line: "lists ..." */
    const char *version;      /* attn_version() */
    const char *synopsis;     /* after the name: "[options]" */
    const char *about;        /* the description, before the options */
    const cli_option *opts;   /* ended by an entry with name NULL */
    const cli_section *after; /* ended by an entry with title NULL */
} cli_spec;

/* Receives each option in command-line order: its key and value (NULL for
 * a switch).  Returns 0, or -1 when the value is bad (the parser then says
 * so, naming the option, and exits 2). */
typedef int (*cli_handler)(void *user, int key, const char *value);

/* Parses argv.  Returns -1 to go on, or the exit status the tool should
 * return: 0 after --help, --version or --man (printed on stdout), 2 after
 * a usage error (said on stderr with a pointer to --help).  Arguments that
 * are not options are usage errors.  The first call also makes the
 * process exit with status 1, saying why on stderr, when its stdout could
 * not be written. */
int cli_parse(const cli_spec *spec, int argc, char **argv, cli_handler fn,
              void *user);

/* --help's text. */
void cli_usage(const cli_spec *spec, FILE *f);

/* The manual page (roff, man(7) macros) that --man prints; the build
 * installs it as <prog>.1. */
void cli_man(const cli_spec *spec, FILE *f);

#endif /* ATTN_CLI_OPTIONS_H */
