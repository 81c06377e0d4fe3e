/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A strict, small JSON reader for the tests (RFC 8259: no trailing commas,
 * no comments, no NaN, strings in UTF-8 with escapes decoded), so that
 * checking attn-probe --json needs no other dependency.
 */
#ifndef ATTN_TEST_MINI_JSON_H
#define ATTN_TEST_MINI_JSON_H

#include <stddef.h>

typedef enum mj_type {
    MJ_NULL,
    MJ_BOOL,
    MJ_NUM,
    MJ_STR,
    MJ_ARR,
    MJ_OBJ
} mj_type;

/* One value.  Arrays and objects hold n items; objects also n keys. */
typedef struct mj {
    mj_type type;
    int boolean;
    double num;
    char *str; /* MJ_STR, decoded, NUL-terminated */
    struct mj *items;
    char **keys;
    size_t n;
} mj;

/* Parses the whole text (surrounding white space allowed).  Returns a tree
 * to free with mj_free, or NULL with a message in err (may be NULL). */
mj *mj_parse(const char *text, char *err, size_t cap);
void mj_free(mj *v);

/* The member key of object v, or NULL (also when v is not an object). */
const mj *mj_get(const mj *v, const char *key);

#endif /* ATTN_TEST_MINI_JSON_H */
