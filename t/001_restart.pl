# 001_restart.pl - durability of kvsep_fdw tables across restarts.
#
# 1. Rows inserted (small ones in the LSM tree, large ones in the value
#    log) are all there after a clean restart.
# 2. Three rounds of: two writers insert rows one committed transaction at
#    a time (synchronous_commit = on) and report each acknowledged id; the
#    postmaster and all its children are killed with SIGKILL in the middle;
#    after the restart (crash recovery, the engine replays its WAL) every
#    acknowledged id is present with its exact value, no id appears twice,
#    no id that was never sent appears, and the rows of earlier rounds are
#    all still there.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use KvsepTest;

my $node = kvsep_node('restart', conf => "synchronous_commit = on");
$node->start;
kvsep_setup($node);

# The value of row id: every 5th is 3200 bytes (over kvsep.value_threshold:
# stored in the value log), the others 32 bytes.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION val(bigint) RETURNS text IMMUTABLE LANGUAGE sql AS
  $$ SELECT CASE WHEN $1 % 5 = 0 THEN repeat(md5($1::text), 100) ELSE md5($1::text) END $$;
CREATE FOREIGN TABLE t (id bigint, v text) SERVER kv;
INSERT INTO t SELECT g, val(g) FROM generate_series(1, 3000) g;
});
# and some in transactions of their own
$node->safe_psql('postgres',
	join('', map { "INSERT INTO t VALUES ($_, val($_));\n" } 3001 .. 3100));

my $summary_sql = q{SELECT count(*), count(DISTINCT id), min(id), max(id),
  count(*) FILTER (WHERE v IS DISTINCT FROM val(id)) FROM t};
is($node->safe_psql('postgres', $summary_sql),
	'3100|3100|1|3100|0', 'rows before the restart');

# --- a clean restart ------------------------------------------------------
$node->restart;
ok(wait_engine_ready($node), 'engine ready after a clean restart');
is($node->safe_psql('postgres', $summary_sql),
	'3100|3100|1|3100|0', 'every row is there after a clean restart');
ok($node->log_contains(qr/kvsep_fdw: storage engine closed/),
	'the engine was closed at shutdown');

# --- crashes in the middle of committing ------------------------------------

# A writer: psql running a script of single-row INSERTs, each its own
# (autocommitted) transaction; after each one has returned, \warn reports
# its id on stderr (unbuffered).  ON_ERROR_STOP: psql stops at the first
# error (the lost connection).
sub start_writer
{
	my ($first, $n) = @_;
	my $script = $PostgreSQL::Test::Utils::tmp_check . "/writer_$first.sql";
	open my $fh, '>', $script or die "cannot write $script: $!";
	print $fh "SET synchronous_commit = on;\n";
	for my $id ($first .. $first + $n - 1)
	{
		print $fh "INSERT INTO t VALUES ($id, val($id));\n\\warn ack $id\n";
	}
	close $fh;
	my %w = (first => $first, out => '', err => '');
	$w{h} = IPC::Run::start(
		[
			$node->installed_command('psql'), '-X', '-q', '-v',
			'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
			'-f', $script
		],
		'<', \undef, '>', \$w{out}, '2>', \$w{err});
	return \%w;
}

sub acks
{
	my ($w) = @_;
	return [ $w->{err} =~ /^ack (\d+)$/mg ];
}

my %committed;    # every id that must be there (earlier rounds included)
$committed{$_} = 1 for 1 .. 3100;

for my $round (1 .. 3)
{
	my @writers = map { start_writer($round * 1_000_000 + $_ * 100_000, 50_000) } 0 .. 1;
	# let them commit a random number of rows (at least 50 each) first
	my $want = 50 + int(rand(200));
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		$_->{h}->pump_nb for grep { $_->{h}->pumpable } @writers;
		last unless grep { @{ acks($_) } < $want } @writers;
		if (my ($dead) = grep { !$_->{h}->pumpable } @writers)
		{
			BAIL_OUT("round $round: a writer stopped early: $dead->{err}");
		}
		BAIL_OUT("round $round: the writers are too slow") if time() > $deadline;
		usleep(5_000);
	}

	kill9_cluster($node);

	# the writers see the connection go and stop
	for my $w (@writers)
	{
		eval { $w->{h}->finish; };
	}
	my $nacked = 0;
	for my $w (@writers)
	{
		my $acked = acks($w);
		$nacked += @$acked;
		like($w->{err}, qr/connection|server closed/i,
			"round $round: writer $w->{first} lost its connection");
		$committed{$_} = 1 for @$acked;
		$w->{last_ack} = @$acked ? $acked->[-1] : $w->{first} - 1;
	}
	note "round $round: $nacked acknowledged inserts before the crash";

	$node->start;
	ok(wait_engine_ready($node), "round $round: engine ready after the crash");

	my @rows = split /\n/,
	  $node->safe_psql('postgres', 'SELECT id, v = val(id) FROM t ORDER BY id');
	my (%seen, @dup, @bad, @unexpected);
	for my $r (@rows)
	{
		my ($id, $ok) = split /\|/, $r;
		push @dup, $id if $seen{$id}++;
		push @bad, $id if $ok ne 't';
	}
	my @missing = grep { !$seen{$_} } sort { $a <=> $b } keys %committed;
	for my $id (keys %seen)
	{
		next if $committed{$id};
		# at most the one insert each writer had in flight may have committed
		# without being acknowledged
		push @unexpected, $id
		  unless grep { $id == $_->{last_ack} + 1 } @writers;
	}
	is(scalar(@missing), 0,
		"round $round: every acknowledged row is there after the crash")
	  or diag("missing ids: @missing[0 .. ($#missing < 20 ? $#missing : 19)]");
	is(scalar(@dup), 0, "round $round: no row appears twice")
	  or diag("duplicate ids: @dup");
	is(scalar(@bad), 0, "round $round: every row has its value")
	  or diag("wrong values: @bad");
	is(scalar(@unexpected), 0, "round $round: no row that was never acknowledged or in flight")
	  or diag("unexpected ids: @unexpected");
	# the one in flight may be there: it is committed from now on
	$committed{$_} = 1 for grep { !$committed{$_} } keys %seen;

	# consistent reads after recovery: a count and a key range agree
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM t WHERE id >= $round * 1000000 AND id < ($round + 1) * 1000000"),
		scalar(grep { $_ >= $round * 1_000_000 && $_ < ($round + 1) * 1_000_000 } keys %seen),
		"round $round: a key range finds the same rows");
}

# after the crashes, a clean restart keeps everything
my $total = scalar(keys %committed);
$node->restart;
ok(wait_engine_ready($node), 'engine ready after the last restart');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM t'),
	"$total|$total", 'every row is there after a final clean restart');
$node->stop;

done_testing();
