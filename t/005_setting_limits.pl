# 005_setting_limits.pl - every kvsep.* setting at the lowest value its
# definition accepts (SHOW/pg_settings min_val) must give a working engine:
# a value PostgreSQL accepts and reports no error for must not leave the
# engine unable to start.  Then the same with kvsep.value_log_file_size one
# step up, to tell that setting apart.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvsepTest;

# the lowest values (kvsep.compactors = 0 and kvsep.block_cache_size = 0
# included); kvsep.attach_timeout keeps its default so that a slow start is
# not an error
my %min = (
	'kvsep.memtable_size'       => '1MB',
	'kvsep.num_memtables'       => '1',
	'kvsep.value_threshold'     => '1',
	'kvsep.block_cache_size'    => '0',
	'kvsep.compactors'          => '0',
	'kvsep.value_log_file_size' => '1MB',
	'kvsep.max_txn_memory'      => '1MB',
	'kvsep.vlog_gc_ratio'       => '0.01',
	'kvsep.batch_size'          => '1');

sub try_settings
{
	my ($name, %set) = @_;
	my $node = kvsep_node($name,
		conf => join("\n", map { "$_ = '$set{$_}'" } sort keys %set));
	$node->start;
	kvsep_setup($node);
	# the values are the documented minimums, accepted without a warning
	my $mins = $node->safe_psql('postgres',
		"SELECT string_agg(name || '=' || min_val, ' ' ORDER BY name) FROM pg_settings WHERE name LIKE 'kvsep.%' AND min_val IS NOT NULL");
	note "kvsep.* minimums: $mins";
	ok(!$node->log_contains(qr/WARNING:  .*kvsep\./), "$name: PostgreSQL accepts the settings");
	my $ready = $node->poll_query_until('postgres',
		"SELECT state <> 'starting' FROM kvsep_status()");
	my $status = $node->safe_psql('postgres', "SELECT state || ' ' || coalesce(error, '') FROM kvsep_status()");
	is($status, 'ready ', "$name: the engine starts");
	my ($ret, $out, $err) = $node->psql('postgres',
		"CREATE FOREIGN TABLE t (id int, v text) SERVER kv; INSERT INTO t SELECT g, repeat('v', 50) FROM generate_series(1, 2000) g; SELECT count(*) FROM t;");
	is($out, '2000', "$name: rows can be stored and read") or diag($err);
	$node->stop;
	return;
}

try_settings('minimums', %min);
try_settings('minimums_vlog2', %min, 'kvsep.value_log_file_size' => '2MB');

done_testing();
