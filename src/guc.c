/*
 * guc.c - the kvsep.* configuration parameters and the engine options
 * built from them.
 *
 * Everything that shapes the engine's shared memory or files is fixed at
 * server start (PGC_POSTMASTER); the defaults fit a small machine.  The
 * prefix "kvsep" is reserved, so a misspelt kvsep.* setting is reported.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "kvsep_fdw.h"

char	   *kvsep_data_directory = NULL;
char	   *kvsep_value_directory = NULL;
int			kvsep_memtable_size_mb = 16;
int			kvsep_num_memtables = 3;
int			kvsep_value_threshold = 1024;
int			kvsep_block_cache_size_mb = 64;
int			kvsep_compression = KV_COMPRESS_SNAPPY;
int			kvsep_compactors = 2;
int			kvsep_value_log_file_size_mb = 256;
int			kvsep_max_txn_memory_mb = 64;
bool		kvsep_auto_vlog_gc = true;
double		kvsep_vlog_gc_ratio = 0.5;
int			kvsep_attach_timeout_ms = 30000;
int			kvsep_batch_size = 100;
int			kvsep_out_of_line_size = 2048;

static const struct config_enum_entry compression_options[] = {
	{"none", KV_COMPRESS_NONE, false},
	{"snappy", KV_COMPRESS_SNAPPY, false},
	{"zstd", KV_COMPRESS_ZSTD, false},
	{NULL, 0, false}
};

void
kvsep_define_gucs(void)
{
	DefineCustomStringVariable("kvsep.data_directory",
							   "Directory of the kvsep storage engine (LSM files, WAL, MANIFEST).",
							   "Empty means \"kvsep\" inside the data directory.",
							   &kvsep_data_directory, "", PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("kvsep.value_directory",
							   "Directory of the value-log files.",
							   "Empty means the same as kvsep.data_directory.",
							   &kvsep_value_directory, "", PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.memtable_size",
							"Size of each engine memtable.",
							NULL, &kvsep_memtable_size_mb, 16, 1, 2047, PGC_POSTMASTER,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.num_memtables",
							"Immutable memtables that may wait for flushing before writes stall.",
							NULL, &kvsep_num_memtables, 3, 1, 64, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.value_threshold",
							"Rows of at least this many bytes are stored in the value log.",
							"Smaller rows stay in the LSM tree next to their keys.",
							&kvsep_value_threshold, 1024, 1, 1 << 20, PGC_POSTMASTER,
							GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.block_cache_size",
							"Shared cache of decompressed table blocks.",
							NULL, &kvsep_block_cache_size_mb, 64, 0, 1 << 20, PGC_POSTMASTER,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomEnumVariable("kvsep.compression",
							 "Compression of table blocks.",
							 NULL, &kvsep_compression, KV_COMPRESS_SNAPPY, compression_options,
							 PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.compactors",
							"Background compaction threads of the engine.",
							NULL, &kvsep_compactors, 2, 0, 64, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.value_log_file_size",
							"Size at which a value-log file is sealed and a new one begun.",
							NULL, &kvsep_value_log_file_size_mb, 256, 1, 2047, PGC_POSTMASTER,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.max_txn_memory",
							"Memory a transaction's pending writes may use before they spill to disk.",
							NULL, &kvsep_max_txn_memory_mb, 64, 1, 2047, PGC_POSTMASTER,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomBoolVariable("kvsep.auto_vlog_gc",
							 "Whether the worker runs value-log garbage collection on its own.",
							 NULL, &kvsep_auto_vlog_gc, true, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("kvsep.vlog_gc_ratio",
							 "Discardable fraction at which automatic value-log GC rewrites a file.",
							 NULL, &kvsep_vlog_gc_ratio, 0.5, 0.01, 0.99, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.attach_timeout",
							"How long a session waits for the storage engine to become ready.",
							NULL, &kvsep_attach_timeout_ms, 30000, 0, 3600 * 1000, PGC_USERSET,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.batch_size",
							"Rows per batch of a multi-row INSERT into a kvsep table.",
							NULL, &kvsep_batch_size, 100, 1, 10000, PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("kvsep.out_of_line_size",
							"Column values of at least this size are stored out of line.",
							"A written value of a non-key variable-length column (not an "
							"array or composite) this large is kept apart from its row and "
							"read only when it is used; 0 keeps every value in its row.",
							&kvsep_out_of_line_size, 2048, 0, MaxAllocSize, PGC_USERSET,
							GUC_UNIT_BYTE, NULL, NULL, NULL);
	MarkGUCPrefixReserved("kvsep");
}

static void
resolve_dir(char *out, size_t cap, const char *setting, const char *dflt)
{
	if (setting && setting[0] != '\0')
	{
		if (is_absolute_path(setting))
			strlcpy(out, setting, cap);
		else
			snprintf(out, cap, "%s/%s", DataDir, setting);
	}
	else
		strlcpy(out, dflt, cap);
}

void
kvsep_engine_options(kv_options *o)
{
	char		dir[KV_PATH_MAX];
	char		vdir[KV_PATH_MAX];
	char		dflt[KV_PATH_MAX];

	snprintf(dflt, sizeof dflt, "%s/kvsep", DataDir);
	resolve_dir(dir, sizeof dir, kvsep_data_directory, dflt);
	resolve_dir(vdir, sizeof vdir, kvsep_value_directory, dir);
	kv_options_default(o, dir);
	strlcpy(o->value_dir, vdir, sizeof o->value_dir);
	o->mem_table_size = (int64) kvsep_memtable_size_mb << 20;
	o->num_memtables = kvsep_num_memtables;
	o->value_threshold = kvsep_value_threshold;
	o->block_cache_size = (int64) kvsep_block_cache_size_mb << 20;
	o->compression = kvsep_compression;
	o->num_compactors = kvsep_compactors;
	o->value_log_file_size = (int64) kvsep_value_log_file_size_mb << 20;
	o->max_txn_memory = (int64) kvsep_max_txn_memory_mb << 20;
	o->auto_vlog_gc = kvsep_auto_vlog_gc;
	o->auto_vlog_gc_ratio = kvsep_vlog_gc_ratio;
	/* every backend, autovacuum and background worker may attach */
	o->max_attached_processes = MaxBackends + 16;
	o->log_fn = kvsep_log_callback;
	o->log_ctx = NULL;
	o->log_level = KV_LOG_INFO;
}
