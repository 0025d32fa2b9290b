/*
 * ingest.h - committing a transaction too large for a memtable by
 * ingesting tables (there is no transaction size limit).
 *
 * Before the commit version is known, the transaction's pending writes
 * (the newest live write of each key, merged from its arena and spilled
 * runs) are written as non-overlapping tables whose keys carry version 0;
 * values at or above ValueThreshold are appended to the value log first
 * (through the writer queue, without WAL records), with the log pinned so
 * GC leaves those not-yet-referenced values alone.  Everything is synced.
 *
 * Then the commit is queued like any write: it is conflict-checked and
 * given its version V, and when it leads it leads alone.  As leader, the
 * committer flushes memtables that hold keys in the tables' range (reads
 * search memtables before tables, and those hold older versions), makes
 * every earlier write durable (prefix durability), and has the host place
 * each table - at the deepest level where nothing at or above overlaps
 * its range, else on top of level 0 - with "global version" V: every
 * entry reads as version V.  ONE manifest record installs them all; then
 * V is published.  A crash before the record leaves table files the next
 * open removes and value-log entries nothing points to (GC reclaims them).
 *
 * The install is the host's (host_req.h).
 */
#ifndef KV_INGEST_H
#define KV_INGEST_H

#include <stdint.h>

#include "kv.h"

struct kv_db;
struct kv_pending;

/* The committer's side (values reach the value log through the pending
 * store, which pins it until the transaction ends). */
struct kv_read_seg;
kv_status kv_ingest_commit(struct kv_db *db, struct kv_pending *p, const uint64_t *reads, const struct kv_read_seg *segs,
                           uint32_t n_segs, const uint64_t *extra_writes, size_t n_extra,
                           uint64_t *version_out, kv_err *err);

/* The leader's part, called by the writer for an ingest item. */
struct kv_ingest;
kv_status kv_ingest_apply(struct kv_db *db, struct kv_ingest *in, uint64_t version, kv_err *err);

/* Host: places and installs the tables (vset.mu NOT held); *level is
 * the shallowest level one went to.  *consumed =
 * 1 once the install was tried: after that, success or not, the table
 * metas and files belong to the version set (or to the next open). */
kv_status kv_ingest_install(struct kv_db *db, const uint64_t *metas, uint32_t n,
                            uint64_t version, int *level, int *consumed, kv_err *err);

#endif
