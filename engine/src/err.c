/*
 * err.c - status names and kv_err formatting (see err.h).
 */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *kv_status_str(kv_status st)
{
    switch (st) {
    case KV_OK: return "ok";
    case KV_NOT_FOUND: return "not found";
    case KV_CONFLICT: return "transaction conflict";
    case KV_CORRUPTION: return "corruption";
    case KV_IO: return "i/o error";
    case KV_NO_SPACE: return "no space";
    case KV_INVALID: return "invalid argument";
    case KV_LOCKED: return "locked";
    case KV_READ_ONLY: return "read-only";
    case KV_TOO_BIG: return "too big";
    case KV_BUSY: return "busy";
    case KV_CLOSED: return "closed";
    case KV_NO_MEMORY: return "out of memory";
    case KV_BAD_TXN: return "bad transaction";
    case KV_NO_REWRITE: return "no rewrite";
    case KV_TIMEOUT: return "timeout";
    }
    return "unknown status";
}

kv_status kv_seterr(kv_err *err, kv_status st, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    if (!err) return st;
    err->code = st;
    err->sys_errno = sys_errno;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (sys_errno) {
        n = strlen(err->msg);
        if (n + 3 < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - n, ": %s", strerror(sys_errno));
    }
    return st;
}

kv_status kv_status_from_errno(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? KV_NO_SPACE : KV_IO;
}

kv_status kv_err_copy(kv_err *dst, const kv_err *src)
{
    if (dst && src && dst != src) *dst = *src;
    return src ? src->code : KV_OK;
}

void kv_err_prefix(kv_err *err, const char *fmt, ...)
{
    char tmp[KV_ERRMSG_MAX];
    va_list ap;
    int n;

    if (!err) return;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 2 >= sizeof tmp) return;
    tmp[n++] = ':';
    tmp[n++] = ' ';
    memcpy(tmp + n, err->msg, sizeof tmp - (size_t)n);
    tmp[sizeof tmp - 1] = 0;
    memcpy(err->msg, tmp, sizeof tmp);
}
