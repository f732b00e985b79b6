#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM launcher's tests and for trying
# `lightning-talos audit launcher=slurm` without a real cluster.
#
#   scripts/slurm.sh up      munge key + munged, slurm.conf naming this host, slurmctld + slurmd
#   scripts/slurm.sh down    stops the daemons this script started (jobs are cancelled)
#   scripts/slurm.sh status  prints the partition and node state
#
# Needs root and Debian's `slurm-wlm` and `munge` packages (`apt-get install -y slurm-wlm munge`).
# Both commands are idempotent. A slurm.conf this script did not write (a real cluster's) is never
# touched.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARK="# written by lightning_talos scripts/slurm.sh"
HOST=$(hostname -s)
PARTITION=${SLURM_PARTITION_NAME:-debug}
LOG_DIR=/var/log/slurm

say() { echo "slurm.sh: $*"; }
# every online CPU (nproc would honour OMP_NUM_THREADS)
cpus() { getconf _NPROCESSORS_ONLN; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    say "needs root to start munged, slurmctld and slurmd (run it as root, or use a real cluster)"
    exit 1
  fi
  for bin in munged slurmctld slurmd sinfo; do
    if ! command -v "$bin" >/dev/null; then
      say "$bin not found: apt-get install -y slurm-wlm munge"
      exit 1
    fi
  done
}

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true; }

is_up() {
  case "$(node_state)" in
    idle*|mixed*|allocated*|completing*) return 0 ;;
    *) return 1 ;;
  esac
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  if ! munge -n >/dev/null 2>&1; then
    if id munge >/dev/null 2>&1; then
      runuser -u munge -- /usr/sbin/munged
    else
      /usr/sbin/munged --force
    fi
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  munge -n >/dev/null 2>&1 || { say "munged did not start (see /var/log/munge)"; exit 1; }
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script: leaving it (and this cluster) alone"
    exit 1
  fi
  local mem
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
  cat > "$CONF.tmp" <<CONF
$MARK
ClusterName=lightning_talos
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
KillWait=30
MinJobAge=600
NodeName=$HOST CPUs=$(cpus) RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  mv "$CONF.tmp" "$CONF"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  need_root
  if is_up; then
    say "already up: partition $PARTITION on $HOST ($(node_state))"
    return 0
  fi
  start_munge
  write_conf
  alive /run/slurmctld.pid || slurmctld
  alive /run/slurmd.pid || slurmd
  for _ in $(seq 100); do
    is_up && break
    case "$(node_state)" in
      down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
  done
  if ! is_up; then
    say "the node did not come up (state: '$(node_state)'); see $LOG_DIR/slurmctld.log and slurmd.log"
    exit 1
  fi
  say "up: partition $PARTITION on $HOST, $(cpus) CPUs"
}

down() {
  need_root
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF was not written by this script: not stopping that cluster"
    exit 1
  fi
  scancel --user=root >/dev/null 2>&1 || true
  for pid_file in /run/slurmd.pid /run/slurmctld.pid; do
    if alive "$pid_file"; then
      kill "$(cat "$pid_file")"
      for _ in $(seq 50); do alive "$pid_file" || break; sleep 0.1; done
    fi
    rm -f "$pid_file"
  done
  say "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo -o "%P %a %D %T %C" 2>/dev/null || say "no cluster reachable" ;;
  *) echo "usage: scripts/slurm.sh up|down|status" >&2; exit 2 ;;
esac
