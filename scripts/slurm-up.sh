#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for trying the Slurm executor and for CI.
# Run as root (or with sudo):
#
#   scripts/slurm-up.sh [--install] [--memory | --no-memory] [SCRATCH]   # then: source SCRATCH/env.sh
#   scripts/slurm-down.sh [SCRATCH]
#
# Starts munged, MariaDB, slurmdbd (accounting: without it a cancelled job never ends for
# submitit), slurmctld and slurmd, from Debian's packages (slurm-wlm 22.05, slurmdbd,
# mariadb-server, munge; --install installs any that are missing with apt-get). Every
# config, state, spool, log (the apt log included), socket and PID file lives under
# SCRATCH (default $HARNESS_SLURM_DIR, else /tmp/harness-slurm); nothing under /etc is
# written. The node declares what `slurmd -C` reports (CPUs, memory). Clients find the
# cluster through SLURM_CONF, which SCRATCH/env.sh exports. slurm-down.sh stops exactly the
# daemons this script started, by the PIDs in SCRATCH/run/. Needs root (no systemd needed).
#
# Memory is enforced where this machine lets Slurm confine a job (a writable memory cgroup,
# v1 or v2): CR_Core_Memory, task/cgroup with ConstrainRAMSpace, so a job over its --mem is
# killed and its step reads OUT_OF_MEMORY, as on a real cluster. A job without --mem gets
# an equal share of the node's memory per CPU, so memory never limits how many jobs run
# at once more than the CPUs do. --memory requires enforcement (fails where it cannot
# work), --no-memory turns it off; by default it is on where it works, and the last line
# says which. SCRATCH/env.sh exports HARNESS_SLURM_MEMORY=enforced or none.
#
# Ports (override with the environment): SLURMCTLD_PORT 6817, SLURMD_PORT 6818,
# SLURMDBD_PORT 6819, HARNESS_SLURM_DB_PORT 33061 (MariaDB, 127.0.0.1 only).
set -euo pipefail

die() { echo "slurm-up: error: $*" >&2; exit 1; }
INSTALL=0
MEMORY=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --install) INSTALL=1 ;;
    --memory) MEMORY=on ;;
    --no-memory) MEMORY=off ;;
    -*) die "unknown option $1 (usage: slurm-up.sh [--install] [--memory | --no-memory] [SCRATCH])" ;;
    *) break ;;
  esac
  shift
done
S="${1:-${HARNESS_SLURM_DIR:-/tmp/harness-slurm}}"
CTLD_PORT="${SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${SLURMD_PORT:-6818}"
DBD_PORT="${SLURMDBD_PORT:-6819}"
DB_PORT="${HARNESS_SLURM_DB_PORT:-33061}"
PACKAGES=(slurm-wlm slurmdbd mariadb-server munge)

t0=$(date +%s%N)
say() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf '[slurm-up %d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"; }

[ "$(id -u)" -eq 0 ] || die "run as root, or with sudo (slurmd and munged need it)"
mkdir -p "$S/log"

missing=()
for bin in slurmctld slurmd slurmdbd munged mariadbd mysql_install_db sacct; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$INSTALL" -eq 1 ]; then
    echo "[slurm-up] installing ${PACKAGES[*]} (missing: ${missing[*]})"
    ti=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    APT_LOG="$S/log/apt.log"
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$APT_LOG" 2>&1 || {
      apt-get update -q >>"$APT_LOG" 2>&1
      apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$APT_LOG" 2>&1 ||
        { tail -20 "$APT_LOG" >&2; die "apt-get install failed (log: $APT_LOG)"; }
    }
    echo "[slurm-up] apt-get install took $(( $(date +%s) - ti )) s"
  else
    die "missing ${missing[*]}: apt-get install ${PACKAGES[*]} (or pass --install)"
  fi
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive "$S/run/slurmctld.pid" && alive "$S/run/slurmd.pid"; then
  say "already up in $S (source $S/env.sh)"
  exit 0
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for spec in "SLURMCTLD_PORT=$CTLD_PORT" "SLURMD_PORT=$SLURMD_PORT" "SLURMDBD_PORT=$DBD_PORT" "HARNESS_SLURM_DB_PORT=$DB_PORT"; do
  port_free "${spec#*=}" || die "port ${spec#*=} is in use (another cluster?): set ${spec%%=*} to a free port"
done

# On failure, stop whatever this script started (by the PIDs in $S/run).
up_ok=0
trap '[ "$up_ok" -eq 1 ] || { echo "slurm-up: failed; stopping what it started" >&2; bash "$(dirname "$0")/slurm-down.sh" "$S" >&2; }' EXIT

