/* The counters and the CHECK macro shared by the C test programs: a failed check prints its
 * file, line and condition and the program goes on, so one run lists every failure. */
#ifndef FINERCAM_TESTS_CHECK_H
#define FINERCAM_TESTS_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
        }                                                                    \
    } while (0)

/* Prints the tally; the exit status of main. */
static int check_report(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

#endif
