/*
 * manifest.h - the MANIFEST file: which tables exist at which level.
 *
 * Append-only, checksummed records (frames, frame.h), each a version edit (tables created
 * with their level, key range and counts; tables deleted; the next file id
 * and newest stored version).  Replaying the records in order gives the
 * current version; a torn last record (crash mid-append) is cut off.  When
 * deletions pass a threshold the file is rewritten as one snapshot record
 * into MANIFEST-REWRITE, synced, and renamed over MANIFEST (atomic).
 * Byte-exact layout: doc/FORMATS.md.
 */
#ifndef KV_MANIFEST_H
#define KV_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "sst.h"
#include "version.h"

#define KV_MANIFEST_NAME "MANIFEST"
#define KV_MANIFEST_REWRITE_NAME "MANIFEST-REWRITE"
#define KV_MANIFEST_MAGIC 0x464D564Bu /* "KVMF" */
#define KV_MANIFEST_VERSION 1u
#define KV_MANIFEST_HEADER_SIZE 16u
#define KV_MANIFEST_REWRITE_DELETIONS 10000
#define KV_MANIFEST_REWRITE_RATIO 10

/* One live table as the manifest describes it. */
typedef struct kv_mf_table {
    int level;
    uint64_t order;              /* creation position (orders level 0) */
    uint64_t global_version;     /* ingested table: the version of every entry */
    uint64_t dropped_upto;       /* drops up to this version applied */
    kv_sst_props props;          /* id, size, counts, versions, compression */
    uint8_t *smallest, *largest; /* malloc'd internal keys */
    size_t slen, llen;
} kv_mf_table;

/* The result of replaying a manifest. */
typedef struct kv_mf_state {
    kv_mf_table *tables;
    size_t n, cap;
    kv_drop *drops;              /* drops in effect (drops.h) */
    size_t n_drops;
    uint64_t next_file_id;
    uint64_t max_version;
    uint64_t creations, deletions;
    uint64_t valid_end;          /* bytes of valid records (incl. header) */
    uint64_t records;
} kv_mf_state;

void kv_mf_state_free(kv_mf_state *s);

/* Parses a whole manifest image.  A torn tail ends parsing (valid_end
 * tells where); anything else wrong is KV_CORRUPTION naming the offset. */
kv_status kv_manifest_parse(const uint8_t *data, size_t n, const char *path, kv_mf_state *s,
                            kv_err *err);

struct kv_db;

/* Host at open: opens or creates MANIFEST in db->dir, replays it into *s,
 * truncates a torn tail (unless read-only) and keeps the file open for
 * appends. */
kv_status kv_manifest_open(struct kv_db *db, kv_mf_state *s, kv_err *err);
void kv_manifest_close(struct kv_db *db);

/* Applies edit e to the current version: builds the new version, appends
 * and syncs the record, installs it, and rewrites the manifest if
 * deletions passed the threshold.  REQUIRES vset.mu held, host. */
kv_status kv_apply_edit(struct kv_db *db, const kv_vedit *e, kv_err *err);

/* Writes a snapshot of version v as the new MANIFEST (atomic rename). */
kv_status kv_manifest_rewrite(struct kv_db *db, const kv_version *v, kv_err *err);

#endif