mkdir -p "$S"/{etc,run,log,state,spool,munge,mysql}
chmod 755 "$S" "$S/etc" "$S/run" "$S/log"
mkdir -p "$S/munge/key"
chown munge:munge "$S/munge" "$S/munge/key" && chmod 755 "$S/munge" && chmod 700 "$S/munge/key"
chown mysql:mysql "$S/mysql"
touch "$S/log/munged.log" && chown munge:munge "$S/log/munged.log"
touch "$S/log/mariadb.log" && chown mysql:mysql "$S/log/mariadb.log"
touch "$S/run/munged.pid" "$S/run/mariadb.pid"
chown munge:munge "$S/run/munged.pid"; chown mysql:mysql "$S/run/mariadb.pid"
MUNGE_SOCKET="$S/munge/munge.socket"

# What this node really has (slurmd refuses a node that declares more).
read -r CPUS MEM < <(slurmd -C | awk '{for(i=1;i<=NF;i++){split($i,a,"="); v[a[1]]=a[2]}} END{print v["CPUs"], v["RealMemory"]}')
[ -n "$CPUS" ] && [ -n "$MEM" ] || die "could not read CPUs and memory from slurmd -C"

# Memory enforcement: a job over its --mem is killed only where a memory cgroup can be made.
memory_cgroup() {  # prints v1 or v2 where Slurm can confine a job's memory; else says why on stderr
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw memory /sys/fs/cgroup/cgroup.controllers || { echo "cgroup v2 without the memory controller" >&2; return 1; }
    [ -w /sys/fs/cgroup/cgroup.subtree_control ] || { echo "cgroup v2 is read-only in this container" >&2; return 1; }
    echo v2
  elif [ -d /sys/fs/cgroup/memory ]; then
    local probe="/sys/fs/cgroup/memory/harness-slurm-probe.$$"
    { mkdir "$probe" && rmdir "$probe"; } 2>/dev/null ||
      { echo "the cgroup v1 memory controller is read-only in this container" >&2; return 1; }
    echo v1
  else
    echo "no memory cgroup controller is mounted" >&2; return 1
  fi
}
CGROUP=""
if [ "$MEMORY" != off ]; then
  if ! CGROUP=$(memory_cgroup 2>"$S/log/memory-cgroup.log"); then
    [ "$MEMORY" = on ] && die "--memory: memory cannot be enforced here: $(cat "$S/log/memory-cgroup.log")"
    say "memory not enforced: $(cat "$S/log/memory-cgroup.log")"
    CGROUP=""
  fi
fi

write_slurm_conf() {  # write_slurm_conf CGROUP: with CGROUP (v1 or v2) memory is enforced, without it not
  local cgroup=$1 task=task/none select=CR_Core gather=jobacct_gather/none defmem=""
  if [ -n "$cgroup" ]; then
    task=task/cgroup select=CR_Core_Memory gather=jobacct_gather/linux defmem="DefMemPerCPU=$(( MEM / CPUS ))"
    {
      echo "# Written by scripts/slurm-up.sh: memory enforced through cgroup $cgroup"
      echo "CgroupPlugin=cgroup/$cgroup"
      echo "CgroupMountpoint=/sys/fs/cgroup"
      echo "ConstrainRAMSpace=yes"
      echo "ConstrainCores=no"
      echo "ConstrainDevices=no"
      if [ "$cgroup" = v2 ]; then echo "IgnoreSystemd=yes"; fi  # no systemd here: Slurm makes its cgroups itself
      if [ -e /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes ] || [ "$cgroup" = v2 ]; then
        echo "ConstrainSwapSpace=yes"
        echo "AllowedSwapSpace=0"
      fi
    } >"$S/etc/cgroup.conf"
  else
    rm -f "$S/etc/cgroup.conf"
  fi
  cat >"$S/etc/slurm.conf" <<EOF
# Written by scripts/slurm-up.sh: a single-node cluster under $S
ClusterName=harness
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=$task
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=$select
ReturnToService=2
# Short waits so that cancelled and requeued jobs move on quickly (a requeued job waits cred_expire).
KillWait=5
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2,sched_min_interval=100000
JobAcctGatherType=$gather
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
MailProg=/bin/true
# A job in 'urgent' preempts (cancels) jobs of 'debug': how the tests make a real preemption.
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
$defmem
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=2
EOF
}
write_slurm_conf "$CGROUP"

cat >"$S/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$S/run/slurmdbd.pid
LogFile=$S/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 "$S/etc/slurmdbd.conf"

