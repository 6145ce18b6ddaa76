#!/usr/bin/env bash
# Bring up a real single-machine SLURM cluster with accounting:
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd
# All state (configs, munge key/socket, database, spool, logs, pids) lives in
# ${AFD_SLURM_DIR:-/tmp/afd-slurm}. Idempotent: daemons already running are
# left alone, stale pid files are ignored. Must run as root.
#
# Environment knobs (all optional):
#   AFD_SLURM_DIR        state directory                 (/tmp/afd-slurm)
#   AFD_SLURM_PORT_BASE  slurmctld port; slurmd=+1, slurmdbd=+2, mariadb=+3 (16817)
#   AFD_SLURM_CLUSTER    ClusterName                     (afd)
#   AFD_SLURM_PARTITION  name of the single partition    (debug)
#   AFD_SLURM_TIMEOUT    seconds to wait for each daemon (60)
#   AFD_SLURM_NO_INSTALL set to 1 to never call apt-get
#
# On success prints the path of env.sh; `source` it to get SLURM_CONF etc.
set -euo pipefail

DIR=${AFD_SLURM_DIR:-/tmp/afd-slurm}
PORT_BASE=${AFD_SLURM_PORT_BASE:-16817}
CLUSTER=${AFD_SLURM_CLUSTER:-afd}
PARTITION=${AFD_SLURM_PARTITION:-debug}
TIMEOUT=${AFD_SLURM_TIMEOUT:-60}

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))

PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

log() { printf '[afd-slurm up] %s\n' "$*" >&2; }

