# KvsepTest.pm - helpers shared by the kvsep_fdw TAP tests (t/*.pl).
#
#   kvsep_node(NAME, preload => 0|1, conf => TEXT)
#       a new PostgreSQL::Test::Cluster node, initdb'd (not started).  Its
#       postgresql.conf gets TEMP_CONFIG (pg_test.conf) from init, then
#       explicitly shared_preload_libraries = 'kvsep_fdw' (or '' with
#       preload => 0; a later setting wins), then TEXT.
#   kvsep_setup(NODE)
#       CREATE EXTENSION kvsep_fdw and CREATE SERVER kv in database postgres.
#   wait_engine_ready(NODE)
#       waits until kvsep_status().state is 'ready' (connections are retried,
#       e.g. during crash recovery); returns true if it became ready.
#   kill9_cluster(NODE)
#       a crash of the whole server: freezes the postmaster (SIGSTOP, so it
#       cannot fork any more), SIGKILLs it and every child, and waits until
#       all of them are gone (as scripts/pg_cluster.sh pgc_kill9 does) so
#       that the next start does not find them.  $node->kill9 alone only
#       kills the postmaster.
#   postmaster_pid(NODE), child_pids(PID), wait_gone(TIMEOUT, PID...)
package KvsepTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(kvsep_node kvsep_setup wait_engine_ready kill9_cluster
  postmaster_pid child_pids wait_gone);

sub kvsep_node
{
	my ($name, %p) = @_;
	my $preload = exists $p{preload} ? $p{preload} : 1;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	# explicit, after TEMP_CONFIG: these tests depend on it
	$node->append_conf('postgresql.conf',
		$preload
		? "shared_preload_libraries = 'kvsep_fdw'"
		: "shared_preload_libraries = ''");
	$node->append_conf('postgresql.conf', $p{conf}) if defined $p{conf};
	return $node;
}

sub kvsep_setup
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		"CREATE EXTENSION kvsep_fdw; CREATE SERVER kv FOREIGN DATA WRAPPER kvsep_fdw;");
	return;
}

sub wait_engine_ready
{
	my ($node) = @_;
	return $node->poll_query_until('postgres',
		"SELECT state = 'ready' FROM kvsep_status()");
}

sub postmaster_pid
{
	my ($node) = @_;
	open my $fh, '<', $node->data_dir . '/postmaster.pid' or return undef;
	my $pid = <$fh>;
	close $fh;
	chomp $pid if defined $pid;
	return (defined $pid && $pid =~ /^\d+$/) ? $pid : undef;
}

sub child_pids
{
	my ($pid) = @_;
	my @kids = grep { /^\d+$/ } map { s/\s+//gr } `ps -o pid= --ppid $pid`;
	return @kids;
}

# alive: exists and is not a zombie (/proc/PID/stat field 3)
sub _alive
{
	my ($pid) = @_;
	return 0 unless kill(0, $pid);
	if (open my $fh, '<', "/proc/$pid/stat")
	{
		my $stat = <$fh>;
		close $fh;
		return 0 if defined $stat && $stat =~ /^\d+ \(.*\) Z/;
	}
	return 1;
}

# Waits until every PID is gone (reaped; a zombie is accepted after a few
# seconds, it holds no memory or locks).  True if they all went.
sub wait_gone
{
	my ($timeout, @pids) = @_;
	my $end = time() + $timeout;
	my $zombie_since;
	while (1)
	{
		my @left = grep { kill(0, $_) } @pids;
		return 1 unless @left;
		if (!grep { _alive($_) } @left)
		{
			$zombie_since //= time();
			return 1 if time() - $zombie_since > 3;
		}
		return 0 if time() > $end;
		usleep(50_000);
	}
}

sub kill9_cluster
{
	my ($node) = @_;
	my $pm = postmaster_pid($node);
	die "kill9_cluster: no postmaster.pid for node " . $node->name unless $pm;
	kill 'STOP', $pm;
	my @kids = child_pids($pm);
	note "kill -9 postmaster $pm and children @kids";
	$node->kill9;    # SIGKILL to the postmaster; the node forgets its pid
	kill 'KILL', $pm;    # (in case the node did not know its pid)
	kill 'KILL', @kids if @kids;
	wait_gone($PostgreSQL::Test::Utils::timeout_default, $pm, @kids)
	  or die "kill9_cluster: processes of node " . $node->name . " do not exit";
	return;
}

1;
