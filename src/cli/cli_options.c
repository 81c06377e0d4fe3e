/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tools' command line (cli_options.h): getopt_long over a table, and
 * --help, --version and --man printed from that table.
 */
#include "cli/cli_options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KEY_HELP = 'h', KEY_VERSION = 'V', KEY_MAN = 0x7ffe };

static const cli_option builtin[] = {
    {"help", KEY_HELP, NULL, "this text"},
    {"version", KEY_VERSION, NULL, "the version of the tool and of libattn"},
    {"man", KEY_MAN, NULL, NULL}, /* the manual page, for the build */
};

static size_t count(const cli_option *o)
{
    size_t n = 0;
    while (o[n].name)
        n++;
    return n;
}

static const cli_option *find(const cli_spec *s, int key)
{
    for (const cli_option *o = s->opts; o->name; o++)
        if (o->key == key)
            return o;
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        if (builtin[i].key == key)
            return &builtin[i];
    return NULL;
}

/* ---- --help ----------------------------------------------------------------
 */

#define HELP_COL 24

/* "-d, --device=SPEC" or "    --json". */
static int option_label(const cli_option *o, char *buf, size_t cap)
{
    int has_short = o->key < CLI_LONG_ONLY && isalnum(o->key);
    return snprintf(buf, cap, "%c%c%s--%s%s%s", has_short ? '-' : ' ',
                    has_short ? o->key : ' ', has_short ? ", " : "  ", o->name,
                    o->arg ? "=" : "", o->arg ? o->arg : "");
}

static void help_option(const cli_option *o, FILE *f)
{
    char label[96];
    const char *p = o->help;
    int w = option_label(o, label, sizeof label);
    int first = 1;
    fprintf(f, "  %s", label);
    if (w + 2 >= HELP_COL) {
        fputc('\n', f);
        w = -1;
    }
    while (*p) {
        size_t len = strcspn(p, "\n");
        fprintf(f, "%*s%.*s\n", first && w >= 0 ? HELP_COL - w - 2 : HELP_COL,
                "", (int)len, p);
        first = 0;
        p += len + (p[len] == '\n');
    }
}

/* Text indented by two spaces, blank lines kept. */
static void help_text(const char *p, FILE *f)
{
    while (*p) {
        size_t len = strcspn(p, "\n");
        fprintf(f, len ? "  %.*s\n" : "%.*s\n", (int)len, p);
        p += len + (p[len] == '\n');
    }
}

void cli_usage(const cli_spec *s, FILE *f)
{
    fprintf(f, "usage: %s %s\n\n%s\n", s->prog, s->synopsis, s->about);
    fprintf(f, "\nOptions:\n");
    for (const cli_option *o = s->opts; o->name; o++)
        if (o->help)
            help_option(o, f);
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        if (builtin[i].help)
            help_option(&builtin[i], f);
    for (const cli_section *c = s->after; c && c->title; c++) {
        fprintf(f, "\n%s:\n", c->title);
        help_text(c->text, f);
    }
}

/* ---- --man -----------------------------------------------------------------
 */

/* Text for roff: backslashes and dashes escaped. */
static void roff_chars(const char *p, size_t len, FILE *f)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\\')
            fputs("\\e", f);
        else if (p[i] == '-')
            fputs("\\-", f);
        else
            fputc(p[i], f);
    }
}

/* One line of text: a leading period or quote made literal. */
static void roff_line(const char *p, size_t len, FILE *f)
{
    if (len && (*p == '.' || *p == '\''))
        fputs("\\&", f);
    roff_chars(p, len, f);
    fputc('\n', f);
}

/* Paragraphs: a blank line starts a new one, lines that start with two
 * spaces are kept as they are (no filling). */
static void roff_text(const char *p, FILE *f)
{
    int literal = 0;
    while (*p) {
        size_t len = strcspn(p, "\n");
        int keep = len >= 2 && p[0] == ' ' && p[1] == ' ';
        if (keep != literal) {
            fputs(keep ? ".nf\n" : ".fi\n", f);
            literal = keep;
        }
        if (len == 0)
            fputs(".PP\n", f);
        else
            roff_line(p, len, f);
        p += len + (p[len] == '\n');
    }
    if (literal)
        fputs(".fi\n", f);
}

static void man_option(const cli_option *o, FILE *f)
{
    const char *p = o->help;
    fputs(".TP\n", f);
    if (o->key < CLI_LONG_ONLY && isalnum(o->key)) {
        fprintf(f, "\\fB\\-%c\\fR", o->key);
        if (o->arg) {
            fputs(" \\fI", f);
            roff_chars(o->arg, strlen(o->arg), f);
            fputs("\\fR", f);
        }
        fputs(", ", f);
    }
    fputs("\\fB\\-\\-", f);
    roff_chars(o->name, strlen(o->name), f);
    fputs("\\fR", f);
    if (o->arg) {
        fputs("=\\fI", f);
        roff_chars(o->arg, strlen(o->arg), f);
        fputs("\\fR", f);
    }
    fputc('\n', f);
    /* Lines fill; one that starts with a space (a list) starts a line. */
    for (int first = 1; *p; first = 0) {
        size_t len = strcspn(p, "\n");
        if (!first && *p == ' ')
            fputs(".br\n", f);
        roff_line(p, len, f);
        p += len + (p[len] == '\n');
    }
}

