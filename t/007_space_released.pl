# 007_space_released.pl - TRUNCATE and DROP FOREIGN TABLE give the disk
# space of large values back.
#
# Large values live in value-log files.  When a table is truncated or
# dropped, the engine removes the table's LSM tables whole (no compaction
# reads them); their values must still count as garbage, so that the
# automatic value-log GC rewrites and deletes the files.  Nothing else is
# run by hand here: no kvsep_compact(), no kvsep_vlog_gc().
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvsepTest;

my $node = kvsep_node('space',
	conf => "kvsep.value_log_file_size = '1MB'\nkvsep.vlog_gc_ratio = 0.5");
$node->start;
kvsep_setup($node);

sub vlog_bytes
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum(size_bytes), 0) FROM kvsep_vlog_files");
}

# 16 KiB values: 400 rows (6.5 MB) that go, 100 rows (1.6 MB) that stay
my $val = "convert_to(repeat(md5(g::text), 512), 'UTF8')";
$node->safe_psql('postgres', qq{
	CREATE FOREIGN TABLE big (id int, v bytea) SERVER kv;
	CREATE FOREIGN TABLE gone (id int, v bytea) SERVER kv;
	CREATE FOREIGN TABLE keep (id int, v bytea) SERVER kv;
	INSERT INTO big SELECT g, $val FROM generate_series(1, 300) g;
	INSERT INTO gone SELECT g, $val FROM generate_series(1, 100) g;
	INSERT INTO keep SELECT g, $val FROM generate_series(1, 100) g;
	SELECT kvsep_flush();
});
my $before = vlog_bytes();
cmp_ok($before, '>', 7_000_000, "the values are in the value log ($before bytes)");

$node->safe_psql('postgres', "TRUNCATE big; DROP FOREIGN TABLE gone;");

# the drop is applied, the discard counted, GC rewrites, the files go
ok( $node->poll_query_until(
		'postgres',
		"SELECT coalesce(sum(size_bytes), 0) < $before - 5000000 FROM kvsep_vlog_files"),
	'the automatic GC gave the space of the truncated and dropped tables back'
) or diag(vlog_bytes() . " bytes in value logs, $before before");

is( $node->safe_psql('postgres',
		"SELECT count(*), sum(length(v)), bool_and(v = $val) FROM keep k(g, v)"),
	'100|1638400|t', 'the other table is intact');
is($node->safe_psql('postgres', "SELECT count(*) FROM big"),
	'0', 'the truncated table stays empty');

$node->restart;
wait_engine_ready($node);
is( $node->safe_psql('postgres',
		"SELECT count(*), sum(length(v)), bool_and(v = $val) FROM keep k(g, v)"),
	'100|1638400|t', 'the other table is intact after a restart');
is($node->safe_psql('postgres', "SELECT count(*) FROM big"),
	'0', 'the truncated table is empty after a restart');
cmp_ok(vlog_bytes(), '<', $before - 5_000_000, 'the space stays given back');

ok(!$node->log_contains(qr/PANIC|could not remove|damaged value-log/),
	'the server log has no value-log errors');
$node->stop;
done_testing();
