/* Test-only, like TargetConditionals.h beside it: a type check needs no asserts. */
#ifndef SXF_CI_ASSERT_H
#define SXF_CI_ASSERT_H
#define assert(x) ((void)0)
#endif
