/* SPDX-License-Identifier: Apache-2.0 */
/* The rows of one attn-bench case (runner.h): added by the in-process
 * runner and the python peers alike. */
#include "runner.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

row *case_row_add(case_rows *cr, const case_inputs *in, int causal, impl_id id,
                  const char *impl, const char *label)
{
    if (cr->n == MAX_ROWS)
        return NULL;
    row *r = &cr->r[cr->n++];
    memset(r, 0, sizeof *r);
    r->impl = impl;
    r->id = id;
    util_scopy(r->key, sizeof r->key, impl_name(id));
    util_scopy(r->label, sizeof r->label, label);
    r->timing = "host";
    r->s = in->s;
    r->causal = causal;
    r->f16 = in->f16;
    r->decode = in->decode;
    r->wall_ms = NAN;
    r->diff = NAN;
    return r;
}

void case_row_note(case_rows *cr, row *r, const char *fmt, ...)
{
    char *buf = cr->note[r - cr->r];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof cr->note[0], fmt, ap);
    va_end(ap);
    r->note = buf;
}
