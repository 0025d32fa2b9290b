# 004_conflict_sqlstate.pl - the SQLSTATEs of kvsep_fdw's concurrency errors
# (the isolation tester shows only the message): a lost conflict at commit
# is 40001 (serialization_failure) with a hint to retry, and the session's
# transaction is rolled back; an INSERT of an existing key is 23505
# (unique_violation).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvsepTest;

my $node = kvsep_node('sqlstate');
$node->start;
kvsep_setup($node);
$node->safe_psql('postgres',
	"CREATE FOREIGN TABLE acct (id int, bal int) SERVER kv; INSERT INTO acct VALUES (1, 100), (2, 100);"
);

my $s1 = $node->background_psql('postgres', on_error_stop => 0);
$s1->query_safe('\set VERBOSITY verbose');

# which verbose error a query of session s1 gave (first line: "ERROR:  CODE: message")
sub s1_error
{
	my ($sql) = @_;
	$s1->{stderr} = '';
	$s1->query($sql);
	my $e = $s1->{stderr};
	$s1->{stderr} = '';    # (query_safe fails while it holds anything)
	return $e;
}

for my $level ('READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE')
{
	$s1->query_safe("BEGIN ISOLATION LEVEL $level");
	$s1->query_safe('UPDATE acct SET bal = bal + 1 WHERE id = 1');
	$node->safe_psql('postgres', 'UPDATE acct SET bal = bal + 1 WHERE id = 1');
	my $e = s1_error('COMMIT');
	like(
		$e,
		qr/ERROR:  40001: could not serialize access due to concurrent update of a kvsep_fdw table/,
		"$level: lost update at commit is 40001");
	like($e, qr/HINT:  Retry the transaction\./, "$level: with a hint to retry");
	is($s1->query_safe('SELECT count(*) FROM acct'),
		'2', "$level: the failed transaction is over, the session goes on");
}
is($node->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 1'), '103',
	'only the other session\'s updates are there');

# write skew under SERIALIZABLE
$s1->query_safe('BEGIN ISOLATION LEVEL SERIALIZABLE');
$s1->query_safe('SELECT sum(bal) FROM acct');
$s1->query_safe('UPDATE acct SET bal = 0 WHERE id = 1');
$node->safe_psql('postgres',
	'BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(bal) FROM acct; UPDATE acct SET bal = 0 WHERE id = 2; COMMIT;');
like(s1_error('COMMIT'), qr/ERROR:  40001: could not serialize access/,
	'SERIALIZABLE write skew: 40001');

# the same key inserted by two sessions
$s1->query_safe('BEGIN');
$s1->query_safe('INSERT INTO acct VALUES (10, 1)');
$node->safe_psql('postgres', 'INSERT INTO acct VALUES (10, 2)');
like(s1_error('COMMIT'), qr/ERROR:  40001: could not serialize access/,
	'concurrent insert of a key: 40001');
my $e = s1_error('INSERT INTO acct VALUES (10, 3)');
like($e, qr/ERROR:  23505: duplicate key value violates the key of kvsep_fdw table "acct"/,
	'the retry: unique_violation 23505');
like($e, qr/DETAIL:  Key \(id\)=\(10\) already exists\./, 'with the key as detail');
is($node->safe_psql('postgres', 'SELECT bal FROM acct WHERE id = 10'), '2',
	'the first committer\'s row');

$s1->quit;
$node->stop;
done_testing();