void cli_man(const cli_spec *s, FILE *f)
{
    char upper[64];
    size_t i;
    for (i = 0; s->prog[i] && i + 1 < sizeof upper; i++)
        upper[i] = (char)toupper((unsigned char)s->prog[i]);
    upper[i] = '\0';
    fprintf(f, ".TH %s 1 \"\" \"libattn %s\" \"libattn tools\"\n", upper,
            s->version);
    fputs(".SH NAME\n", f);
    fprintf(f, "%s \\- ", s->prog);
    roff_line(s->summary, strlen(s->summary), f);
    fputs(".SH SYNOPSIS\n.B ", f);
    roff_line(s->prog, strlen(s->prog), f);
    roff_line(s->synopsis, strlen(s->synopsis), f);
    fputs(".SH DESCRIPTION\n", f);
    roff_text(s->about, f);
    fputs(".SH OPTIONS\n", f);
    for (const cli_option *o = s->opts; o->name; o++)
        if (o->help)
            man_option(o, f);
    for (i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        if (builtin[i].help)
            man_option(&builtin[i], f);
    for (const cli_section *c = s->after; c && c->title; c++) {
        for (i = 0; c->title[i] && i + 1 < sizeof upper; i++)
            upper[i] = (char)toupper((unsigned char)c->title[i]);
        upper[i] = '\0';
        fprintf(f, ".SH %s\n", upper);
        roff_text(c->text, f);
    }
}

/* ---- parsing ---------------------------------------------------------------
 */

static const char *exit_prog = "attn";

/* At exit: output that could not be written (a full disk, a closed
 * stdout) is a failure, not a success with nothing said. */
static void check_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: cannot write the output: %s\n", exit_prog,
                strerror(errno ? errno : EIO));
        _exit(1);
    }
}

int cli_parse(const cli_spec *s, int argc, char **argv, cli_handler fn,
              void *user)
{
    size_t n = count(s->opts), nb = sizeof builtin / sizeof builtin[0];
    struct option *lo = calloc(n + nb + 1, sizeof *lo);
    char *shorts = malloc(3 * (n + nb) + 2);
    char **av = malloc(((size_t)argc + 1) * sizeof *av);
    size_t k = 0;
    int rc = -1, c;
    static int checked;
    if (!checked) {
        exit_prog = s->prog;
        checked = atexit(check_stdout) == 0;
    }
    if (!lo || !shorts || !av) {
        fprintf(stderr, "%s: out of memory\n", s->prog);
        rc = 2;
        goto done;
    }
    shorts[k++] = '+'; /* no argument is an option after a non-option */
    for (size_t i = 0; i < n + nb; i++) {
        const cli_option *o = i < n ? &s->opts[i] : &builtin[i - n];
        lo[i].name = o->name;
        lo[i].has_arg = o->arg ? required_argument : no_argument;
        lo[i].val = o->key;
        if (o->key < CLI_LONG_ONLY && isalnum(o->key)) {
            shorts[k++] = (char)o->key;
            if (o->arg)
                shorts[k++] = ':';
        }
    }
    shorts[k] = '\0';
    /* getopt names the program by argv[0]: the tool's name, not its
     * path. */
    memcpy(av, argv, (size_t)argc * sizeof *av);
    av[0] = (char *)s->prog;
    av[argc] = NULL;
    optind = 1;
    opterr = 1;
    while (rc < 0 && (c = getopt_long(argc, av, shorts, lo, NULL)) != -1) {
        const cli_option *o = find(s, c);
        if (c == '?' || !o) {
            rc = 2;
        } else if (c == KEY_HELP) {
            cli_usage(s, stdout);
            rc = 0;
        } else if (c == KEY_VERSION) {
            printf("%s (libattn) %s\n", s->prog, s->version);
            rc = 0;
        } else if (c == KEY_MAN) {
            cli_man(s, stdout);
            rc = 0;
        } else if (fn(user, c, o->arg ? optarg : NULL) != 0) {
            fprintf(stderr, "%s: bad value '%s' for --%s\n", s->prog,
                    optarg ? optarg : "", o->name);
            rc = 2;
        }
    }
    if (rc < 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", s->prog, av[optind]);
        rc = 2;
    }
    if (rc == 2)
        fprintf(stderr, "Try '%s --help'.\n", s->prog);
done:
    free(lo);
    free(shorts);
    free(av);
    return rc;
}
