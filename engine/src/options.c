/*
 * options.c - every engine option, its documented default and its
 * validation.  Defaults follow Badger's DefaultOptions (v4) unless a
 * comment says otherwise; doc/INTERNALS.md has the table.  Validation runs
 * at open: an invalid value or combination is KV_INVALID with a message
 * that names the option as Badger spells it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "kv.h"

void kv_options_default(kv_options *o, const char *dir)
{
    memset(o, 0, sizeof *o);
    if (dir) snprintf(o->dir, sizeof o->dir, "%s", dir);
    o->sync_writes = 0;
    o->num_versions_to_keep = 1;
    o->read_only = 0;
    o->compression = KV_COMPRESS_SNAPPY;
    o->in_memory = 0;
    o->mem_table_size = 64 << 20;
    o->base_table_size = 2 << 20;
    o->base_level_size = 10 << 20;
    o->level_size_multiplier = 10;
    o->table_size_multiplier = 2;
    o->max_levels = 7;
    o->value_threshold = 1 << 20;
    o->num_memtables = 5;
    o->block_size = 4 << 10;
    o->bloom_false_positive = 0.01;
    o->block_cache_size = 256 << 20;
    o->index_cache_size = 0;
    o->num_level_zero_tables = 5;
    o->num_level_zero_tables_stall = 15;
    o->value_log_file_size = (1LL << 30) - 1;
    o->value_log_max_entries = 1000000;
    o->num_compactors = 4;
    o->compact_l0_on_close = 0;
    o->zstd_compression_level = 1;
    o->verify_value_checksum = 0;
    o->checksum_verification_mode = KV_VERIFY_NONE;
    o->detect_conflicts = 1;
    o->bypass_lock_guard = 0;
    o->encryption_key_len = 0;
    o->encryption_key_rotation_seconds = 10LL * 24 * 3600;
    o->shared_heap_size = 0;
    o->manifest_rewrite_threshold = 10000;
    o->conflict_table_size = 16 << 20;
    o->max_txn_memory = 64 << 20;
    o->max_attached_processes = 64;
    o->auto_vlog_gc = 1;
    o->auto_vlog_gc_ratio = 0.5;
    o->env = NULL;
    o->log_fn = NULL;
    o->log_ctx = NULL;
    o->log_level = KV_LOG_INFO;
}

#define BAD(...) kv_seterr(err, KV_INVALID, 0, __VA_ARGS__)

kv_status kv_options_validate(const kv_options *o, kv_err *err)
{
    if (!o) return BAD("options must not be NULL");
    if (!o->in_memory) {
        if (!memchr(o->dir, 0, sizeof o->dir)) return BAD("Dir is longer than %d bytes", KV_PATH_MAX - 1);
        if (!o->dir[0]) return BAD("Dir must be set unless InMemory is on");
        if (!memchr(o->value_dir, 0, sizeof o->value_dir))
            return BAD("ValueDir is longer than %d bytes", KV_PATH_MAX - 1);
        if (strlen(o->dir) > KV_PATH_MAX - 64 || strlen(o->value_dir) > KV_PATH_MAX - 64)
            return BAD("Dir and ValueDir must be shorter than %d bytes", KV_PATH_MAX - 64);
    } else {
        if (o->dir[0] || o->value_dir[0])
            return BAD("Dir and ValueDir must be empty when InMemory is on");
        if (o->read_only) return BAD("ReadOnly cannot be combined with InMemory");
    }
    if (o->num_versions_to_keep < 1)
        return BAD("NumVersionsToKeep must be at least 1 (got %d)", o->num_versions_to_keep);
    if (o->compression < KV_COMPRESS_NONE || o->compression > KV_COMPRESS_ZSTD)
        return BAD("Compression must be none, snappy or zstd (got %d)", (int)o->compression);
    if (o->mem_table_size < (64 << 10) || o->mem_table_size > (1LL << 31))
        return BAD("MemTableSize must be between 64 KiB and 2 GiB (got %lld)",
                   (long long)o->mem_table_size);
    if (o->base_table_size < (16 << 10) || o->base_table_size > (1LL << 32))
        return BAD("BaseTableSize must be between 16 KiB and 4 GiB (got %lld)",
                   (long long)o->base_table_size);
    if (o->base_level_size < o->base_table_size)
        return BAD("BaseLevelSize (%lld) must be at least BaseTableSize (%lld)",
                   (long long)o->base_level_size, (long long)o->base_table_size);
    if (o->level_size_multiplier < 2 || o->level_size_multiplier > 1000)
        return BAD("LevelSizeMultiplier must be between 2 and 1000 (got %d)",
                   o->level_size_multiplier);
    if (o->table_size_multiplier < 1 || o->table_size_multiplier > 100)
        return BAD("TableSizeMultiplier must be between 1 and 100 (got %d)",
                   o->table_size_multiplier);
    if (o->max_levels < 2 || o->max_levels > 16)
        return BAD("MaxLevels must be between 2 and 16 (got %d)", o->max_levels);
    if (o->value_threshold < 0 || o->value_threshold > (1 << 20))
        return BAD("ValueThreshold must be between 0 and 1 MiB (got %lld)",
                   (long long)o->value_threshold);
    if (o->num_memtables < 1 || o->num_memtables > 64)
        return BAD("NumMemtables must be between 1 and 64 (got %d)", o->num_memtables);
    if (o->block_size < 256 || o->block_size > (16 << 20))
        return BAD("BlockSize must be between 256 bytes and 16 MiB (got %d)", o->block_size);
    if (!(o->bloom_false_positive >= 0.0 && o->bloom_false_positive < 1.0))
        return BAD("BloomFalsePositive must be in [0, 1) (got %g)", o->bloom_false_positive);
    if (o->block_cache_size < 0) return BAD("BlockCacheSize must not be negative");
    if (o->index_cache_size < 0) return BAD("IndexCacheSize must not be negative");
    if (o->num_level_zero_tables < 1)
        return BAD("NumLevelZeroTables must be at least 1 (got %d)", o->num_level_zero_tables);
    if (o->num_level_zero_tables_stall <= o->num_level_zero_tables)
        return BAD("NumLevelZeroTablesStall (%d) must be greater than NumLevelZeroTables (%d)",
                   o->num_level_zero_tables_stall, o->num_level_zero_tables);
    if (o->num_level_zero_tables_stall > 1000)
        return BAD("NumLevelZeroTablesStall must be at most 1000 (got %d)",
                   o->num_level_zero_tables_stall);
    if (o->value_log_file_size < (1 << 20) || o->value_log_file_size >= (2LL << 30))
        return BAD("ValueLogFileSize must be between 1 MiB and 2 GiB (got %lld)",
                   (long long)o->value_log_file_size);
    if (o->value_log_max_entries < 1) return BAD("ValueLogMaxEntries must be at least 1");
    if (o->num_compactors < 0 || o->num_compactors > 64)
        return BAD("NumCompactors must be between 0 and 64 (got %d)", o->num_compactors);
    if (o->zstd_compression_level < 1 || o->zstd_compression_level > 22)
        return BAD("ZSTDCompressionLevel must be between 1 and 22 (got %d)",
                   o->zstd_compression_level);
    if (o->checksum_verification_mode < KV_VERIFY_NONE ||
        o->checksum_verification_mode > KV_VERIFY_ON_TABLE_AND_BLOCK_READ)
        return BAD("ChecksumVerificationMode must be 0..3 (got %d)",
                   (int)o->checksum_verification_mode);
    if (o->encryption_key_len != 0 && o->encryption_key_len != 16 &&
        o->encryption_key_len != 24 && o->encryption_key_len != 32)
        return BAD("EncryptionKey must be 16, 24 or 32 bytes long (got %d)",
                   o->encryption_key_len);
    if (o->encryption_key_len && o->encryption_key_rotation_seconds <= 0)
        return BAD("EncryptionKeyRotationDuration must be positive");
    if (o->encryption_key_len && o->in_memory)
        return BAD("EncryptionKey cannot be combined with InMemory");
    if (o->shared_heap_size < 0 || (o->shared_heap_size && o->shared_heap_size < (1 << 20)))
        return BAD("SharedHeapSize must be 0 (derived) or at least 1 MiB");
    if (o->conflict_table_size < (64 << 10) || o->conflict_table_size > (1LL << 32))
        return BAD("ConflictTableSize must be between 64 KiB and 4 GiB (got %lld)",
                   (long long)o->conflict_table_size);
    if (o->max_txn_memory < (64 << 10) || o->max_txn_memory > (1LL << 31))
        return BAD("MaxTxnMemory must be between 64 KiB and 2 GiB (got %lld)",
                   (long long)o->max_txn_memory);
    if (o->manifest_rewrite_threshold < 1)
        return BAD("ManifestRewriteThreshold must be at least 1");
    if (o->max_attached_processes < 0 || o->max_attached_processes > 100000)
        return BAD("MaxAttachedProcesses must be between 0 and 100000");
    if (!(o->auto_vlog_gc_ratio > 0.0 && o->auto_vlog_gc_ratio < 1.0))
        return BAD("AutoValueLogGCRatio must be in (0, 1) (got %g)", o->auto_vlog_gc_ratio);
    if (o->log_level < KV_LOG_DEBUG || o->log_level > KV_LOG_ERROR)
        return BAD("log level must be 0..3");
    return KV_OK;
}
