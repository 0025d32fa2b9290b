# 006_many_drops.pl - many DROPs and TRUNCATEs of kvsep tables in a row.
#
# Every DROP FOREIGN TABLE and TRUNCATE releases the table's old data with
# an engine drop (kv_drop_prefix) after the commit.  Creating, filling and
# dropping tables again and again (as test suites and ETL jobs do) must keep
# working: no drop may be refused (the data would stay in the engine,
# unreachable, for ever), and above all the transactions that follow must
# not fail.  Little data is written, so the memtable is never flushed and
# the engine cannot finish applying the drops in the meantime.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvsepTest;

my $node = kvsep_node('drops');
$node->start;
kvsep_setup($node);

my (@errors, @warnings);
for my $i (1 .. 80)
{
	# one transaction: create, fill (the INSERT checks its keys: reads)
	my ($ret, $out, $err) = $node->psql('postgres',
		"CREATE FOREIGN TABLE d$i (id int, v text) SERVER kv; INSERT INTO d$i SELECT g, 'x' FROM generate_series(1, 10) g;"
	);
	push @errors, "create/insert $i: $err" if $ret != 0;
	($ret, $out, $err) = $node->psql('postgres', "DROP FOREIGN TABLE IF EXISTS d$i");
	push @errors, "drop $i: $err" if $ret != 0;
	push @warnings, "drop $i: $err" if $err =~ /WARNING/;
}
is(scalar(@errors), 0, '80 rounds of CREATE, INSERT, DROP: no errors')
  or diag(join("\n", @errors[0 .. ($#errors < 4 ? $#errors : 4)]));
is(scalar(@warnings), 0, 'no DROP was refused by the engine')
  or diag(join("\n", @warnings[0 .. ($#warnings < 2 ? $#warnings : 2)]));

# TRUNCATE releases data the same way
$node->safe_psql('postgres', "CREATE FOREIGN TABLE tt (id int, v text) SERVER kv");
my @terr;
for my $i (1 .. 20)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO tt VALUES ($i, 'x'); TRUNCATE tt;");
	push @terr, "truncate $i: $err" if $ret != 0 || $err =~ /WARNING|ERROR/;
}
is(scalar(@terr), 0, '20 rounds of INSERT and TRUNCATE: no errors or warnings')
  or diag(join("\n", @terr[0 .. ($#terr < 2 ? $#terr : 2)]));

# and a plain transaction afterwards
my ($ret, $out, $err) = $node->psql('postgres',
	"BEGIN; INSERT INTO tt VALUES (1, 'after'); COMMIT; SELECT v FROM tt;");
is($out, 'after', 'a transaction after the drops commits') or diag($err);

ok(!$node->log_contains(qr/could not release the data/),
	'the server log has no unreleased table data');
$node->stop;
done_testing();
