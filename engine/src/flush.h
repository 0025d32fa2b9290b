/*
 * flush.h - turning immutable memtables into level-0 tables.
 *
 * The host runs one flush thread.  It takes the oldest immutable memtable,
 * waits while level 0 holds NumLevelZeroTablesStall tables (so writers
 * stall behind full memtables instead of L0 growing without bound), writes
 * the memtable's entries to a new table, records it in the MANIFEST, and
 * in the same step swaps the memtable out of the view; then the memtable's
 * WAL is deleted.
 */
#ifndef KV_FLUSH_H
#define KV_FLUSH_H

#include "kv.h"

struct kv_db;
struct kv_memtable;

kv_status kv_flush_start(struct kv_db *db, kv_err *err);
void kv_flush_stop(struct kv_db *db);

/* Writes mt to an L0 table and installs it (also used at open for
 * replayed memtables).  REQUIRES: mt is on the immutable list. */
kv_status kv_flush_memtable(struct kv_db *db, struct kv_memtable *mt, kv_err *err);

/* Options for building a table at a level. */
struct kv_sst_build_opts;
void kv_table_build_opts(struct kv_db *db, uint64_t id, struct kv_sst_build_opts *o);

#endif
