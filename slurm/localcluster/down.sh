#!/usr/bin/env bash
# Stop the single-machine SLURM cluster started by up.sh:
#   cancel jobs -> slurmd (+ slurmstepd) -> slurmctld -> slurmdbd -> mariadbd -> munged
# Waits until every daemon is gone and exits non-zero if one survives.
#
#   down.sh [--purge]     --purge also removes the state dir
#
# Only processes belonging to ${AFD_SLURM_DIR:-/tmp/afd-slurm} are touched: those
# named in its pid files, plus any slurm/munge/mariadb daemon whose command line
# or environment refers to that directory.
set -uo pipefail

DIR=${AFD_SLURM_DIR:-/tmp/afd-slurm}
case $DIR in
    /*) ;;
    *) DIR=$(pwd)/$DIR ;;
esac
DIR=${DIR%/}
PURGE=0
for arg in "$@"; do
    case $arg in
        --purge) PURGE=1 ;;
        -h | --help)
            sed -n '2,10p' "$0"
            exit 0
            ;;
        *)
            echo "usage: $0 [--purge]" >&2
            exit 2
            ;;
    esac
done
STOP_TIMEOUT=${AFD_SLURM_STOP_TIMEOUT:-20}

log() { printf '[afd-slurm down] %s\n' "$*" >&2; }

# ours COMM...: pids of live processes whose comm is one of COMM and that belong
# to $DIR (cmdline mentions it, or environment has AFD_SLURM_DIR=$DIR / SLURM_CONF
# inside it). Matching on comm keeps job processes and callers that merely
# sourced env.sh out of it.
ours() {
    local want=" $* " p comm
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        [[ $want == *" $comm "* ]] || continue
        if tr '\0' '\n' 2>/dev/null <"$p/cmdline" | grep -qF -- "$DIR/" \
            || tr '\0' '\n' 2>/dev/null <"$p/environ" \
            | grep -qxF -e "AFD_SLURM_DIR=$DIR" -e "SLURM_CONF=$DIR/etc/slurm.conf"; then
            echo "${p#/proc/}"
        fi
    done
}

# pid named in a pid file, if that process is alive and called COMM
pidfile_pid() {
    local comm=$1 file=$2 pid
    [[ -s $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] && echo "$pid"
    return 0
}

alive() {
    local p
    for p in "$@"; do
        [[ -d /proc/$p ]] && [[ $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]] && return 0
    done
    return 1
}

# descendants PID...: all descendants of the given pids
descendants() {
    local -A parent_of=()
    local p pp
    for p in /proc/[0-9]*; do
        pp=$(awk '{print $4}' "$p/stat" 2>/dev/null) || continue
        [[ -n $pp ]] && parent_of[${p#/proc/}]=$pp
    done
    local -A seen=()
    local frontier=("$@") next found=()
    while [[ ${#frontier[@]} -gt 0 ]]; do
        next=()
        for p in "${!parent_of[@]}"; do
            [[ -n ${seen[$p]:-} ]] && continue
            for pp in "${frontier[@]}"; do
                if [[ ${parent_of[$p]} == "$pp" ]]; then
                    seen[$p]=1
                    found+=("$p")
                    next+=("$p")
                    break
                fi
            done
        done
        frontier=("${next[@]}")
    done
    echo "${found[@]}"
}

# stop NAME COMM PIDFILE: SIGTERM, wait, SIGKILL, wait. Returns 1 if it survives.
stop() {
    local name=$1 comm=$2 pidfile=$3
    local pids
    pids=$( { pidfile_pid "$comm" "$pidfile"; ours "$comm"; } | sort -u | tr '\n' ' ')
    pids=${pids% }
    if [[ -z $pids ]]; then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name ($pids)"
    kill -TERM $pids 2>/dev/null
    local end=$((SECONDS + STOP_TIMEOUT))
    while alive $pids && [[ $SECONDS -lt $end ]]; do sleep 0.2; done
    if alive $pids; then
        log "$name did not exit on SIGTERM within ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL $pids 2>/dev/null
        end=$((SECONDS + 10))
        while alive $pids && [[ $SECONDS -lt $end ]]; do sleep 0.2; done
    fi
    if alive $pids; then
        log "ERROR: $name still running: $pids"
        return 1
    fi
    read -r -a _pids <<<"$pids"
    STOPPED+=("${_pids[@]}")
    rm -f "$pidfile"
    return 0
}

# true while one of the pids still has a /proc entry (a zombie, here)
gone_or_zombie_left() {
    local p
    for p in "$@"; do [[ -d /proc/$p ]] && return 0; done
    return 1
}

if [[ ! -d $DIR ]]; then
    log "no state dir $DIR"
fi

export SLURM_CONF=$DIR/etc/slurm.conf
T0=$SECONDS

# 1. cancel jobs while the controller still answers, so job processes go too
if [[ -f $SLURM_CONF ]] && [[ -n $(ours slurmctld) ]]; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs: $jobs"
        timeout 10 scancel $jobs 2>/dev/null
        end=$((SECONDS + 15))
        while [[ $SECONDS -lt $end ]] && [[ -n $(timeout 10 squeue -h -t R,CG,S -o %A 2>/dev/null) ]]; do
            sleep 0.5
        done
    fi
fi

failed=()
STOPPED=()
# 2. slurmd, then whatever slurmstepd (and job processes) are left behind
stop slurmd slurmd "$DIR/run/slurmd.pid" || failed+=(slurmd)
steps=$(ours slurmstepd | tr '\n' ' ')
if [[ -n ${steps// /} ]]; then
    victims="$steps $(descendants $steps)"
    log "killing leftover job steps: $victims"
    kill -KILL $victims 2>/dev/null
    end=$((SECONDS + 10))
    while alive $victims && [[ $SECONDS -lt $end ]]; do sleep 0.2; done
    alive $victims && failed+=(slurmstepd)
fi
stop slurmctld slurmctld "$DIR/run/slurmctld.pid" || failed+=(slurmctld)
stop slurmdbd slurmdbd "$DIR/run/slurmdbd.pid" || failed+=(slurmdbd)
stop mariadb mariadbd "$DIR/mariadb/mariadbd.pid" || failed+=(mariadb)
stop munged munged "$DIR/munge/munged.pid" || failed+=(munged)

# Exited daemons may linger a moment as zombies until init reaps them; wait for
# that so that a pgrep right after this script sees nothing.
end=$((SECONDS + 10))
while [[ ${#STOPPED[@]} -gt 0 && $SECONDS -lt $end ]] && gone_or_zombie_left "${STOPPED[@]}"; do
    sleep 0.2
done

# 3. final check: nothing of ours may remain
left=$(ours slurmd slurmctld slurmscriptd slurmdbd slurmstepd munged mariadbd mysqld | tr '\n' ' ')
if [[ -n ${left// /} ]]; then
    for p in $left; do
        log "ERROR: still running: pid $p ($(cat /proc/$p/comm 2>/dev/null))"
    done
    failed+=(leftovers)
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    log "ERROR: could not stop: ${failed[*]}"
    exit 1
fi

if [[ $PURGE -eq 1 && -d $DIR ]]; then
    rm -rf "$DIR"
    log "removed $DIR"
fi
log "stopped in $((SECONDS - T0))s"
exit 0
