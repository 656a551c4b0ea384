#!/usr/bin/env bash
# Stop the single-node cluster that scripts/slurm-up.sh started under SCRATCH: exactly its
# daemons, by the PIDs in SCRATCH/run/ (each checked to still be that daemon), newest first.
#
#   scripts/slurm-down.sh [--purge] [SCRATCH]     # as root (or with sudo); --purge also deletes SCRATCH
set -uo pipefail

PURGE=0
if [ "${1:-}" = "--purge" ]; then PURGE=1; shift; fi
S="${1:-${HARNESS_SLURM_DIR:-/tmp/harness-slurm}}"
[ -d "$S/run" ] || { echo "slurm-down: nothing under $S/run"; exit 0; }

stop() {  # stop NAME PROGRAM: SIGTERM the PID in NAME.pid if it runs PROGRAM, then wait; SIGKILL after 15 s
  local name=$1 program=$2 pidfile="$S/run/$1.pid" pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile"; return 0; fi
  if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$program"; then
    echo "slurm-down: PID $pid in $pidfile is not $program; left alone" >&2
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; echo "slurm-down: killed $name ($pid)"; fi
  rm -f "$pidfile"
  echo "slurm-down: stopped $name ($pid)"
}

# Cancel this cluster's jobs first, so that no job step outlives its slurmd.
if [ -f "$S/etc/slurm.conf" ] && [ -s "$S/run/slurmctld.pid" ] && kill -0 "$(cat "$S/run/slurmctld.pid")" 2>/dev/null; then
  SLURM_CONF="$S/etc/slurm.conf" scancel -u "$(id -un)" 2>/dev/null
  for _ in $(seq 50); do
    [ -z "$(SLURM_CONF="$S/etc/slurm.conf" squeue -h -u "$(id -un)" -t running,completing 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
stop slurmd slurmd
stop slurmctld slurmctld
stop slurmdbd slurmdbd
stop mariadb mariadbd
stop munged munged
# With memory enforced (SCRATCH/etc/cgroup.conf), slurmd left its empty cgroup folders: remove them.
if [ -f "$S/etc/cgroup.conf" ]; then
  for top in /sys/fs/cgroup/memory/slurm_localhost /sys/fs/cgroup/memory/slurm /sys/fs/cgroup/system.slice/slurmstepd.scope; do
    [ -d "$top" ] && find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
fi
if [ "$PURGE" -eq 1 ]; then rm -rf "$S"; echo "slurm-down: removed $S"; fi
