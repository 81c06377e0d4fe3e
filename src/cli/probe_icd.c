/* SPDX-License-Identifier: Apache-2.0 */
/* attn-probe: the OpenCL drivers (ICD files) registered with the loader. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/probe.h"

int probe_icd_files(char *where, size_t cap)
{
    const char *dir = getenv("OCL_ICD_VENDORS");
    DIR *d;
    struct dirent *e;
    int n = 0;
    if (!dir || !*dir)
        dir = "/etc/OpenCL/vendors";
    if (where)
        snprintf(where, cap, "%s", dir);
    if (!(d = opendir(dir))) {
        /* OCL_ICD_VENDORS may name one .icd file. */
        size_t len = strlen(dir);
        return len > 4 && !strcmp(dir + len - 4, ".icd") ? 1 : 0;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > 4 && !strcmp(e->d_name + len - 4, ".icd");
    }
    closedir(d);
    return n;
}
