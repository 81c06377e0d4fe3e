/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The checks of old_caller.c: a caller built against the first layouts of
 * libattn's structs.  Each returns NULL when the library behaved, else a
 * sentence saying what it did wrong.
 */
#ifndef ATTN_TEST_OLD_CALLER_H
#define ATTN_TEST_OLD_CALLER_H

/* attn_options_init_sized and attn_options_init write the first layout
 * and nothing past it. */
const char *old_caller_options(void);
/* A context from the first layout (with a wild pointer where kernel would
 * be), its device into the first attn_device_info layout, and a causal
 * attn_sdpa checked against a reference. */
const char *old_caller_context(void);
/* Options zeroed, struct_size 0, give a context. */
const char *old_caller_zeroed(void);
/* attn_devices walks an array of the first layout by its size. */
const char *old_caller_devices(void);

#endif /* ATTN_TEST_OLD_CALLER_H */
