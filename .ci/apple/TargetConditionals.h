/* Test-only: the one Apple SDK header ring's C code includes, for the
 * `cargo check` of the Apple targets in CI (.ci/windows/test), where there is
 * no Apple SDK. macOS, not iOS. Never used to build anything that runs. */
#ifndef SXF_CI_TARGET_CONDITIONALS_H
#define SXF_CI_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
#endif
