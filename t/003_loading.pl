# 003_loading.pl - loading kvsep_fdw, bad settings, an unusable engine.
#
# 1. Without kvsep_fdw in shared_preload_libraries, CREATE EXTENSION (and
#    LOAD) fail with "kvsep_fdw must be loaded via shared_preload_libraries"
#    and a hint, and leave nothing behind; with it preloaded after a restart
#    the extension works.
# 2. Bad kvsep.* values in postgresql.conf: PostgreSQL applies an extension's
#    settings from the file when the library defines them and reports an
#    invalid value as a WARNING in the server log, keeping the default - the
#    server starts and the engine runs with the default.  Asserted: an out of
#    range kvsep.memtable_size (0), an unknown kvsep.compression value and a
#    misspelt kvsep.* name (the prefix is reserved).
# 3. An unusable engine directory - kvsep.data_directory naming a file, and
#    a damaged MANIFEST: the server runs, kvsep_status() says 'failed' with
#    the engine's reason, and every backend that needs the engine gets the
#    error "the kvsep storage engine failed to start" with the engine's
#    message as detail - at once, without hanging or crashing.  The worker
#    retries every few seconds: once the directory is repaired the engine
#    comes up without a server restart.
use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use KvsepTest;

# --- 1. not preloaded ------------------------------------------------------
my $np = kvsep_node('nopreload', preload => 0);
$np->start;
is($np->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'kvsep_fdw is not preloaded');
my ($ret, $out, $err) = $np->psql('postgres', 'CREATE EXTENSION kvsep_fdw');
isnt($ret, 0, 'CREATE EXTENSION fails without shared_preload_libraries');
like($err, qr/ERROR:  kvsep_fdw must be loaded via shared_preload_libraries/,
	'the error says why');
like(
	$err,
	qr/HINT:  Add kvsep_fdw to shared_preload_libraries in postgresql.conf and restart the server\./,
	'the hint says what to do');
is($np->safe_psql('postgres', "SELECT count(*) FROM pg_extension WHERE extname = 'kvsep_fdw'"),
	'0', 'no extension was created');
is( $np->safe_psql(
		'postgres', "SELECT count(*) FROM pg_foreign_data_wrapper WHERE fdwname = 'kvsep_fdw'"),
	'0', 'no foreign-data wrapper was created');
($ret, $out, $err) = $np->psql('postgres', "LOAD 'kvsep_fdw'");
isnt($ret, 0, 'LOAD fails too');
like($err, qr/kvsep_fdw must be loaded via shared_preload_libraries/, 'with the same error');
is($np->safe_psql('postgres', 'SELECT 1'), '1', 'the server is fine');

# preloaded after a restart: it works
$np->append_conf('postgresql.conf', "shared_preload_libraries = 'kvsep_fdw'");
$np->restart;
kvsep_setup($np);
ok(wait_engine_ready($np), 'preloaded after a restart: the engine is ready');
$np->safe_psql('postgres',
	"CREATE FOREIGN TABLE t (id int, v text) SERVER kv; INSERT INTO t VALUES (1, 'x');");
is($np->safe_psql('postgres', 'SELECT v FROM t WHERE id = 1'), 'x', 'and tables work');
$np->stop;
ok(!$np->log_contains(qr/terminated by signal|PANIC/), 'no crash on the node');

# --- 2. bad settings ------------------------------------------------------
my $bad = kvsep_node(
	'badsettings', conf => q{
kvsep.memtable_size = 0
kvsep.compression = 'lz4'
kvsep.memtable_sise = '8MB'
});
ok($bad->start(fail_ok => 1), 'the server starts despite the bad kvsep settings');
my $blog = slurp_file($bad->logfile);
like(
	$blog,
	qr/WARNING:  0 MB is outside the valid range for parameter "kvsep\.memtable_size" \(1 \.\. 2047\)/,
	'an out of range kvsep.memtable_size is a WARNING in the log');
like($blog, qr/WARNING:  invalid value for parameter "kvsep\.compression": "lz4"/,
	'an unknown kvsep.compression is a WARNING in the log');
like($blog,
	qr/WARNING:  invalid configuration parameter name "kvsep\.memtable_sise", removing it/,
	'a misspelt kvsep.* setting is a WARNING in the log');
is($bad->safe_psql('postgres', 'SHOW kvsep.memtable_size'), '16MB',
	'kvsep.memtable_size keeps its default');
is($bad->safe_psql('postgres', 'SHOW kvsep.compression'), 'snappy',
	'kvsep.compression keeps its default');
kvsep_setup($bad);
ok(wait_engine_ready($bad), 'the engine runs with the defaults');
$bad->safe_psql('postgres',
	"CREATE FOREIGN TABLE t (id int) SERVER kv; INSERT INTO t SELECT generate_series(1, 100);");
is($bad->safe_psql('postgres', 'SELECT count(*) FROM t'), '100', 'and stores rows');
$bad->stop;

