/*
 * err.h - filling kv_err: the one way the engine reports an error.
 *
 * kv_seterr() formats into the caller's fixed buffer (never allocates) and
 * returns the status, so error paths read "return kv_seterr(err, KV_IO,
 * errno, "write %s at %llu", path, off);".  err may be NULL.
 */
#ifndef KV_ERR_H
#define KV_ERR_H

#include "kv.h"

kv_status kv_seterr(kv_err *err, kv_status st, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Maps an errno from a failed write-side call to KV_NO_SPACE or KV_IO. */
kv_status kv_status_from_errno(int e);

/* Copies src into dst (either may be NULL); returns src->code. */
kv_status kv_err_copy(kv_err *dst, const kv_err *src);

/* Prefixes the message in err with "what: " (for context added by callers). */
void kv_err_prefix(kv_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
