# 002_worker.pl - the background worker that hosts the storage engine.
#
# 1. kill -9 of the kvsep_fdw engine worker: the postmaster treats it as a
#    crash (restart_after_crash = on) and restarts every process; afterwards
#    kvsep_status() reports 'ready' again with a new worker, committed rows
#    are there, a transaction that was open at the crash left nothing, and
#    the tables can be written again.  A second kill in the middle of a
#    large INSERT: its rows are all or nothing (nothing, when it was cut off).
# 2. A normal stop (smart: SIGTERM to the postmaster; and fast) closes the
#    engine: the server log says "kvsep_fdw: storage engine closed", and the
#    data is there after the next start.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvsepTest;

# (PostgreSQL::Test::Cluster sets restart_after_crash = off)
my $node = kvsep_node('worker', conf => "restart_after_crash = on");
$node->start;
kvsep_setup($node);
$node->safe_psql(
	'postgres', q{
CREATE FOREIGN TABLE w (id int, v text) SERVER kv;
INSERT INTO w SELECT g, repeat('w', g % 7 * 400) FROM generate_series(1, 1000) g;
INSERT INTO w VALUES (1001, 'one more');
});

is($node->safe_psql('postgres', 'SELECT state, error IS NULL FROM kvsep_status()'),
	'ready|t', 'engine ready');
my $wpid = $node->safe_psql('postgres', 'SELECT worker_pid FROM kvsep_status()');
like($wpid, qr/^\d+$/, 'kvsep_status() reports the worker pid');
# the worker is the postmaster's child "postgres: kvsep_fdw storage engine"
# (it does not connect to a database, so pg_stat_activity does not list it)
my $pm = postmaster_pid($node);
ok((grep { $_ == $wpid } child_pids($pm)), 'the worker is a child of the postmaster');
like(`ps -o args= -p $wpid`, qr/kvsep_fdw storage engine/, 'the worker process title');

# a session with an open transaction and a pending write
my $open = $node->background_psql('postgres', on_error_stop => 0);
$open->query_safe("BEGIN; INSERT INTO w VALUES (5000, 'never committed');");
is($open->query_safe('SELECT count(*) FROM w WHERE id = 5000'), '1',
	'the open transaction sees its own insert');

# --- kill -9 the worker ---------------------------------------------------
my $log_offset = -s $node->logfile;
kill 'KILL', $wpid;
$node->wait_for_log(
	qr/background worker "kvsep_fdw engine" \(PID $wpid\) was terminated by signal 9/,
	$log_offset);
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok(wait_engine_ready($node), 'engine ready again after the crash restart');

my $wpid2 = $node->safe_psql('postgres', 'SELECT worker_pid FROM kvsep_status()');
like($wpid2, qr/^\d+$/, 'a new worker');
isnt($wpid2, $wpid, 'the new worker is another process');
ok(!kill(0, $wpid), 'the killed worker is gone');
is($node->safe_psql('postgres', 'SELECT state, error IS NULL FROM kvsep_status()'),
	'ready|t', 'state ready, no error');
my $len = length('one more');
$len += ($_ % 7) * 400 for 1 .. 1000;
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), sum(length(v)), count(*) FILTER (WHERE id = 5000) FROM w"),
	"1001|$len|0",
	'committed rows are there, the uncommitted one is not');

# the session with the open transaction was terminated by the crash restart
eval { $open->query('SELECT 1'); };
like($open->{stderr}, qr/terminat|connection|server closed/i,
	'the open session was terminated by the crash restart');
eval { $open->quit; };

# writes work again, also to a new table
$node->safe_psql(
	'postgres', q{
INSERT INTO w VALUES (1002, 'after the crash');
UPDATE w SET v = 'updated' WHERE id = 1;
CREATE FOREIGN TABLE w2 (id int) SERVER kv;
INSERT INTO w2 SELECT generate_series(1, 10);
});
is($node->safe_psql('postgres', "SELECT count(*), max(id) FROM w"),
	'1002|1002', 'inserts after the crash');
is($node->safe_psql('postgres', "SELECT v FROM w WHERE id = 1"), 'updated',
	'updates after the crash');
is($node->safe_psql('postgres', "SELECT sum(id) FROM w2"), '55', 'a new table after the crash');

# --- a second kill in the middle of a large INSERT ---------------------------
# The statement's transaction dies with the crash: none of its rows may
# appear (it would commit all of them at once), the rows committed before
# are there.
$log_offset = -s $node->logfile;
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_safe("INSERT INTO w2 SELECT generate_series(11, 20)");
$bg->query_until(qr/started/,
	"\\echo started\nINSERT INTO w2 SELECT generate_series(1000, 400000);\n");
usleep(300_000);
kill 'KILL', $wpid2;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
eval { $bg->quit; };
ok(wait_engine_ready($node), 'engine ready after a second worker crash');
is($node->safe_psql('postgres', "SELECT count(*), sum(id) FROM w2 WHERE id < 1000"), '20|210',
	'rows committed before the second crash are there');
my $big = $node->safe_psql('postgres', "SELECT count(*) FROM w2 WHERE id >= 1000");
ok($big eq '0' || $big eq '399001', "the INSERT killed midway is all or nothing ($big rows)");
note "the INSERT killed midway left $big rows";

# --- a normal stop closes the engine -----------------------------------------
$log_offset = -s $node->logfile;
$node->stop('smart');    # pg_ctl -m smart: SIGTERM to the postmaster
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/kvsep_fdw: storage engine closed/, 'smart shutdown: the engine was closed');
unlike($log, qr/closing the storage engine failed/, 'smart shutdown: no close failure');
like($log, qr/database system is shut down/, 'smart shutdown completed');

$node->start;
ok(wait_engine_ready($node), 'engine ready after the smart shutdown');
is($node->safe_psql('postgres', "SELECT count(*) FROM w"), '1002', 'rows after the smart shutdown');

$log_offset = -s $node->logfile;
$node->stop('fast');
$log = slurp_file($node->logfile, $log_offset);
like($log, qr/kvsep_fdw: storage engine closed/, 'fast shutdown: the engine was closed');
unlike($log, qr/terminated by signal|PANIC/, 'fast shutdown: no crash');

$node->start;
ok(wait_engine_ready($node), 'engine ready after the fast shutdown');
is($node->safe_psql('postgres', "SELECT count(*), sum(id) FROM w2 WHERE id < 1000"), '20|210',
	'rows after the fast shutdown');
$node->stop;

done_testing();