# --- 3a. kvsep.data_directory is a file ---------------------------------------
my $fdir = PostgreSQL::Test::Utils::tempdir();
my $file = "$fdir/not_a_directory";
append_to_file($file, "this is a file\n");
my $nf = kvsep_node('datadirfile', conf => "kvsep.data_directory = '$file'");
$nf->start;
# CREATE EXTENSION and DDL need no engine
kvsep_setup($nf);
$nf->safe_psql('postgres', 'CREATE FOREIGN TABLE t (id int, v text) SERVER kv');
$nf->poll_query_until('postgres', "SELECT state = 'failed' FROM kvsep_status()")
  or die 'the worker never reported its failure';
is( $nf->safe_psql('postgres',
		"SELECT state, worker_pid IS NULL, engine_version IS NULL FROM kvsep_status()"),
	'failed|t|t',
	'kvsep_status(): failed, no worker, no engine');
like($nf->safe_psql('postgres', 'SELECT error FROM kvsep_status()'),
	qr/\Q$file\E.*Not a directory/, 'kvsep_status() gives the reason');

for my $sql ("SELECT * FROM t", "INSERT INTO t VALUES (1, 'x')", "SELECT kvsep_flush()")
{
	my $t0 = time();
	($ret, $out, $err) = $nf->psql('postgres', $sql);
	my $took = time() - $t0;
	isnt($ret, 0, "$sql: fails");
	like($err, qr/ERROR:  the kvsep storage engine failed to start/, "$sql: clear error");
	like($err, qr/DETAIL:  .*\Q$file\E.*Not a directory/, "$sql: the engine's reason as detail");
	like($err, qr/HINT:  See the server log/, "$sql: a hint");
	cmp_ok($took, '<', 15, "$sql: no hang (took ${took}s)");
}
like(slurp_file($nf->logfile),
	qr/ERROR:  kvsep_fdw: could not open the storage engine in "\Q$file\E"\n.*DETAIL:  .*Not a directory/,
	'the server log has the worker\'s error');
is($nf->safe_psql('postgres', 'SELECT 1'), '1', 'the server keeps running');

# repair it: the worker, retrying, opens the engine without a restart
unlink $file or die "cannot remove $file: $!";
mkdir $file, 0700 or die "cannot create $file: $!";
ok(wait_engine_ready($nf), 'after the repair the engine comes up without a restart');
$nf->safe_psql('postgres', "INSERT INTO t VALUES (1, 'x')");
is($nf->safe_psql('postgres', 'SELECT v FROM t'), 'x', 'and works');
$nf->stop;
ok(!$nf->log_contains(qr/terminated by signal|PANIC:/), 'no crash');

# --- 3b. a damaged MANIFEST ------------------------------------------------
my $mf = kvsep_node('manifest');
$mf->start;
kvsep_setup($mf);
$mf->safe_psql(
	'postgres', q{
CREATE FOREIGN TABLE t (id int, v text) SERVER kv;
INSERT INTO t SELECT g, repeat('m', 100) FROM generate_series(1, 5000) g;
SELECT kvsep_flush();
});
$mf->stop;
my $manifest = $mf->data_dir . '/kvsep/MANIFEST';
ok(-s $manifest, 'the engine has a MANIFEST');
copy($manifest, "$manifest.good") or die "copy: $!";
# a wrong magic number
open my $fh, '+<', $manifest or die "open $manifest: $!";
binmode $fh;
print $fh 'XXXX';
close $fh;

$mf->start;
$mf->poll_query_until('postgres', "SELECT state = 'failed' FROM kvsep_status()")
  or die 'the worker never reported its failure';
like($mf->safe_psql('postgres', 'SELECT error FROM kvsep_status()'),
	qr/MANIFEST/, 'kvsep_status() names the MANIFEST');
my $t0 = time();
($ret, $out, $err) = $mf->psql('postgres', 'SELECT count(*) FROM t');
my $took = time() - $t0;
isnt($ret, 0, 'reading a table fails');
like($err, qr/ERROR:  the kvsep storage engine failed to start/, 'with a clear error');
like($err, qr/DETAIL:  .*MANIFEST/, 'whose detail names the MANIFEST');
cmp_ok($took, '<', 15, "no hang (took ${took}s)");
like(slurp_file($mf->logfile), qr/kvsep_fdw: could not open the storage engine/,
	'the worker logged it');
is($mf->safe_psql('postgres', 'SELECT 1'), '1', 'the server keeps running');

# put the good one back: the retrying worker opens the engine, data intact
copy("$manifest.good", $manifest) or die "copy: $!";
ok(wait_engine_ready($mf), 'with the MANIFEST restored the engine comes up');
is($mf->safe_psql('postgres', "SELECT count(*), count(*) FILTER (WHERE v = repeat('m', 100)) FROM t"),
	'5000|5000', 'every row is there');
$mf->stop;
ok(!$mf->log_contains(qr/terminated by signal|PANIC:/), 'no crash');

done_testing();