# die MESSAGE [LOGFILE...]: print the message and the tail of each log, exit 1.
die() {
    local msg=$1
    shift
    printf '[afd-slurm up] ERROR: %s\n' "$msg" >&2
    local f
    for f in "$@"; do
        if [[ -s $f ]]; then
            printf '[afd-slurm up] ---- last lines of %s ----\n' "$f" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (daemons run as root/munge/mysql)"
case $DIR in
    /*) ;;
    *) DIR=$(pwd)/$DIR ;;
esac
DIR=${DIR%/}

# --------------------------------------------------------------------------
# 1. packages
# --------------------------------------------------------------------------
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

install_packages() {
    local missing
    missing=$(missing_packages)
    [[ -z $missing ]] && return 0
    [[ ${AFD_SLURM_NO_INSTALL:-0} == 1 ]] && die "missing packages: $(echo $missing) (AFD_SLURM_NO_INSTALL=1)"
    log "installing: $(echo $missing)"
    # Keep package maintainer scripts from starting system-wide munge/mariadb/slurm
    # services: this cluster runs its own instances.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local out rc=0
    out=$(mktemp)
    apt_install "${PACKAGES[@]}" >"$out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]] && grep -Eq 'Unable to locate package|has no installation candidate|Failed to fetch|404 +Not Found' "$out"; then
        log "package lists missing or stale: running apt-get update"
        rc=0
        { apt-get update && apt_install "${PACKAGES[@]}"; } >"$out" 2>&1 || rc=$?
    fi
    [[ $created_policy -eq 1 ]] && rm -f "$policy"
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$out" >&2
        rm -f "$out"
        die "apt-get install failed"
    fi
    rm -f "$out"
    missing=$(missing_packages)
    [[ -z $missing ]] || die "packages still missing after install: $(echo $missing)"
}

install_packages
for bin in munged mungekey mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo sacctmgr scontrol setpriv; do
    command -v "$bin" >/dev/null 2>&1 || die "required program not found: $bin"
done

# --------------------------------------------------------------------------
# 2. layout and configuration
# --------------------------------------------------------------------------
HOST=$(hostname -s 2>/dev/null || uname -n)
HOST=${HOST%%.*}
# srun and slurmd look the node's name up; make sure it resolves.
if ! getent hosts "$HOST" >/dev/null 2>&1; then
    log "hostname $HOST does not resolve: adding '127.0.0.1 $HOST' to /etc/hosts"
    echo "127.0.0.1 $HOST" >>/etc/hosts
fi
ETC=$DIR/etc
LOGD=$DIR/log
RUND=$DIR/run
SPOOL=$DIR/spool
MUNGE_DIR=$DIR/munge
MUNGE_SOCK_DIR=$DIR/munge-sock
MUNGE_SOCK=$MUNGE_SOCK_DIR/munge.socket
MUNGE_KEY=$MUNGE_DIR/munge.key
MUNGE_PID=$MUNGE_DIR/munged.pid
MUNGE_LOG=$MUNGE_DIR/munged.log
DB_DIR=$DIR/mariadb
DB_DATA=$DB_DIR/data
DB_SOCK=$DB_DIR/mariadb.sock
DB_PID=$DB_DIR/mariadbd.pid
DB_LOG=$DB_DIR/mariadbd.log
DB_INIT=$DB_DIR/init.sql
DB_PASS_FILE=$DB_DIR/slurm.pass
SLURM_CONF_FILE=$ETC/slurm.conf
DBD_CONF_FILE=$ETC/slurmdbd.conf
CTLD_PID=$RUND/slurmctld.pid
SLURMD_PID=$RUND/slurmd.pid
DBD_PID=$RUND/slurmdbd.pid
CTLD_LOG=$LOGD/slurmctld.log
SLURMD_LOG=$LOGD/slurmd.log
DBD_LOG=$LOGD/slurmdbd.log

id munge >/dev/null 2>&1 || die "user 'munge' does not exist (munge package broken?)"
id mysql >/dev/null 2>&1 || die "user 'mysql' does not exist (mariadb-server package broken?)"

mkdir -p "$DIR" "$ETC" "$LOGD" "$RUND" "$SPOOL/ctld" "$SPOOL/d" \
    "$MUNGE_DIR" "$MUNGE_SOCK_DIR" "$DB_DIR"
chmod 755 "$DIR" "$ETC" "$LOGD" "$RUND" "$SPOOL"
chmod 700 "$SPOOL/ctld" "$SPOOL/d"
chown munge:munge "$MUNGE_DIR" "$MUNGE_SOCK_DIR"
chmod 700 "$MUNGE_DIR"
chmod 755 "$MUNGE_SOCK_DIR"
chown mysql:mysql "$DB_DIR"
chmod 750 "$DB_DIR"

# munge key (created once, kept across restarts)
if [[ ! -s $MUNGE_KEY ]]; then
    mungekey --create --keyfile="$MUNGE_KEY" >/dev/null 2>&1 \
        || dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
fi
chown munge:munge "$MUNGE_KEY"
chmod 600 "$MUNGE_KEY"

# database password for the slurm account (created once)
if [[ ! -s $DB_PASS_FILE ]]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DB_PASS_FILE")
fi
chmod 600 "$DB_PASS_FILE"
DB_PASS=$(cat "$DB_PASS_FILE")

# Node description: topology as slurmd detects it, CPUs from nproc, memory a bit
# below the total so the node never drains for "Low RealMemory".
NCPU=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc would honour OMP_NUM_THREADS
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MEM=$((MEM_MB * 9 / 10))
[[ $REAL_MEM -ge 256 ]] || REAL_MEM=256
TOPO=""
if hw=$(SLURM_CONF=/dev/null slurmd -C 2>/dev/null | head -n 1); then
    sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
    cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
    threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
    if [[ -n $sockets && -n $cores && -n $threads ]] \
        && [[ $((sockets * cores * threads)) -eq $NCPU ]]; then
        TOPO="Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
    fi
fi

# write_if_changed FILE MODE: stdin -> FILE; returns 0 when the content changed.
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        chmod "$mode" "$file"
        return 1
    fi
    mv -f "$tmp" "$file"
    return 0
}

CONF_CHANGED=0
write_if_changed "$SLURM_CONF_FILE" 644 <<EOF && CONF_CHANGED=1 || true
# Generated by slurm/localcluster/up.sh -- single-machine test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=2
MinJobAge=30
Waittime=0
UnkillableStepTimeout=30
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCK
JobCompType=jobcomp/none
MailProg=/bin/true
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$NCPU ${TOPO:+$TOPO }RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

write_if_changed "$DBD_CONF_FILE" 600 <<EOF && CONF_CHANGED=1 || true
# Generated by slurm/localcluster/up.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$DBD_LOG
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chown root:root "$DBD_CONF_FILE"

# Run by mariadbd at every start: makes sure the slurm database user exists.
write_if_changed "$DB_INIT" 600 <<EOF || true
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
chown mysql:mysql "$DB_INIT"

export SLURM_CONF=$SLURM_CONF_FILE
# Marker in the daemons' environment: down.sh uses it to find exactly our processes.
export AFD_SLURM_DIR=$DIR

# --------------------------------------------------------------------------
# 3. daemons
# --------------------------------------------------------------------------
# pid_of COMM PIDFILE: print the pid if the file names a live process called COMM.
pid_of() {
    local comm=$1 file=$2 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    echo "$pid"
}

ALREADY=()
STARTED=()
LAUNCHED_PID=""

# ensure_daemon NAME COMM PIDFILE LOGFILE COMMAND...: unless COMM already runs
# from PIDFILE, run COMMAND (it daemonizes, or backgrounds the daemon and leaves
# its pid in LAUNCHED_PID) and wait for a live process in PIDFILE.
ensure_daemon() {
    local name=$1 comm=$2 pidfile=$3 logfile=$4
    shift 4
    if pid_of "$comm" "$pidfile" >/dev/null; then
        ALREADY+=("$name")
        return 0
    fi
    rm -f "$pidfile"
    local start_log=$LOGD/$name.start.log
    log "starting $name"
    local rc=0
    LAUNCHED_PID=""
    "$@" </dev/null >"$start_log" 2>&1 || rc=$?
    [[ $rc -eq 0 ]] || die "$name failed to start (exit status $rc)" "$start_log" "$logfile"
    local limit=$((TIMEOUT < 30 ? TIMEOUT : 30))
    local end=$((SECONDS + limit))
    until pid_of "$comm" "$pidfile" >/dev/null; do
        if [[ -n $LAUNCHED_PID ]] && ! kill -0 "$LAUNCHED_PID" 2>/dev/null; then
            die "$name exited during start-up" "$start_log" "$logfile"
        fi
        [[ $SECONDS -lt $end ]] || die "$name did not come up (no live $comm in $pidfile after ${limit}s)" "$start_log" "$logfile"
        sleep 0.2
    done
    STARTED+=("$name")
}

# wait_ready NAME COMM PIDFILE DESC COMMAND... [-- LOGFILE...]: poll COMMAND every
# 0.5 s until it succeeds; fail at once if the daemon dies, or after TIMEOUT.
wait_ready() {
    local name=$1 comm=$2 pidfile=$3 desc=$4
    shift 4
    local cmd=() logs=()
    while [[ $# -gt 0 && $1 != -- ]]; do cmd+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    logs=("$LOGD/$name.start.log" "$@")
    local end=$((SECONDS + TIMEOUT))
    until "${cmd[@]}" >/dev/null 2>&1; do
        pid_of "$comm" "$pidfile" >/dev/null || die "$name exited unexpectedly" "${logs[@]}"
        [[ $SECONDS -lt $end ]] || die "$name: $desc (waited ${TIMEOUT}s)" "${logs[@]}"
        sleep 0.5
    done
}

T0=$SECONDS

# ---- munged
start_munged() {
    setpriv --reuid=munge --regid=munge --clear-groups \
        munged --socket="$MUNGE_SOCK" --key-file="$MUNGE_KEY" --pid-file="$MUNGE_PID" \
        --log-file="$MUNGE_LOG" --seed-file="$MUNGE_DIR/munged.seed"
}
munge_works() { munge -n -S "$MUNGE_SOCK" | unmunge -S "$MUNGE_SOCK"; }
ensure_daemon munged munged "$MUNGE_PID" "$MUNGE_LOG" start_munged
wait_ready munged munged "$MUNGE_PID" "credentials do not round-trip on $MUNGE_SOCK" \
    munge_works -- "$MUNGE_LOG"

# ---- mariadb
if [[ ! -d $DB_DATA/mysql ]]; then
    log "initialising MariaDB data directory"
    rm -rf "$DB_DATA"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DATA" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOGD/mariadb-install-db.log" 2>&1 \
        || die "mariadb-install-db failed" "$LOGD/mariadb-install-db.log"
fi
start_mariadbd() {
    # fresh log, so that "ready for connections" below is from this start
    [[ -f $DB_LOG ]] && mv -f "$DB_LOG" "$DB_LOG.prev"
    setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DATA" \
        --socket="$DB_SOCK" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DB_PID" --log-error="$DB_LOG" --init-file="$DB_INIT" \
        --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=2 \
        --max-connections=100 &
    LAUNCHED_PID=$!
}
# mariadbd is ready once its init file ran, i.e. the slurm user can log in over TCP;
# without a client at hand, an open port plus the "ready for connections" line will do.
db_ready() {
    (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null \
        && grep -q 'ready for connections' "$DB_LOG" 2>/dev/null
}
ensure_daemon mariadb mariadbd "$DB_PID" "$DB_LOG" start_mariadbd
wait_ready mariadb mariadbd "$DB_PID" "does not accept connections on 127.0.0.1:$DB_PORT" \
    db_ready -- "$DB_LOG"

# ---- slurmdbd
ensure_daemon slurmdbd slurmdbd "$DBD_PID" "$DBD_LOG" slurmdbd
dbd_answers() { timeout 10 sacctmgr -n -P show cluster format=cluster; }
wait_ready slurmdbd slurmdbd "$DBD_PID" "does not answer sacctmgr on 127.0.0.1:$DBD_PORT" \
    dbd_answers -- "$DBD_LOG" "$DB_LOG"

# accounting objects: cluster, account, users
sacctmgr_q() { timeout 20 sacctmgr -i "$@" >>"$LOGD/sacctmgr.log" 2>&1; }
if ! timeout 10 sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr_q add cluster "$CLUSTER" || die "sacctmgr add cluster $CLUSTER failed" "$LOGD/sacctmgr.log" "$DBD_LOG"
fi
if ! timeout 10 sacctmgr -n -P show account format=account | grep -qx afd; then
    sacctmgr_q add account afd Cluster="$CLUSTER" Description=afd Organization=afd \
        || die "sacctmgr add account failed" "$LOGD/sacctmgr.log" "$DBD_LOG"
fi
USERS=(root)
for u in ${SUDO_USER:-} ${AFD_SLURM_USERS:-}; do
    [[ $u != root ]] && id "$u" >/dev/null 2>&1 && USERS+=("$u")
done
for u in "${USERS[@]}"; do
    if ! timeout 10 sacctmgr -n -P show assoc where cluster="$CLUSTER" account=afd user="$u" format=user | grep -qx "$u"; then
        sacctmgr_q add user "$u" Account=afd Cluster="$CLUSTER" DefaultAccount=afd \
            || die "sacctmgr add user $u failed" "$LOGD/sacctmgr.log" "$DBD_LOG"
    fi
done

# ---- slurmctld
ensure_daemon slurmctld slurmctld "$CTLD_PID" "$CTLD_LOG" slurmctld
ctld_up() { timeout 10 scontrol ping | grep -q 'is UP'; }
wait_ready slurmctld slurmctld "$CTLD_PID" "does not answer scontrol ping" ctld_up -- "$CTLD_LOG"

# Jobs recovered from the saved state of an earlier run whose slurmd is gone have
# no processes left: cancel them so the node starts empty.
if ! pid_of slurmd "$SLURMD_PID" >/dev/null; then
    stale=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n ${stale// /} ]]; then
        log "cancelling jobs left over from an earlier run: $stale"
        timeout 10 scancel $stale >/dev/null 2>&1 || true
    fi
fi

# ---- slurmd
ensure_daemon slurmd slurmd "$SLURMD_PID" "$SLURMD_LOG" slurmd
node_state() { timeout 10 sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n 1; }
RESUMED=0
node_idle() {
    local s
    s=$(node_state)
    case $s in
        idle | mixed | allocated | completing) return 0 ;;
    esac
    # A node left drained/down by an earlier run (e.g. killed mid-job) must be
    # resumed by hand; ReturnToService=2 only covers "not responding".
    if [[ $RESUMED -eq 0 && $s =~ ^(drain|drained|draining|down) ]]; then
        timeout 10 scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        RESUMED=1
    fi
    return 1
}
wait_ready slurmd slurmd "$SLURMD_PID" "node $HOST not idle" node_idle -- "$SLURMD_LOG" "$CTLD_LOG"
[[ $RESUMED -eq 1 ]] && log "node $HOST was down/drained from an earlier run: resumed it"

# ---- slurmctld registered with slurmdbd (controlhost filled in)
registered() {
    timeout 10 sacctmgr -n -P show cluster "$CLUSTER" format=cluster,controlhost,controlport \
        | grep -qx "$CLUSTER|127.0.0.1|$CTLD_PORT"
}
wait_ready slurmctld slurmctld "$CTLD_PID" "cluster $CLUSTER never registered with slurmdbd" \
    registered -- "$CTLD_LOG" "$DBD_LOG"

if [[ $CONF_CHANGED -eq 1 && ${#ALREADY[@]} -gt 0 ]]; then
    log "WARNING: configuration changed while ${ALREADY[*]} kept running; run down.sh then up.sh to apply it"
fi

# --------------------------------------------------------------------------
# 4. env.sh for clients
# --------------------------------------------------------------------------
write_if_changed "$DIR/env.sh" 644 <<EOF || true
# Generated by slurm/localcluster/up.sh: source this file to use the cluster.
export AFD_SLURM_DIR='$DIR'
export SLURM_CONF='$SLURM_CONF_FILE'
export AFD_SLURM_CLUSTER='$CLUSTER'
export AFD_SLURM_PARTITION='$PARTITION'
export AFD_SLURM_NODE='$HOST'
export AFD_SLURM_MUNGE_SOCKET='$MUNGE_SOCK'
EOF

log "cluster '$CLUSTER' ready in $((SECONDS - T0))s (started: ${STARTED[*]:-none}; already running: ${ALREADY[*]:-none})"
echo "$DIR/env.sh"
