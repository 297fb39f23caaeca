#!/usr/bin/env bash
# A real single-node SLURM cluster for fsv's tests, on this machine, without systemd.
#
#   tests/cluster/slurm.sh up      install Debian's packages when absent (root), start MariaDB, munge,
#                                  slurmdbd, slurmctld and slurmd, wait until the node is idle
#   tests/cluster/slurm.sh down    stop every daemon by its PID file
#   tests/cluster/slurm.sh env     print the line that points SLURM's commands at this cluster
#   tests/cluster/slurm.sh status  exit 0 when the cluster answers
#
# Everything lives under $FSV_SLURM_DIR (default /tmp/fsv-slurm): the configuration, state, spool,
# the MariaDB data and every daemon's log (logs/*.log). Client commands find the cluster through
# SLURM_CONF=$FSV_SLURM_DIR/etc/slurm.conf (`eval "$(tests/cluster/slurm.sh env)"`); nothing is
# written to /etc. Accounting (slurmdbd on a local MariaDB) is part of the cluster because
# submitit reads job states with `sacct`: without it a job that died unseen stays "UNKNOWN".
# The node has this machine's cores and 80 % of its memory, no GPUs, and one partition `debug`;
# memory and cores are consumable, so a request larger than the node is refused by sbatch.
set -euo pipefail

DIR=${FSV_SLURM_DIR:-/tmp/fsv-slurm}
CLUSTER=fsvtest
HOST=$(hostname -s)
DB_PORT=${FSV_SLURM_DB_PORT:-3317}
DBD_PORT=${FSV_SLURM_DBD_PORT:-6919}
CTLD_PORT=${FSV_SLURM_CTLD_PORT:-6917}
SLURMD_PORT=${FSV_SLURM_SLURMD_PORT:-6918}
CONF=$DIR/etc/slurm.conf
DAEMONS=(slurmd slurmctld slurmdbd munged mariadbd)

log() { echo "slurm.sh: $*" >&2; }
die() { log "$*"; for f in "$DIR"/logs/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd slurmdbd munged mariadbd sbatch sacct; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: install slurm-wlm slurmdbd munge mariadb-server (needs root)"
    log "installing Debian's SLURM, munge and MariaDB packages (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm slurmctld slurmd slurmdbd slurm-client munge mariadb-server >/dev/null
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS WHAT CMD...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    while [ $SECONDS -lt $deadline ]; do timeout 10 "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    die "timed out waiting for $what"
}

write_config() {
    mkdir -p "$DIR"/{etc,logs,run,state,spool,munge,mysql}
    chmod 755 "$DIR/munge"
    [ -f "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$DIR/munge/munge.key"; }
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    cat > "$CONF" <<EOF
# fsv's single-node test cluster (tests/cluster/slurm.sh)
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/logs/slurmctld.log
SlurmdLogFile=$DIR/logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$DIR/munge/munge.socket
JobCompType=jobcomp/none
MinJobAge=600
KillWait=5
InactiveLimit=0
MessageTimeout=30
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/logs/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=fsv-test
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

start_mariadb() {
    pid_alive "$DIR/run/mariadbd.pid" && return
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=normal --skip-test-db >"$DIR/logs/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed"
    fi
    mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysql.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/logs/mariadb.log" --skip-name-resolve \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 --max-allowed-packet=64M >>"$DIR/logs/mariadb.log" 2>&1 &
    wait_for 60 "MariaDB" mariadb --socket="$DIR/run/mysql.sock" -uroot -e "SELECT 1"
    mariadb --socket="$DIR/run/mysql.sock" -uroot <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'fsv-test';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
}

start_munge() {
    pid_alive "$DIR/run/munged.pid" && return
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/logs/munged.log" --seed-file="$DIR/munge/munged.seed" || die "munged did not start"
    wait_for 20 "munge" bash -c "munge -n -S '$DIR/munge/munge.socket' | unmunge -S '$DIR/munge/munge.socket'"
}

start_slurm() {
    export SLURM_CONF=$CONF
    pid_alive "$DIR/run/slurmdbd.pid" || slurmdbd 2>>"$DIR/logs/slurmdbd.log" || die "slurmdbd did not start"
    wait_for 60 "slurmdbd" sacctmgr -n show cluster
    # the cluster, an account and root's association (idempotent: "already exists" is fine)
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    sacctmgr -i add account fsv Cluster="$CLUSTER" Description=tests Organization=fsv >/dev/null 2>&1 || true
    sacctmgr -i add user root Account=fsv Cluster="$CLUSTER" >/dev/null 2>&1 || true
    pid_alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF" || die "slurmctld did not start"
    wait_for 60 "slurmctld" scontrol ping
    pid_alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF" || die "slurmd did not start"
    wait_for 60 "node $HOST to be idle" bash -c "sinfo -h -n '$HOST' -o %t | grep -qE '^(idle|mix|alloc)'"
}

up() {
    install_packages
    write_config
    start_mariadb
    start_munge
    start_slurm
    log "up: $(sinfo -h -o '%P %D nodes, %c CPUs, %m MB, %t' | head -n 1); SLURM_CONF=$CONF; logs in $DIR/logs"
}

down() {
    local name pidf
    for name in "${DAEMONS[@]}"; do
        pidf=$DIR/run/$name.pid
        if pid_alive "$pidf"; then
            kill "$(cat "$pidf")" 2>/dev/null || true
            for _ in $(seq 80); do pid_alive "$pidf" || break; sleep 0.25; done
            pid_alive "$pidf" && kill -9 "$(cat "$pidf")" 2>/dev/null || true
        fi
        rm -f "$pidf"
    done
    log "down (logs kept in $DIR/logs)"
}

status() {
    export SLURM_CONF=$CONF
    [ -f "$CONF" ] && scontrol ping >/dev/null 2>&1 && sacct -n -X -S now >/dev/null 2>&1 \
        && sinfo -h -n "$HOST" -o %t | grep -qE '^(idle|mix|alloc)'
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    status) status ;;
    *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
