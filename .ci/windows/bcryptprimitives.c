/* Test-only shim, never shipped: Debian 12's wine 8.0 has no bcryptprimitives.dll,
 * but Rust's std imports ProcessPrng from it, so no Rust program starts under that
 * wine. .ci/windows/setup-wine builds this into the wine prefix's system32.
 * ProcessPrng is documented to always return TRUE; RtlGenRandom takes a ULONG length. */
#include <windows.h>
#include <ntsecapi.h> /* RtlGenRandom, i.e. advapi32's SystemFunction036 */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData) {
    for (ULONG n; cbData > 0; pbData += n, cbData -= n) {
        n = cbData > 0x10000000 ? 0x10000000 : (ULONG)cbData;
        RtlGenRandom(pbData, n);
    }
    return TRUE;
}
