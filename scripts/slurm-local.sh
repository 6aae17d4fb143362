#!/usr/bin/env bash
# Brings up a REAL one-node Slurm cluster (Debian's slurm-wlm 22.05) on this
# machine, so that tests can submit jobs to it, and takes it down again.
#
#   scripts/slurm-local.sh start    # install if missing, start, health-check
#   scripts/slurm-local.sh stop     # cancel jobs, stop every daemon we started
#   scripts/slurm-local.sh status   # what runs, sinfo/squeue; exit 0 only if all up
#   scripts/slurm-local.sh env      # print the `export SLURM_CONF=...` line
#   scripts/slurm-local.sh purge    # stop, then delete the whole state folder
#
# Client commands (sbatch, srun, squeue, sacct, scancel, ...) find the cluster
# through SLURM_CONF; `start` prints the line to eval:
#   eval "$(scripts/slurm-local.sh env)"
#
# Design, and why:
# * Everything lives under one folder, ${AMUN_SLURM_DIR:-/tmp/amun-slurm}: conf,
#   logs, spool, state save, pid files, the munge key and socket and the
#   MariaDB data. Nothing under /etc, /var or /run is touched (apart from what
#   apt-get installs, and a temporary /usr/sbin/policy-rc.d while it runs), so
#   it cannot clash with, or depend on, a system Slurm/munge/MariaDB, and
#   `purge` really resets it.
# * No systemd: every daemon is started directly and found again through its
#   pid file in $DIR/run. `stop` only ever signals pids from those files (after
#   checking the process name, so a recycled pid is never hit).
# * Private ports (AMUN_SLURM_PORT, default 16817, and the next three) instead
#   of Slurm's 6817-6819 and MySQL's 3306, again so a system install can coexist.
# * A private munged (own key, own socket) that slurm.conf points to with
#   AuthInfo=socket=..., so /etc/munge and /run/munge are not needed.
# * Container friendly: no cgroups at all (proctrack/linuxproc, task/none,
#   jobacct_gather/linux reads /proc), the node's address is 127.0.0.1 so no
#   DNS / /etc/hosts entry for the hostname is needed.
# * Runs as root and lets root run jobs: SlurmUser=root, SlurmdUser=root.
# * Accounting: Slurm 22.05 no longer ships accounting_storage/filetxt (only
#   none, slurmdbd, mysql), and plain `sacct` needs slurmdbd; slurmdbd in turn
#   only stores into MySQL/MariaDB. So we run slurmdbd + a private mariadbd
#   (socket + 127.0.0.1 only, small buffers). jobcomp/filetxt is enabled as
#   well: a plain-text line per finished job in $DIR/log/jobcomp.log, which
#   `sacct -c` can read even if the database were gone.
#
# Knobs (environment): AMUN_SLURM_DIR, AMUN_SLURM_PORT (base port, 4 used),
# AMUN_SLURM_TIMEOUT (seconds to wait for each health step, default 60),
# AMUN_SLURM_EXTRA_CONF (lines appended to slurm.conf on a cold start, e.g.
# "DependencyParameters=kill_invalid_depend").
# Needs root (apt-get, SlurmdUser=root).
set -euo pipefail

DIR=${AMUN_SLURM_DIR:-/tmp/amun-slurm}
PORT_BASE=${AMUN_SLURM_PORT:-16817}
TIMEOUT=${AMUN_SLURM_TIMEOUT:-60}
CLUSTER=amun
PARTITION=debug

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
MYSQL_PORT=$((PORT_BASE + 3))

ETC=$DIR/etc
RUN=$DIR/run
LOG=$DIR/log
MUNGE_DIR=$DIR/munge
CONF=$ETC/slurm.conf
MUNGE_SOCK=$RUN/munge.sock
MYSQL_SOCK=$RUN/mysqld.sock

# slurmctld/slurmd/slurmdbd and all client commands read this; slurmdbd finds
# slurmdbd.conf in the same folder as slurm.conf. slurmd passes it on to every
# slurmstepd (whose environment is otherwise clean), which is how `stop` tells
# stray slurmstepd processes of *this* cluster from any other.
export SLURM_CONF=$CONF

