/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 (src/sha256.c) against the test vectors of FIPS 180-4 (the
 * one-block "abc", the two-block 448-bit message, a million 'a') and the
 * empty message, messages whose padding falls at each block boundary, and
 * the same digest whatever pieces the message is fed in.  The digests of
 * the padding cases are those of coreutils' sha256sum.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "harness.h"
#include "core/sha256.h"

static void hex(const unsigned char *d, char *out)
{
    for (int i = 0; i < ATTN_SHA256_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void expect_digest(const void *p, size_t n, const char *want,
                          const char *what)
{
    unsigned char d[ATTN_SHA256_BYTES];
    char got[2 * ATTN_SHA256_BYTES + 1];
    attn_sha256(p, n, d);
    hex(d, got);
    if (strcmp(got, want) != 0)
        printf("\n  %s: %s, want %s\n", what, got, want);
    HARNESS_EXPECT(strcmp(got, want) == 0, what);
}

static void test_fips_vectors(void)
{
    static const char two_blocks[] =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char *million = malloc(1000000);
    attn_sha256_ctx s;
    unsigned char d[ATTN_SHA256_BYTES];
    char got[2 * ATTN_SHA256_BYTES + 1];
    CU_ASSERT_PTR_NOT_NULL_FATAL(million);
    expect_digest("abc", 3,
                  "ba7816bf8f01cfea414140de5dae2223"
                  "b00361a396177a9cb410ff61f20015ad",
                  "one block, \"abc\"");
    expect_digest(two_blocks, sizeof two_blocks - 1,
                  "248d6a61d20638b8e5c026930c3e6039"
                  "a33ce45964ff2167f6ecedd419db06c1",
                  "two blocks, 448 bits");
    memset(million, 'a', 1000000);
    expect_digest(million, 1000000,
                  "cdc76e5c9914fb9281a1c7e284d73e67"
                  "f1809a48a497200e046d39ccc7112cd0",
                  "one million 'a'");
    /* The same million in pieces of 1000, through the streaming calls. */
    attn_sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        attn_sha256_update(&s, million + 1000 * i, 1000);
    attn_sha256_final(&s, d);
    hex(d, got);
    CU_ASSERT_STRING_EQUAL(got, "cdc76e5c9914fb9281a1c7e284d73e67"
                                "f1809a48a497200e046d39ccc7112cd0");
    expect_digest(NULL, 0,
                  "e3b0c44298fc1c149afbf4c8996fb924"
                  "27ae41e4649b934ca495991b7852b855",
                  "the empty message");
    free(million);
}

/* Bytes (7 i + 3) mod 256 of lengths around the padding boundaries: 55
 * bytes leave room for the length in the last block, 56 do not, 64 fill
 * one block exactly. */
static void test_padding_boundaries(void)
{
    static const struct {
        size_t n;
        const char *digest;
    } cases[] = {
        {55,
         "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56,
         "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {63,
         "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64,
         "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65,
         "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119,
         "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {120,
         "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
        {128,
         "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"}};
    unsigned char msg[128];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (unsigned char)((i * 7 + 3) & 255);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char what[64];
        snprintf(what, sizeof what, "%zu bytes", cases[c].n);
        expect_digest(msg, cases[c].n, cases[c].digest, what);
    }
}

/* Any split of a message into two or three pieces gives its digest. */
static void test_pieces(void)
{
    unsigned char msg[130], whole[ATTN_SHA256_BYTES], d[ATTN_SHA256_BYTES];
    int same = 1;
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (unsigned char)(i * 29 + 1);
    attn_sha256(msg, sizeof msg, whole);
    for (size_t a = 0; a <= sizeof msg; a++)
        for (size_t b = a; b <= sizeof msg; b += 13) {
            attn_sha256_ctx s;
            attn_sha256_init(&s);
            attn_sha256_update(&s, msg, a);
            attn_sha256_update(&s, msg + a, b - a);
            attn_sha256_update(&s, msg + b, sizeof msg - b);
            attn_sha256_final(&s, d);
            same &= memcmp(d, whole, sizeof d) == 0;
        }
    CU_ASSERT(same);
}

int main(void)
{
    static const harness_test tests[] = {
        {"FIPS 180-4 test vectors", test_fips_vectors},
        {"padding at the block boundaries", test_padding_boundaries},
        {"a message in pieces", test_pieces},
        {NULL, NULL}};
    return harness_main("sha256", NULL, NULL, tests);
}