write_env() {  # write_env MEMORY: enforced or none
  cat >"$S/env.sh" <<EOF
# source this file to talk to the cluster under $S
export SLURM_CONF=$S/etc/slurm.conf
export HARNESS_SLURM_DIR=$S
export HARNESS_SLURM_MEMORY=$1
EOF
}
write_env none
export SLURM_CONF="$S/etc/slurm.conf"

within() {  # within SECONDS COMMAND...: whether COMMAND succeeds within SECONDS (tried every 0.1 s)
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  within "$limit" "$@" || die "$what did not come up within ${limit}s (logs: $S/log)"
}

# munge: its own key, socket, seed, log and PID under SCRATCH.
[ -s "$S/munge/key/munge.key" ] || { mungekey -c -k "$S/munge/key/munge.key" && chown munge:munge "$S/munge/key/munge.key"; }
chmod 400 "$S/munge/key/munge.key"
runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --key-file="$S/munge/key/munge.key" \
  --pid-file="$S/run/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/key/munged.seed"
wait_for 10 munged test -S "$MUNGE_SOCKET"
say "munged up"

# MariaDB for slurmdbd, on 127.0.0.1:$DB_PORT only.
if [ ! -d "$S/mysql/data/mysql" ]; then
  mysql_install_db --user=mysql --datadir="$S/mysql/data" --skip-test-db >"$S/log/mysql_install_db.log" 2>&1 ||
    { tail -20 "$S/log/mysql_install_db.log" >&2; die "mysql_install_db failed"; }
fi
runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$S/mysql/data" --socket="$S/mysql/mysqld.sock" \
  --pid-file="$S/run/mariadb.pid" --log-error="$S/log/mariadb.log" --bind-address=127.0.0.1 --port="$DB_PORT" \
  --innodb-buffer-pool-size=32M --skip-name-resolve >/dev/null 2>&1 &
wait_for 60 mariadb mysqladmin --socket="$S/mysql/mysqld.sock" ping
mysql --socket="$S/mysql/mysqld.sock" -uroot <<'EOF'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
say "mariadb up"

/usr/sbin/slurmdbd  # reads slurmdbd.conf next to $SLURM_CONF
wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$DBD_PORT"
say "slurmdbd up"

node_up() { sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'; }
/usr/sbin/slurmctld -i -f "$S/etc/slurm.conf"
wait_for 30 slurmctld scontrol ping
say "slurmctld up"
/usr/sbin/slurmd -N localhost -f "$S/etc/slurm.conf"
if ! within 30 node_up; then
  { [ -n "$CGROUP" ] && [ "$MEMORY" = auto ]; } || die "the node did not come up within 30s (logs: $S/log)"
  # slurmd could not use the memory cgroup after all: the same cluster without memory enforcement
  say "slurmd did not start with memory enforcement ($(grep -i error "$S/log/slurmd.log" | tail -1)); starting without it"
  for daemon in slurmd slurmctld; do
    if [ -s "$S/run/$daemon.pid" ]; then
      pid=$(cat "$S/run/$daemon.pid")
      kill "$pid" 2>/dev/null || true
      within 15 bash -c "! kill -0 $pid" || true
    fi
  done
  CGROUP=""
  write_slurm_conf ""
  /usr/sbin/slurmctld -i -f "$S/etc/slurm.conf"
  wait_for 30 slurmctld scontrol ping
  /usr/sbin/slurmd -N localhost -f "$S/etc/slurm.conf"
  wait_for 30 "the node" node_up
fi
# slurmctld registers the cluster with slurmdbd on its own; sacct must answer.
wait_for 30 "accounting (sacct)" sacct -n -X -S now
memory="not enforced"
if [ -n "$CGROUP" ]; then
  # A job over its --mem must really be killed (ulimit -v bounds it where nothing is enforced).
  check=$(sbatch --parsable --wait --mem=64M -t 1 -o /dev/null -J harness-memory-check \
          --wrap "srun bash -c 'ulimit -v 2000000; exec tail /dev/zero'" 2>/dev/null || true)
  if [ -n "$check" ] && within 10 bash -c "sacct -n -P -o State -j '$check' | grep -q OUT_OF_MEMORY"; then
    memory="enforced (cgroup $CGROUP: a test job over its 64 MB was killed, OUT_OF_MEMORY)"
    write_env enforced
  else
    [ "$MEMORY" = on ] && die "--memory: a job over its --mem was not killed for memory (job ${check:-not submitted})"
    memory="configured (cgroup $CGROUP) but not enforced: a test job over its --mem was not killed"
  fi
fi
up_ok=1
say "cluster up: node localhost, $CPUS CPUs, $MEM MB, memory $memory; source $S/env.sh"