# The apt packages. --no-install-recommends: the recommends pull ~35 extra
# packages (slurm-wlm-plugins with hdf5/influxdb/rrd/ipmi/rocm plugins and
# their -dev packages, MariaDB compression providers) that we never use.
PKGS=(slurm-wlm munge slurmdbd mariadb-server)

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: ERROR: $*" >&2; exit 1; }

# Dumps the end of every log we own, so a failure says *why*.
dump_logs() {
  local f
  for f in "$MUNGE_DIR/munged.log" "$LOG/mariadb.log" "$LOG/slurmdbd.log" \
    "$LOG/slurmctld.log" "$LOG/slurmd.log"; do
    [ -s "$f" ] || continue
    echo "----- tail -n 20 $f -----" >&2
    tail -n 20 "$f" >&2 || true
  done
}
fail() {
  echo "slurm-local: FAILED: $*" >&2
  dump_logs
  echo "slurm-local: FAILED: $* (daemons that did start are left running for" \
    "inspection; '$0 stop' stops them; state and logs in $DIR)" >&2
  exit 1
}

env_line() { echo "export SLURM_CONF=$CONF"; }

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# pid_of NAME: the pid in $RUN/NAME.pid if that process is alive and really is
# NAME (comm starts with it: /usr/sbin/slurmd may be the slurmd-wlm
# alternative); empty otherwise.
pid_of() {
  local name=$1 f=$RUN/$1.pid pid comm
  [ -r "$f" ] || return 0
  pid=$(tr -dc '0-9' 2>/dev/null <"$f" || true) # the daemon may remove it right now
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  # A zombie (exited, not reaped yet) is not running.
  if [[ "$comm" == "$name"* ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
    echo "$pid"
  fi
}

running() { [ -n "$(pid_of "$1")" ]; }

# wait_for [--daemon NAME] SECONDS DESCRIPTION COMMAND...: retries COMMAND
# (each try capped at 10 s, since Slurm clients retry internally for a long
# while) until it succeeds or SECONDS of wall-clock time have passed. With
# --daemon, gives up at once if daemon NAME has died (e.g. a fatal config
# error), after 3 s of grace for its pid file to appear.
wait_for() {
  local daemon=
  if [ "$1" = --daemon ]; then daemon=$2; shift 2; fi
  local secs=$1 what=$2 end t0=$SECONDS
  shift 2
  end=$((SECONDS + secs))
  while :; do
    if [ -n "$daemon" ] && [ $((SECONDS - t0)) -ge 3 ] && ! running "$daemon"; then
      fail "$daemon exited while starting up (see its log below)"
    fi
    if declare -F "$1" >/dev/null; then
      "$@" >/dev/null 2>&1 && return 0 # a shell function: `timeout` cannot run it
    elif timeout 10 "$@" >/dev/null 2>&1; then
      return 0
    fi
    [ "$SECONDS" -lt "$end" ] || break
    sleep 0.2
  done
  fail "timed out after ${secs}s waiting for $what"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Refuse to start a daemon on a port somebody else already listens on: the
# daemon would die with a terse "Address already in use" in its log. Checked
# for all daemons before any is started, so nothing is left half up.
check_ports_free() {
  local d port busy=()
  for d in mariadbd:$MYSQL_PORT slurmdbd:$DBD_PORT slurmctld:$CTLD_PORT slurmd:$SLURMD_PORT; do
    port=${d#*:}
    if ! running "${d%%:*}" && port_open "$port"; then busy+=("$port (for ${d%%:*})"); fi
  done
  [ ${#busy[@]} -eq 0 ] ||
    die "port(s) ${busy[*]} already in use by another process; set AMUN_SLURM_PORT to another base port (uses it and the next 3)"
}

# stop_daemon NAME: SIGTERM, up to 30 s grace, then SIGKILL.
stop_daemon() {
  local name=$1 pid i
  pid=$(pid_of "$name")
  if [ -z "$pid" ]; then
    rm -f "$RUN/$name.pid"
    return 0
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    [ -n "$(pid_of "$name")" ] || break
    sleep 0.2
  done
  if [ -n "$(pid_of "$name")" ]; then
    say "$name did not exit after 30s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$RUN/$name.pid"
}

# kill_tree PID: SIGKILL PID and all its descendants (children first found,
# then killed parent-first so nothing gets re-parented and missed).
kill_tree() {
  local pid=$1 c
  kill -STOP "$pid" 2>/dev/null || true
  for c in $(pgrep -P "$pid" 2>/dev/null || true); do kill_tree "$c"; done
  kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
  say "installing ${missing[*]} (apt-get, Debian packages)"
  local t0=$SECONDS
  # Package postinst scripts would start the *system* munge/slurmd/slurmctld/
  # mariadb services (invoke-rc.d). We run our own private daemons, so forbid
  # that with a temporary policy-rc.d (exit 101 = "action not allowed"),
  # unless the machine already has one (Docker images do).
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from amun scripts/slurm-local.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  local rc=0
  {
    # The package lists may be absent (slim images) or stale; update only if
    # the first attempt cannot find the packages.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  } >"/tmp/amun-slurm-apt.$$.log" 2>&1 || rc=$?
  [ "$own_policy" = 1 ] && rm -f "$policy"
  if [ "$rc" != 0 ]; then
    tail -n 30 "/tmp/amun-slurm-apt.$$.log" >&2
    die "apt-get install ${missing[*]} failed (full log: /tmp/amun-slurm-apt.$$.log)"
  fi
  rm -f "/tmp/amun-slurm-apt.$$.log"
  say "installed in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

make_dirs() {
  # munged insists: the key's folder private, the socket's folder (and every
  # folder above it) searchable by all ("execute permissions for all required").
  mkdir -p "$DIR" "$ETC" "$RUN" "$LOG" "$MUNGE_DIR" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/mysql"
  chmod 755 "$DIR" "$RUN"
  chmod 700 "$MUNGE_DIR"
  # Client commands run by any user must read slurm.conf; slurmdbd.conf and
  # dbpass stay 0600 (they hold the database password).
  chmod 755 "$ETC"
}

ensure_munge_key() {
  [ -s "$MUNGE_DIR/munge.key" ] && return 0
  say "creating munge key $MUNGE_DIR/munge.key"
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key"
  else
    dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1 count=1024 status=none
  fi
  chmod 400 "$MUNGE_DIR/munge.key"
}

# The password slurmdbd uses for its MariaDB user; made once, kept 0600.
db_password() {
  local f=$ETC/dbpass
  if [ ! -s "$f" ]; then
    (umask 077; od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$f")
  fi
  cat "$f"
}

write_conf() {
  local host cpus mem_kb mem_mb headroom real_mem def_mem
  # Slurm matches the controller and node by the *short* hostname.
  host=$(hostname -s 2>/dev/null || hostname)
  host=${host%%.*}
  [ -n "$host" ] || die "cannot determine hostname"
  cpus=$(nproc)
  mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
  mem_mb=$((mem_kb / 1024))
  # Headroom for the OS, the daemons and MariaDB: 10%, at least 1 GiB.
  headroom=$((mem_mb / 10))
  [ "$headroom" -lt 1024 ] && headroom=1024
  real_mem=$((mem_mb - headroom))
  [ "$real_mem" -ge 256 ] || die "only ${mem_mb} MB of memory; need more than 1.3 GB"
  # With CR_Core_Memory a job that asks for no memory would get the *whole*
  # node's memory and jobs would run one at a time; give each CPU its share.
  def_mem=$((real_mem / cpus))

  cat >"$CONF.tmp" <<EOF
# Written by amun scripts/slurm-local.sh; regenerated on every cold start.
ClusterName=$CLUSTER
# Short hostname (slurmctld checks it is the controller) and 127.0.0.1 (no
# DNS or /etc/hosts entry needed for the hostname).
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT

# Everything as root, and root may run jobs (test machine, single user).
SlurmUser=root
SlurmdUser=root

# Private munged, not /run/munge/munge.socket.2.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCK

StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups anywhere (containers, cgroup v1/v2 mixes): track job processes
# through /proc, no CPU binding, accounting data (MaxRSS, CPU time) from /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
MpiDefault=none
SwitchType=switch/none

# Cores and memory are consumable, so several 1-CPU jobs run side by side.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem

# Quick turnaround for tests: the node comes back by itself after a restart,
# cancelled jobs are killed after 5 s, finished jobs stay in squeue 5 minutes.
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
Waittime=0
# No mail on this machine; the default /usr/bin/mail does not exist (logs an error).
MailProg=/bin/true

# Accounting into slurmdbd (-> MariaDB), so that sacct works; plus one text
# line per finished job in jobcomp.log (readable with sacct -c).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# Not a password: for auth/munge this names the munged socket used on
# connections to slurmdbd (slurmctld's and sacct's/sacctmgr's). Without it they
# ignore AuthInfo and try /run/munge/munge.socket.2.
AccountingStoragePass=$MUNGE_SOCK
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log

# nproc CPUs, each counted as a core (ThreadsPerCore=1), so a 1-CPU job takes
# one CPU even on a machine with hyper-threads; config_overrides makes slurmd
# accept this description rather than marking the node invalid when the real
# topology differs.
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  if [ -n "${AMUN_SLURM_EXTRA_CONF:-}" ]; then
    # Later lines win in slurm.conf, so these override the settings above.
    printf '\n# From AMUN_SLURM_EXTRA_CONF:\n%s\n' "$AMUN_SLURM_EXTRA_CONF" >>"$CONF.tmp"
  fi
  mv "$CONF.tmp" "$CONF"
  chmod 644 "$CONF"

  # slurmdbd refuses a slurmdbd.conf that is not 0600 and owned by SlurmUser.
  (umask 077; cat >"$ETC/slurmdbd.conf.tmp" <<EOF
# Written by amun scripts/slurm-local.sh; regenerated on every cold start.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
# TCP to our private mariadbd (slurmdbd cannot be told a socket path).
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$(db_password)
StorageLoc=slurm_acct_db
EOF
  )
  mv "$ETC/slurmdbd.conf.tmp" "$ETC/slurmdbd.conf"
  NODE=$host
}

# ---------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------

start_munged() {
  running munged && return 0
  ensure_munge_key
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  say "starting munged"
  # munged daemonizes itself and writes the pid file.
  munged --socket="$MUNGE_SOCK" --key-file="$MUNGE_DIR/munge.key" \
    --log-file="$MUNGE_DIR/munged.log" --pid-file="$RUN/munged.pid" \
    --seed-file="$MUNGE_DIR/munged.seed" ||
    fail "munged did not start"
  wait_for --daemon munged "$TIMEOUT" "munged to answer" sh -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"
}

mysql_root() { mariadb --no-defaults --socket="$MYSQL_SOCK" -u root "$@"; }

start_mariadb() {
  running mariadbd && return 0
  local datadir=$DIR/mysql
  if [ ! -d "$datadir/mysql" ]; then
    say "initialising MariaDB data in $datadir"
    # --no-defaults: ignore /etc/mysql (the system server's settings).
    # Root authenticates through the unix socket (we run as root anyway).
    mariadb-install-db --no-defaults --datadir="$datadir" --user=root \
      --auth-root-authentication-method=socket --skip-test-db \
      >"$LOG/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed (see $LOG/mariadb-install.log)"
  fi
  rm -f "$MYSQL_SOCK"
  say "starting mariadbd"
  # mariadbd does not daemonize: setsid + background, detached from our
  # terminal. Small buffers: slurmdbd's tables stay tiny here (slurmdbd logs a
  # harmless warning that innodb_buffer_pool_size is below its recommendation).
  setsid mariadbd --no-defaults --user=root --datadir="$datadir" \
    --socket="$MYSQL_SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadb.log" \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=64M \
    --innodb-lock-wait-timeout=900 --max-connections=64 \
    </dev/null >/dev/null 2>&1 &
  wait_for --daemon mariadbd "$TIMEOUT" "mariadbd to answer on $MYSQL_SOCK" \
    mariadb-admin --no-defaults --socket="$MYSQL_SOCK" -u root ping
  # (Re)create slurmdbd's user every start: cheap, and keeps the password in
  # step with $ETC/dbpass.
  mysql_root -e "CREATE OR REPLACE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(db_password)';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
    fail "cannot create the slurm user in MariaDB"
}

start_slurmdbd() {
  running slurmdbd && return 0
  say "starting slurmdbd"
  slurmdbd || fail "slurmdbd did not start"
  # On first start it creates its tables (about a second here).
  wait_for --daemon slurmdbd "$TIMEOUT" "slurmdbd to listen on port $DBD_PORT" port_open "$DBD_PORT"
  wait_for --daemon slurmdbd "$TIMEOUT" "slurmdbd to answer sacctmgr" sacctmgr -n show cluster
  # Register the cluster (which also creates the root account and root's
  # association) before slurmctld connects. slurmctld 22.05 would add it by
  # itself, but then slurmdbd logs a "Connection refused" race at first start;
  # doing it here keeps the first start as quiet and deterministic as later ones.
  if [ -z "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster 2>/dev/null)" ]; then
    say "adding cluster $CLUSTER to the accounting database"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail "sacctmgr add cluster $CLUSTER failed"
  fi
}

start_slurmctld() {
  running slurmctld && return 0
  say "starting slurmctld"
  slurmctld || fail "slurmctld did not start"
  wait_for --daemon slurmctld "$TIMEOUT" "slurmctld to answer (scontrol ping)" sh -c 'scontrol ping | grep -q "is UP"'
}

start_slurmd() {
  running slurmd && return 0
  say "starting slurmd"
  slurmd -N "$NODE" || fail "slurmd did not start"
}

node_idle() {
  local st
  st=$(timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true)
  case "$st" in idle | mixed | allocated | completing) return 0 ;; esac
  return 1
}

# End to end: node usable, a job runs through srun, and its record reaches
# the accounting database (so sacct will work for the tests).
health_check() {
  local t0=$SECONDS out jobid st d
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    running "$d" || fail "$d is not running"
  done
  timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' || fail "slurmctld does not answer scontrol ping"
  local end=$((SECONDS + TIMEOUT))
  until node_idle || [ "$SECONDS" -ge "$end" ]; do
    running slurmd || [ $((SECONDS - t0)) -lt 3 ] || fail "slurmd exited while starting up (see its log below)"
    sleep 0.2
  done
  if ! node_idle; then
    timeout 10 sinfo -N -l >&2 || true
    timeout 10 scontrol show node "$NODE" >&2 || true
    fail "node $NODE not idle after ${TIMEOUT}s"
  fi
  # A re-check of a cluster that is busy with jobs (start run twice while
  # tests use it) must not queue a test job behind them: that the node works
  # is then evident already.
  st=$(timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true)
  if [ "$st" != idle ] || [ -n "$(timeout 10 squeue -h -o '%i' 2>/dev/null || true)" ]; then
    say "healthy: node $NODE is $st with jobs queued or running; test job skipped"
    return 0
  fi
  # --mem=16M: the test job must not need the node's default share of memory.
  # shellcheck disable=SC2016 # $SLURM_JOB_ID is expanded by the job's shell
  out=$(timeout "$TIMEOUT" srun -N1 -n1 --mem=16M -J amun-health sh -c 'echo "ok $SLURM_JOB_ID"' 2>&1) ||
    fail "srun test job failed or timed out: $out"
  jobid=$(sed -n 's/^ok \([0-9][0-9]*\)$/\1/p' <<<"$out" | tail -n1)
  [ -n "$jobid" ] || fail "srun test job gave unexpected output: $out"
  end=$((SECONDS + TIMEOUT))
  while :; do
    st=$(timeout 10 sacct -n -X -P -j "$jobid" -o State 2>/dev/null | head -n1 || true)
    [ "$st" = COMPLETED ] || [ "$SECONDS" -ge "$end" ] && break
    sleep 0.2
  done
  [ "$st" = COMPLETED ] || fail "test job $jobid ran, but sacct shows '${st:-nothing}' instead of COMPLETED"
  say "healthy: node $NODE idle, test job $jobid COMPLETED in sacct ($((SECONDS - t0))s)"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

cmd_start() {
  [ "$(id -u)" = 0 ] || die "must run as root (apt-get, SlurmdUser=root)"
  # The daemons outlive this script: they must not inherit the caller's
  # open files beyond stdio (a `flock LOCK cargo test` that starts the
  # cluster would otherwise hold LOCK for as long as the cluster runs).
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    # (255: the script bash is reading)
    [ "$fd" -gt 2 ] 2>/dev/null && [ "$fd" != 255 ] && eval "exec $fd>&-"
  done
  local t0=$SECONDS any=0 d
  install_packages
  make_dirs
  # Only the Slurm daemons read the conf files (munged and mariadbd get their
  # settings on the command line).
  for d in slurmdbd slurmctld slurmd; do
    running "$d" && any=1
  done
  if [ "$any" = 0 ] || [ ! -s "$CONF" ]; then
    # Cold start: (re)write the confs for this machine's hostname/CPUs/memory
    # (and the current AMUN_SLURM_* settings).
    write_conf
  else
    NODE=$(sed -n 's/^NodeName=\([^ ]*\) .*/\1/p' "$CONF" | head -n1)
  fi
  check_ports_free
  start_munged
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  health_check
  say "up in $((SECONDS - t0))s; state in $DIR. For client commands:"
  env_line
}

cmd_stop() {
  # Cancel whatever is queued or running while the controller still answers:
  # otherwise the job processes (under slurmstepd) outlive slurmd.
  if running slurmctld && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    local jobs
    jobs=$(timeout 10 squeue -h -o '%i' 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${jobs// /}" ]; then
      say "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      timeout 10 scancel $jobs 2>/dev/null || true
      local i
      for ((i = 0; i < 75; i++)); do
        [ -z "$(timeout 10 squeue -h -t R,CG,CF -o '%i' 2>/dev/null || true)" ] && break
        sleep 0.2
      done
    fi
  fi
  # Reverse of start order: the node first, the database last, munge (which
  # all of them use to authenticate) at the very end.
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon slurmdbd
  stop_daemon mariadbd
  stop_daemon munged
  # Leftover slurmstepd (jobs that could not be cancelled, e.g. slurmctld was
  # already dead) would keep running their jobs: kill them with their job
  # processes. Only ours, recognised by SLURM_CONF=$CONF in their environment.
  local p
  for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qxF "SLURM_CONF=$CONF"; then
      say "killing leftover slurmstepd $p and its job processes"
      kill_tree "$p"
    fi
  done
  say "stopped (packages and state in $DIR kept)"
}

cmd_status() {
  local d pid all=1
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    pid=$(pid_of "$d")
    if [ -n "$pid" ]; then
      printf '  %-10s running (pid %s)\n' "$d" "$pid"
    else
      printf '  %-10s not running\n' "$d"
      all=0
    fi
  done
  echo "state: $DIR"
  env_line
  if running slurmctld; then
    timeout 10 sinfo || true
    timeout 10 squeue || true
  fi
  # Exit 0 only when the whole cluster runs; 3 like LSB "not running".
  [ "$all" = 1 ] || return 3
}

cmd_purge() {
  cmd_stop
  # Guard against an unset/odd AMUN_SLURM_DIR wiping something important.
  case "$DIR" in /tmp/?* | */amun-slurm*) ;; *) die "refusing to delete $DIR (not under /tmp, not named amun-slurm*)" ;; esac
  rm -rf "$DIR"
  say "deleted $DIR"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) env_line ;;
  purge) cmd_purge ;;
  *)
    echo "usage: $0 start|stop|status|env|purge" >&2
    exit 2
    ;;
esac
