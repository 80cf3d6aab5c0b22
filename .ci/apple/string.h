/* Test-only, like TargetConditionals.h beside it: the declarations ring's C
 * code uses, for a type check without an Apple SDK. */
#ifndef SXF_CI_STRING_H
#define SXF_CI_STRING_H
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
#endif
