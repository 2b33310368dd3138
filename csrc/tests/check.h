/* The counters, the CHECK macro and the seeded generator shared by the C test programs: a failed
 * check prints its file, line and condition and the program goes on, so one run lists every
 * failure. */
#ifndef FINERCAM_TESTS_CHECK_H
#define FINERCAM_TESTS_CHECK_H

#include <stdint.h>
#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                 \
        }                                                                                          \
    } while (0)

/* xorshift64: the same pseudo-random inputs on every run and platform. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static inline uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* Prints the tally; the exit status of main. */
static int check_report(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif
